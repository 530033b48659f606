//! Cutting the head into a block, and the background task that decides when.
//!
//! Protocol (one cut at a time):
//! 1. The WAL thread rotates: new segment, fresh head; the old head joins `cutting`, still
//!    readable. It covers WAL segments `wal_first_segment..=wal_last_segment`.
//! 2. The block is encoded on a blocking thread and uploaded: `data.parquet`, `index.bin`,
//!    then `meta.json` last (each put is durable before the next starts).
//! 3. Under the state lock the block is registered and the head dropped from `cutting`.
//! 4. The covered WAL segments are deleted.
//!
//! A crash before 2 finishes leaves a folder without meta (deleted at open) and the segments
//! (replayed). A crash between 2 and 4 leaves a complete block whose meta names the segments,
//! which open deletes instead of replaying. A failed cut keeps its head in `cutting` and is
//! retried by the next cut.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use tokio::sync::oneshot;

use crate::api::StoreError;
use crate::block::write::{build, new_block_id};
use crate::block::{Block, DATA_FILE, INDEX_FILE, META_FILE};
use crate::head::Head;
use crate::state::Counters;
use crate::wal::{segment, WalMsg};
use crate::{now_unix_nanos, Inner};

impl Inner {
    /// Swaps the head out and writes every head awaiting a block.
    pub async fn cut(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.cut_lock.lock().await;
        let (ack, done) = oneshot::channel();
        self.wal_tx
            .send(WalMsg::Rotate { ack })
            .await
            .map_err(|_| StoreError::Closed)?;
        done.await.map_err(|_| StoreError::Closed)??;
        self.write_pending().await
    }

    /// Writes the heads a failed cut left behind, without swapping out the live head: while
    /// storage keeps failing, retries must not turn every few spans into a segment and a head.
    async fn retry_pending(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.cut_lock.lock().await;
        self.write_pending().await
    }

    async fn write_pending(&self) -> Result<(), StoreError> {
        let heads = self.shared.read().cutting.clone();
        for head in heads {
            self.write_block(head).await?;
        }
        Ok(())
    }

    /// The live head is full or old enough to become a block.
    fn head_due(&self) -> bool {
        let st = self.shared.read();
        st.head.len() >= self.config.block_max_spans
            || st
                .head
                .first_arrival()
                .is_some_and(|t| t.elapsed() >= self.config.block_max_age)
    }

    async fn write_block(&self, head: Arc<Head>) -> Result<(), StoreError> {
        let created = now_unix_nanos();
        let id = new_block_id(created);
        let encode_head = Arc::clone(&head);
        let encode_id = id.clone();
        let built = tokio::task::spawn_blocking(move || build(&encode_head, encode_id, created))
            .await
            .map_err(|e| StoreError::Internal(format!("block encoding task: {e}")))??;
        let meta_json = serde_json::to_vec_pretty(&built.meta)
            .map_err(|e| StoreError::Internal(format!("block meta: {e}")))?;
        let data_path = Path::from(format!("{id}/{DATA_FILE}"));
        let index_path = Path::from(format!("{id}/{INDEX_FILE}"));
        let meta_path = Path::from(format!("{id}/{META_FILE}"));
        let uploaded = async {
            self.storage.put(&data_path, built.data.clone()).await?;
            self.storage
                .put(&index_path, built.index_bytes.clone())
                .await?;
            self.storage.put(&meta_path, Bytes::from(meta_json)).await
        }
        .await;
        if let Err(e) = uploaded {
            tracing::error!(block = %id, error = %e, "writing block failed; will retry");
            if let Err(e) = self
                .storage
                .delete_block(&id, &[data_path, index_path, meta_path])
                .await
            {
                tracing::warn!(block = %id, error = %e, "could not remove the partial block");
            }
            return Err(e);
        }
        let meta = built.meta.clone();
        let block = Arc::new(Block::new(
            built.meta,
            built.index,
            built.reader_meta,
            Arc::clone(&self.storage),
        ));
        {
            let mut st = self.shared.write();
            st.blocks.push(block);
            st.cutting.retain(|h| !Arc::ptr_eq(h, &head));
            self.shared.publish_gauges(&st);
        }
        tracing::info!(
            block = %id,
            spans = meta.span_count,
            traces = meta.trace_count,
            bytes = meta.total_bytes(),
            bytes_per_span = meta.total_bytes() as f64 / meta.span_count.max(1) as f64,
            "cut head into block"
        );
        self.delete_segments(meta.wal_first_segment, meta.wal_last_segment);
        Ok(())
    }

    fn delete_segments(&self, first: u64, last: u64) {
        let c = &self.shared.counters;
        for seq in first..=last {
            let path = segment::segment_path(&self.wal_dir, seq);
            let size = std::fs::metadata(&path).map(|m| m.len()).ok();
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    Counters::sub(&c.wal_bytes, size.unwrap_or(0));
                    Counters::sub(&c.wal_segments, 1);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not delete WAL segment")
                }
            }
        }
        metrics::gauge!("meshtrace_store_wal_bytes").set(Counters::get(&c.wal_bytes) as f64);
    }
}

/// Cuts when the head is full (woken by the WAL thread) or old (checked periodically).
pub(crate) fn spawn_cutter(inner: Weak<Inner>) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let shared = Arc::clone(&strong.shared);
    let check =
        (strong.config.block_max_age / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    drop(strong);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shared.cut_needed.notified() => {}
                _ = tokio::time::sleep(check) => {}
            }
            let Some(inner) = inner.upgrade() else { break };
            let result = if inner.head_due() {
                inner.cut().await
            } else if !inner.shared.read().cutting.is_empty() {
                inner.retry_pending().await
            } else {
                Ok(())
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "cutting the head failed");
                drop(inner);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
}
