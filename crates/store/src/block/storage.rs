//! Where blocks live: an `object_store`, a local folder by default.
//!
//! Everything goes through the `ObjectStore` trait so S3 (or GCS, Azure) can replace the local
//! folder without changing the block format or the cut protocol. The local store is opened with
//! fsync on, so a successful put is as durable as an S3 put — the cut deletes WAL segments on
//! the strength of it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use std::ops::Range;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::META_FILE;
use crate::api::StoreError;

#[derive(Debug)]
pub(crate) struct BlockStorage {
    store: Arc<dyn ObjectStore>,
    /// Set for the local store, to remove leftovers the object API does not list.
    local_root: Option<PathBuf>,
}

impl BlockStorage {
    pub fn local(root: PathBuf) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&root).map_err(|e| StoreError::io(&root, e))?;
        let fs = LocalFileSystem::new_with_prefix(&root)?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(fs),
            local_root: Some(root),
        })
    }

    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    pub async fn put(&self, path: &Path, bytes: Bytes) -> Result<(), StoreError> {
        self.store.put(path, PutPayload::from_bytes(bytes)).await?;
        Ok(())
    }

    pub async fn get(&self, path: &Path) -> Result<Bytes, StoreError> {
        Ok(self.store.get(path).await?.bytes().await?)
    }

    /// Every object, grouped by block id (the first path segment).
    pub async fn list(&self) -> Result<BTreeMap<String, Vec<ObjectMeta>>, StoreError> {
        let mut out: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        let mut stream = self.store.list(None);
        while let Some(item) = stream.next().await {
            let meta = item?;
            let Some(first) = meta.location.parts().next() else {
                continue;
            };
            out.entry(first.as_ref().to_owned()).or_default().push(meta);
        }
        Ok(out)
    }

    /// Deletes a block, its meta first: a crash half-way leaves an incomplete block, which the
    /// next open removes.
    pub async fn delete_block(&self, id: &str, files: &[Path]) -> Result<(), StoreError> {
        let meta = Path::from(format!("{id}/{META_FILE}"));
        match self.store.delete(&meta).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        for path in files.iter().filter(|p| **p != meta) {
            match self.store.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(root) = &self.local_root {
            let dir = root.join(id);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
            }
        }
        Ok(())
    }
}

/// Reads one Parquet object for the async Parquet reader: ranges through `ObjectStore`.
#[derive(Debug, Clone)]
pub(crate) struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl ObjectReader {
    pub fn new(storage: &BlockStorage, path: Path, size: u64) -> Self {
        Self {
            store: storage.object_store(),
            path,
            size,
        }
    }
}

fn parquet_err(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(parquet_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
