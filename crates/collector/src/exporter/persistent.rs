//! The persistent sending queue (`sending_queue.storage: file_storage/…`): each accepted batch
//! is one file (OTLP protobuf) in the extension's directory, written and fsynced before the
//! receiver is answered, and deleted only once the export succeeded or was given up for good.
//! On start the files left by a previous run are queued again, oldest first, so a restart
//! during a backend outage loses nothing (delivery is at least once: a batch whose export was
//! interrupted by shutdown is sent again).
//!
//! A batch given as OTLP bytes ([`Payload::Otlp`]) is stored as it is; stored batches are
//! replayed as OTLP bytes, decoded only if the exporter needs the model (see
//! [`crate::payload`]).

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use model::TraceBatch;
use tokio::sync::Notify;

use crate::payload::{OtlpBytes, Payload};

/// Why the disk queue failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskQueueError {
    #[error("persistent queue in {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("persistent queue is full ({0} batches)")]
    Full(usize),
    #[error("persistent queue is closed")]
    Closed,
}

pub struct DiskQueue {
    dir: PathBuf,
    capacity: usize,
    next_seq: AtomicU64,
    /// Sequence numbers waiting to be sent, oldest first.
    pending: Mutex<VecDeque<u64>>,
    /// Files on disk (pending + in flight), for the capacity check.
    stored: AtomicU64,
    notify: Notify,
    closed: AtomicBool,
}

const SUFFIX: &str = ".otlp";

impl DiskQueue {
    /// Opens (creating it) `dir` and queues the batches a previous run left there.
    pub fn open(dir: &Path, capacity: usize) -> Result<Self, DiskQueueError> {
        let io = |source| DiskQueueError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut seqs: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path()); // a write cut short: never acknowledged
                    return None;
                }
                name.strip_suffix(SUFFIX)?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        let next = seqs.last().map_or(0, |s| s + 1);
        if !seqs.is_empty() {
            tracing::info!(dir = %dir.display(), batches = seqs.len(), "persistent queue: resuming batches left by the previous run");
        }
        Ok(Self {
            dir: dir.to_owned(),
            capacity,
            next_seq: AtomicU64::new(next),
            stored: AtomicU64::new(seqs.len() as u64),
            pending: Mutex::new(seqs.into()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}{SUFFIX}"))
    }

    /// Batches stored (waiting or being sent).
    pub fn len(&self) -> usize {
        self.stored.load(Ordering::Relaxed) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores a batch durably, then queues it.
    pub async fn push(&self, batch: &TraceBatch) -> Result<(), DiskQueueError> {
        self.push_payload(&Payload::Batch(batch.clone())).await
    }

    /// Stores a batch in either form durably (as OTLP protobuf), then queues it.
    pub async fn push_payload(&self, batch: &Payload) -> Result<(), DiskQueueError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(DiskQueueError::Closed);
        }
        if self.stored.fetch_add(1, Ordering::SeqCst) as usize >= self.capacity {
            self.stored.fetch_sub(1, Ordering::SeqCst);
            return Err(DiskQueueError::Full(self.capacity));
        }
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let bytes = match batch {
            Payload::Batch(b) => bytes::Bytes::from(wire::otlp::encode_protobuf(b)),
            Payload::Otlp(raw) => raw.to_bytes(),
        };
        let (path, dir) = (self.path(seq), self.dir.clone());
        let written = tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        if let Err(source) = written {
            self.stored.fetch_sub(1, Ordering::SeqCst);
            return Err(DiskQueueError::Io { dir, source });
        }
        if let Ok(mut p) = self.pending.lock() {
            p.push_back(seq);
        }
        self.notify.notify_one();
        Ok(())
    }

    /// The oldest waiting batch, decoded; `None` once closed.
    pub async fn pop(&self) -> Option<(u64, TraceBatch)> {
        loop {
            let (seq, payload) = self.pop_payload().await?;
            match payload.into_batch() {
                Ok(batch) => return Some((seq, batch)),
                Err(e) => {
                    tracing::error!(file = %self.path(seq).display(), "unreadable queued batch, dropped: {e}");
                    self.done(seq);
                }
            }
        }
    }

    /// The oldest waiting batch as the OTLP bytes stored; `None` once closed.
    pub async fn pop_payload(&self) -> Option<(u64, Payload)> {
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return None;
            }
            let notified = self.notify.notified();
            let next = self.pending.lock().ok().and_then(|mut p| p.pop_front());
            if let Some(seq) = next {
                match std::fs::read(self.path(seq)) {
                    Ok(bytes) => match OtlpBytes::new(bytes.into()) {
                        Ok(raw) => return Some((seq, Payload::Otlp(raw))),
                        Err(e) => {
                            tracing::error!(file = %self.path(seq).display(), "unreadable queued batch, dropped: {e}");
                            self.done(seq);
                        }
                    },
                    Err(e) => {
                        tracing::error!(file = %self.path(seq).display(), "queued batch vanished: {e}");
                        self.stored.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                continue;
            }
            notified.await;
        }
    }

    /// The batch is delivered (or given up): its file goes.
    pub fn done(&self, seq: u64) {
        if let Err(e) = std::fs::remove_file(self.path(seq)) {
            tracing::warn!(file = %self.path(seq).display(), "cannot remove a sent batch: {e}");
        }
        self.stored.fetch_sub(1, Ordering::SeqCst);
    }

    /// Stops handing out batches; what is stored stays for the next run.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.notify.notify_waiters();
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{ResourceSpans, ScopeSpans, Span, SpanId, TraceId};

    fn batch(n: u64) -> TraceBatch {
        TraceBatch {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: TraceId::from_halves(1, n),
                        span_id: SpanId::from_u64(n),
                        name: format!("s{n}"),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn batches_survive_reopening_in_order_until_done() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path(), 3).unwrap();
        for n in 1..=3 {
            q.push(&batch(n)).await.unwrap();
        }
        assert!(matches!(
            q.push(&batch(4)).await,
            Err(DiskQueueError::Full(3))
        ));
        let (seq, first) = q.pop().await.unwrap();
        assert_eq!(first, batch(1));
        q.done(seq);
        let (_in_flight, second) = q.pop().await.unwrap();
        assert_eq!(second, batch(2));
        q.close();
        assert!(q.pop().await.is_none());
        drop(q);
        // A restart: the batch that was in flight and the one waiting come back, in order.
        let q = DiskQueue::open(dir.path(), 3).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().await.unwrap().1, batch(2));
        assert_eq!(q.pop().await.unwrap().1, batch(3));
        q.push(&batch(5)).await.unwrap();
        assert_eq!(q.pop().await.unwrap().1, batch(5));
    }

    #[tokio::test]
    async fn otlp_bytes_are_stored_and_replayed_as_they_came() {
        let dir = tempfile::tempdir().unwrap();
        let q = DiskQueue::open(dir.path(), 3).unwrap();
        let mut bytes = wire::otlp::encode_protobuf(&batch(1));
        bytes.extend_from_slice(&[0x7a, 0x01, b'x']); // a field the model does not keep
        let raw = Payload::Otlp(OtlpBytes::new(bytes.clone().into()).unwrap());
        q.push_payload(&raw).await.unwrap();
        q.push(&batch(2)).await.unwrap();
        let (seq, first) = q.pop_payload().await.unwrap();
        assert_eq!(first, raw);
        q.done(seq);
        let (_, second) = q.pop_payload().await.unwrap();
        assert_eq!(second.span_count(), 1);
        assert_eq!(second.into_batch().unwrap(), batch(2));
    }
}
