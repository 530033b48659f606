//! Where blocks live: an `object_store`, a local folder by default.
//!
//! Everything goes through the `ObjectStore` trait so S3 (or GCS, Azure) can replace the local
//! folder without changing the block format or the cut protocol. The local store is opened with
//! fsync on, so a successful put is as durable as an S3 put — the cut deletes WAL segments on
//! the strength of it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

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
