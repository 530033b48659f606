//! Opening the store: recovery of blocks and WAL after a clean stop or a crash.
//!
//! 1. Blocks: every block folder with a `meta.json` is opened (meta, index, footer); a folder
//!    without one is an interrupted write and is deleted. A block that fails to open is logged
//!    and left alone on disk (never deleted automatically: it may be repairable).
//! 2. WAL: segments covered by a block's `wal_first_segment..=wal_last_segment` are deleted,
//!    not replayed — the crash came after the block was durable but before its segments went.
//!    Every other segment is replayed in order into the head (torn tails cut, corrupt records
//!    and undecodable payloads skipped, all with warnings). Segments with nothing left are removed.
//! 3. A fresh segment is started after the highest number ever used, so a number covered by a
//!    block is never reused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::{StoreConfig, StoreError};
use crate::block::storage::BlockStorage;
use crate::block::{Block, META_FILE};
use crate::head::Head;
use crate::state::{Counters, Shared, State};
use crate::wal::segment;
use crate::{wal, Inner};

pub(crate) async fn open(mut config: StoreConfig) -> Result<Inner, StoreError> {
    config.block_max_spans = config.block_max_spans.max(1);
    let wal_dir = config.data_dir.join("wal");
    std::fs::create_dir_all(&wal_dir).map_err(|e| StoreError::io(&wal_dir, e))?;
    let storage = Arc::new(BlockStorage::local(config.data_dir.join("blocks"))?);

    let blocks = load_blocks(&storage).await?;
    let covered: Vec<(u64, u64)> = blocks
        .iter()
        .map(|b| (b.meta.wal_first_segment, b.meta.wal_last_segment))
        .collect();
    let highest_covered = covered.iter().map(|(_, last)| *last).max().unwrap_or(0);

    let dir = wal_dir.clone();
    let replayed = tokio::task::spawn_blocking(move || replay_wal(&dir, &covered))
        .await
        .map_err(|e| StoreError::Internal(format!("WAL replay task: {e}")))??;
    let next_seq = replayed.highest_seq.max(highest_covered) + 1;
    let mut head = replayed.head;
    head.wal_first_segment = replayed.first_seq.unwrap_or(next_seq);
    head.wal_last_segment = head.wal_first_segment;
    let replayed_spans = head.len();
    if replayed_spans > 0 {
        tracing::info!(
            spans = replayed_spans,
            segments = replayed.segments,
            "replayed the WAL"
        );
    }

    let shared = Arc::new(Shared::new(
        State {
            head,
            cutting: Vec::new(),
            blocks: blocks.into_iter().map(Arc::new).collect(),
        },
        config.block_max_spans,
    ));
    Counters::add(&shared.counters.wal_bytes, replayed.bytes);
    Counters::add(&shared.counters.wal_segments, replayed.segments);
    let wal_tx = wal::start(wal_dir.clone(), next_seq, Arc::clone(&shared))?;
    shared.publish_gauges(&shared.read());
    Ok(Inner {
        config,
        shared,
        wal_tx,
        wal_dir,
        storage,
        cut_lock: tokio::sync::Mutex::new(()),
    })
}

async fn load_blocks(storage: &Arc<BlockStorage>) -> Result<Vec<Block>, StoreError> {
    let listing = storage.list().await?;
    let mut blocks = Vec::new();
    for (id, files) in &listing {
        let has_meta = files
            .iter()
            .any(|f| f.location.filename() == Some(META_FILE));
        if !has_meta {
            tracing::warn!(block = %id, "deleting incomplete block (no meta.json)");
            let paths: Vec<_> = files.iter().map(|f| f.location.clone()).collect();
            storage.delete_block(id, &paths).await?;
            continue;
        }
        match Block::load(Arc::clone(storage), id).await {
            Ok(block) => blocks.push(block),
            Err(e) => {
                tracing::error!(block = %id, error = %e, "cannot open block; leaving it on disk")
            }
        }
    }
    // Folders the object listing cannot see (only staging files of an interrupted upload).
    if let Some(root) = storage.local_root() {
        let entries = std::fs::read_dir(root).map_err(|e| StoreError::io(root, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !listing.contains_key(&name) {
                tracing::warn!(block = %name, "deleting incomplete block folder");
                storage.delete_block(&name, &[]).await?;
            }
        }
    }
    blocks.sort_by(|a, b| {
        (a.meta.created_unix_nano, &a.meta.block_id)
            .cmp(&(b.meta.created_unix_nano, &b.meta.block_id))
    });
    Ok(blocks)
}

struct Replayed {
    head: Head,
    /// First segment still holding records.
    first_seq: Option<u64>,
    highest_seq: u64,
    segments: u64,
    bytes: u64,
}

fn replay_wal(dir: &Path, covered: &[(u64, u64)]) -> Result<Replayed, StoreError> {
    let mut out = Replayed {
        head: Head::new(0),
        first_seq: None,
        highest_seq: 0,
        segments: 0,
        bytes: 0,
    };
    for (seq, path, _) in segment::list_segments(dir)? {
        out.highest_seq = out.highest_seq.max(seq);
        if covered.iter().any(|&(a, b)| a <= seq && seq <= b) {
            tracing::info!(
                segment = seq,
                "deleting WAL segment already held by a block"
            );
            remove(&path)?;
            continue;
        }
        let mut decode_failures = 0u64;
        let report = segment::replay(&path, |payload| match wal::decode_batch(payload) {
            Ok(batch) => out.head.insert_records(batch.into_records()),
            Err(e) => {
                decode_failures += 1;
                tracing::warn!(segment = seq, error = %e, "skipping undecodable WAL record");
            }
        })?;
        if report.truncated_bytes > 0 || report.corrupt_skipped > 0 {
            tracing::warn!(
                segment = seq,
                truncated_bytes = report.truncated_bytes,
                corrupt_records = report.corrupt_skipped,
                "WAL segment was damaged; kept every intact record"
            );
        }
        if report.records == decode_failures {
            remove(&path)?;
            continue;
        }
        out.first_seq.get_or_insert(seq);
        out.segments += 1;
        out.bytes += report.bytes;
    }
    Ok(out)
}

fn remove(path: &PathBuf) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}
