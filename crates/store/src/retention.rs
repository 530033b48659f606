//! Retention and the disk budget: disk must never grow without bound.
//!
//! Every `retention_interval`, whole blocks whose newest span ended before `now - retention`
//! are deleted; then, with `max_disk_bytes` set, the oldest blocks go while blocks + WAL exceed
//! it. A block leaves the in-memory list first (queries stop seeing it at once), then storage
//! (meta first, so a crash half-way leaves an incomplete block that open removes).
//! Spans in the head past retention are filtered out by reads.

use std::sync::{Arc, Weak};

use object_store::path::Path;

use crate::block::{Block, DATA_FILE, INDEX_FILE, META_FILE};
use crate::state::Counters;
use crate::Inner;

pub(crate) fn spawn(inner: Weak<Inner>) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let every = strong
        .config
        .retention_interval
        .max(std::time::Duration::from_millis(10));
    drop(strong);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(inner) = inner.upgrade() else { break };
            inner.enforce_retention().await;
        }
    });
}

impl Inner {
    /// Deletes expired blocks, then the oldest blocks while over the disk budget.
    pub async fn enforce_retention(&self) {
        let cutoff = self.retention_cutoff();
        let mut doomed: Vec<(Arc<Block>, &'static str)> = Vec::new();
        {
            let mut st = self.shared.write();
            st.blocks.retain(|b| {
                let expired = b.meta.max_end_unix_nano < cutoff;
                if expired {
                    doomed.push((Arc::clone(b), "retention"));
                }
                !expired
            });
            if let Some(budget) = self.config.max_disk_bytes {
                let wal = Counters::get(&self.shared.counters.wal_bytes);
                let mut total: u64 =
                    wal + st.blocks.iter().map(|b| b.meta.total_bytes()).sum::<u64>();
                // Blocks are kept in creation order: oldest first.
                while total > budget && !st.blocks.is_empty() {
                    let b = st.blocks.remove(0);
                    total = total.saturating_sub(b.meta.total_bytes());
                    doomed.push((b, "disk budget"));
                }
                if total > budget {
                    tracing::warn!(
                        total_bytes = total,
                        budget_bytes = budget,
                        "over the disk budget with no block left to delete (WAL and head only)"
                    );
                }
            }
            self.shared.publish_gauges(&st);
        }
        for (block, why) in doomed {
            let id = block.id().to_owned();
            tracing::info!(
                block = %id,
                reason = why,
                bytes = block.meta.total_bytes(),
                spans = block.meta.span_count,
                newest_span_end_unix_nano = block.meta.max_end_unix_nano,
                "deleting block"
            );
            let files = [DATA_FILE, INDEX_FILE, META_FILE].map(|f| Path::from(format!("{id}/{f}")));
            match self.storage.delete_block(&id, &files).await {
                Ok(()) => {
                    Counters::add(&self.shared.counters.blocks_deleted, 1);
                    metrics::counter!("meshtrace_store_blocks_deleted_total").increment(1);
                }
                Err(e) => tracing::error!(block = %id, error = %e, "deleting block failed"),
            }
        }
    }
}
