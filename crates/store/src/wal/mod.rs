//! The write-ahead log: durability for every acknowledged append, with group commit.
//!
//! One dedicated thread owns the open segment. Appends queue up on a bounded channel (a full
//! channel makes callers wait: back-pressure instead of unbounded memory); the thread drains
//! everything queued, writes it with one `write`, makes it durable with ONE `sync_data` for the
//! lot, inserts the spans into the head, and only then acknowledges each caller. So an
//! acknowledged span is both durable and searchable, and under load many appends share a sync.
//!
//! The same thread performs rotations, in channel order with appends: the head and the segment
//! are swapped together, so every span of a swapped-out head lies in segments up to the old
//! one, and every later span in segments after it. That is what lets a cut delete exactly the
//! segments its block covers.

pub(crate) mod segment;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::api::StoreError;
use crate::head::{Head, Prepared};
use crate::state::{Counters, Shared};

/// Appends queued at most before callers wait.
const QUEUE: usize = 4096;
/// A group is committed once it holds this many bytes, even if more appends are queued.
const GROUP_MAX_BYTES: usize = 16 * 1024 * 1024;

pub(crate) enum WalMsg {
    Append {
        payload: bytes::Bytes,
        spans: Vec<Prepared>,
        ack: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Starts a new segment and swaps out the head; answers the old head (None when empty).
    Rotate {
        ack: oneshot::Sender<Result<Option<Arc<Head>>, StoreError>>,
    },
}

type Pending = (Vec<Prepared>, oneshot::Sender<Result<(), StoreError>>);

struct Writer {
    dir: PathBuf,
    seq: u64,
    file: File,
    /// Bytes of the open segment known durable.
    len: u64,
    buf: Vec<u8>,
    shared: Arc<Shared>,
}

fn create_segment(dir: &std::path::Path, seq: u64) -> Result<File, StoreError> {
    let path = segment::segment_path(dir, seq);
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    segment::sync_dir(dir)?;
    Ok(file)
}

/// Opens segment `seq` (which must not exist) and starts the writer thread.
pub(crate) fn start(
    dir: PathBuf,
    seq: u64,
    shared: Arc<Shared>,
) -> Result<mpsc::Sender<WalMsg>, StoreError> {
    let file = create_segment(&dir, seq)?;
    Counters::add(&shared.counters.wal_segments, 1);
    let (tx, rx) = mpsc::channel(QUEUE);
    let writer = Writer {
        dir: dir.clone(),
        seq,
        file,
        len: 0,
        buf: Vec::with_capacity(1 << 20),
        shared,
    };
    std::thread::Builder::new()
        .name("meshtrace-wal".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::io(dir, e))?;
    Ok(tx)
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WalMsg>) {
        let mut pending: Vec<Pending> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(msg) = next {
                match msg {
                    WalMsg::Append {
                        payload,
                        spans,
                        ack,
                    } => {
                        segment::frame(&mut self.buf, &payload);
                        pending.push((spans, ack));
                        if self.buf.len() >= GROUP_MAX_BYTES {
                            self.commit(&mut pending);
                        }
                    }
                    WalMsg::Rotate { ack } => {
                        self.commit(&mut pending);
                        let _ = ack.send(self.rotate());
                    }
                }
                next = rx.try_recv().ok();
            }
            self.commit(&mut pending);
        }
        tracing::debug!("WAL writer stopped");
    }

    fn commit(&mut self, pending: &mut Vec<Pending>) {
        if pending.is_empty() {
            return;
        }
        let result = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data());
        let written = self.buf.len() as u64;
        self.buf.clear();
        match result {
            Ok(()) => {
                self.len += written;
                let c = &self.shared.counters;
                Counters::add(&c.wal_bytes, written);
                Counters::add(&c.wal_fsyncs, 1);
                metrics::counter!("meshtrace_store_wal_fsyncs_total").increment(1);
                let mut spans = 0u64;
                let head_len = {
                    let mut st = self.shared.write();
                    for (records, _) in pending.iter_mut() {
                        spans += records.len() as u64;
                        st.head.insert(std::mem::take(records));
                    }
                    st.head.len()
                };
                Counters::add(&c.spans_appended, spans);
                metrics::counter!("meshtrace_store_spans_appended_total").increment(spans);
                metrics::gauge!("meshtrace_store_head_spans").set(head_len as f64);
                metrics::gauge!("meshtrace_store_wal_bytes")
                    .set(Counters::get(&c.wal_bytes) as f64);
                if head_len >= self.shared.block_max_spans {
                    self.shared.cut_needed.notify_one();
                }
                for (_, ack) in pending.drain(..) {
                    let _ = ack.send(Ok(()));
                }
            }
            Err(e) => {
                let path = segment::segment_path(&self.dir, self.seq);
                tracing::error!(path = %path.display(), error = %e, "WAL write failed");
                // Drop whatever part of the group reached the file; callers are told it failed.
                if let Err(e) = self.file.set_len(self.len) {
                    tracing::error!(error = %e, "could not truncate the failed WAL write");
                }
                for (_, ack) in pending.drain(..) {
                    let _ = ack.send(Err(StoreError::Wal(format!(
                        "writing {}: {e}",
                        path.display()
                    ))));
                }
            }
        }
    }

    fn rotate(&mut self) -> Result<Option<Arc<Head>>, StoreError> {
        // Only this thread inserts, so the head cannot become non-empty after this check.
        if self.shared.read().head.is_empty() {
            return Ok(None);
        }
        let next = self.seq + 1;
        let file = create_segment(&self.dir, next)?;
        let old_seq = self.seq;
        self.seq = next;
        self.file = file;
        self.len = 0;
        Counters::add(&self.shared.counters.wal_segments, 1);
        let mut st = self.shared.write();
        let mut old = std::mem::replace(&mut st.head, Head::new(next));
        old.wal_last_segment = old_seq;
        let old = Arc::new(old);
        st.cutting.push(Arc::clone(&old));
        Ok(Some(old))
    }
}

/// The WAL payload of a batch: an OTLP `ExportTraceServiceRequest` in protobuf, so a segment
/// can be inspected with standard OTLP tooling.
pub(crate) fn encode_batch(batch: &model::TraceBatch) -> bytes::Bytes {
    bytes::Bytes::from(wire::otlp::encode_protobuf(batch))
}

/// Reads a payload back; spans the decoder rejects are reported in the error text.
pub(crate) fn decode_batch(payload: &[u8]) -> Result<model::TraceBatch, String> {
    let decoded = wire::otlp::decode_protobuf(payload).map_err(|e| e.to_string())?;
    if decoded.rejected_spans > 0 {
        // A payload journaled as received (`Store::append_otlp`) still holds the spans the
        // receiver refused; they are left out again here, exactly as they were then.
        tracing::debug!(
            rejected = decoded.rejected_spans,
            reason = %decoded.error_message,
            "WAL replay left out invalid spans"
        );
    }
    Ok(decoded.batch)
}
