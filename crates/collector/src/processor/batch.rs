//! `batch`: groups spans into batches of `send_batch_size` (split at `send_batch_max_size`),
//! or whatever has gathered after `timeout`, and sends them on from its own task, as the OTel
//! Collector does. Accepting a batch only means it is buffered; shutdown flushes the buffer.
//!
//! OTLP bytes ([`Payload::Otlp`]) are merged by concatenation and split at request boundaries
//! (see [`crate::payload`]); a decoded batch arriving among them is encoded to join them.

use std::sync::Arc;
use std::time::Duration;

use model::{ResourceSpans, ScopeSpans, TraceBatch};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use crate::config::Batch;
use crate::consumer::{BoxFuture, ConsumeError, Consumer};
use crate::payload::{OtlpBytes, Payload};

pub struct BatchProcessor {
    tx: Mutex<Option<mpsc::Sender<Payload>>>,
    /// Whether the stages after it take OTLP bytes.
    next_accepts_otlp: bool,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl BatchProcessor {
    pub fn new(name: &str, cfg: &Batch, next: Arc<dyn Consumer>) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let next_accepts_otlp = next.accepts_otlp();
        let worker = tokio::spawn(run(name.to_owned(), cfg.clone(), rx, next));
        Self {
            tx: Mutex::new(Some(tx)),
            next_accepts_otlp,
            worker: Mutex::new(Some(worker)),
        }
    }
}

impl Consumer for BatchProcessor {
    fn consume(&self, batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        self.consume_payload(Payload::Batch(batch))
    }

    fn accepts_otlp(&self) -> bool {
        self.next_accepts_otlp
    }

    fn consume_payload(&self, batch: Payload) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            let tx = self.tx.lock().await.clone();
            match tx {
                Some(tx) => tx
                    .send(batch)
                    .await
                    .map_err(|_| ConsumeError::Unavailable("shutting down".into())),
                None => Err(ConsumeError::Unavailable("shutting down".into())),
            }
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.tx.lock().await.take();
            if let Some(worker) = self.worker.lock().await.take() {
                let _ = worker.await;
            }
        })
    }
}

async fn run(name: String, cfg: Batch, mut rx: mpsc::Receiver<Payload>, next: Arc<dyn Consumer>) {
    let size = cfg.send_batch_size.max(1);
    let max = if cfg.send_batch_max_size == 0 {
        usize::MAX
    } else {
        cfg.send_batch_max_size
    };
    let timeout = if cfg.timeout.is_zero() {
        Duration::from_millis(1)
    } else {
        cfg.timeout
    };
    let mut pending = Payload::default();
    let mut count = 0usize;
    let mut deadline = None;
    loop {
        let received = match deadline {
            Some(d) => tokio::select! {
                r = rx.recv() => r.map(Some),
                _ = tokio::time::sleep_until(d) => Some(None),
            },
            None => rx.recv().await.map(Some),
        };
        match received {
            None => break,
            Some(Some(batch)) => {
                count += batch.span_count();
                merge(&mut pending, batch);
                if deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + timeout);
                }
                while count >= size {
                    let out = take(&mut pending, max.min(count));
                    count = pending.span_count();
                    send(&name, &next, out, "size").await;
                }
                if count == 0 {
                    deadline = None;
                }
            }
            Some(None) => {
                let out = std::mem::take(&mut pending);
                count = 0;
                deadline = None;
                if !out.is_empty() {
                    send(&name, &next, out, "timeout").await;
                }
            }
        }
    }
    while count > 0 {
        let out = take(&mut pending, max.min(count));
        count = pending.span_count();
        send(&name, &next, out, "shutdown").await;
    }
}

/// Appends `batch` to `pending`, as bytes if either is bytes.
fn merge(pending: &mut Payload, batch: Payload) {
    match (&mut *pending, batch) {
        (Payload::Batch(p), Payload::Batch(b)) => p.resource_spans.extend(b.resource_spans),
        (Payload::Otlp(p), Payload::Otlp(b)) => p.append(b),
        (Payload::Otlp(p), Payload::Batch(b)) => p.append(OtlpBytes::encode(&b)),
        (Payload::Batch(p), Payload::Otlp(b)) => {
            let mut raw = if p.is_empty() {
                OtlpBytes::default()
            } else {
                OtlpBytes::encode(p)
            };
            raw.append(b);
            *pending = Payload::Otlp(raw);
        }
    }
}

/// Takes up to `n` spans from the front of `from`.
fn take(from: &mut Payload, n: usize) -> Payload {
    match from {
        Payload::Batch(b) => Payload::Batch(take_spans(b, n)),
        Payload::Otlp(o) => {
            let out = o.take(n);
            if o.span_count() == 0 {
                *from = Payload::default();
            }
            out
        }
    }
}

async fn send(name: &str, next: &Arc<dyn Consumer>, batch: Payload, trigger: &'static str) {
    if batch.is_empty() {
        return; // only bytes that could not be split were taken, and dropped (logged)
    }
    let spans = batch.span_count();
    metrics::counter!("meshtrace_processor_batch_trigger_send_total",
        "processor" => name.to_owned(), "trigger" => trigger)
    .increment(1);
    metrics::histogram!("meshtrace_processor_batch_batch_send_size", "processor" => name.to_owned())
        .record(spans as f64);
    if let Err(e) = next.consume_payload(batch).await {
        tracing::warn!(processor = name, spans, "batch could not be sent on: {e}");
    }
}

/// Moves the first `n` spans of `from` into a new batch, keeping resources and scopes.
pub fn take_spans(from: &mut TraceBatch, n: usize) -> TraceBatch {
    if from.span_count() <= n {
        return std::mem::take(from);
    }
    let mut out = TraceBatch::default();
    let mut left = n;
    while left > 0 {
        let Some(rs) = from.resource_spans.first_mut() else {
            break;
        };
        let mut out_rs = ResourceSpans {
            resource: rs.resource.clone(),
            schema_url: rs.schema_url.clone(),
            scope_spans: Vec::new(),
        };
        while left > 0 {
            let Some(ss) = rs.scope_spans.first_mut() else {
                break;
            };
            if ss.spans.len() <= left {
                left -= ss.spans.len();
                out_rs.scope_spans.push(rs.scope_spans.remove(0));
            } else {
                let rest = ss.spans.split_off(left);
                let taken = std::mem::replace(&mut ss.spans, rest);
                out_rs.scope_spans.push(ScopeSpans {
                    scope: ss.scope.clone(),
                    schema_url: ss.schema_url.clone(),
                    spans: taken,
                });
                left = 0;
            }
        }
        if rs.scope_spans.is_empty() {
            from.resource_spans.remove(0);
        }
        out.resource_spans.push(out_rs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Span, SpanId};
    use std::sync::Mutex as StdMutex;

    struct Collect(StdMutex<Vec<usize>>);
    impl Consumer for Collect {
        fn consume(&self, batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>> {
            self.0.lock().unwrap().push(batch.span_count());
            Box::pin(async { Ok(()) })
        }
    }

    fn batch(n: u64) -> TraceBatch {
        TraceBatch {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: (1..=n)
                        .map(|i| Span {
                            span_id: SpanId::from_u64(i),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn take_spans_splits_across_groups() {
        let mut b = batch(3);
        b.resource_spans.extend(batch(4).resource_spans);
        let first = take_spans(&mut b, 5);
        assert_eq!(first.span_count(), 5);
        assert_eq!(first.resource_spans.len(), 2);
        assert_eq!(b.span_count(), 2);
        assert_eq!(b.resource_spans.len(), 1);
    }

    #[tokio::test]
    async fn sizes_timeouts_and_shutdown_flush() {
        let sink = Arc::new(Collect(StdMutex::new(Vec::new())));
        let cfg = Batch {
            send_batch_size: 10,
            send_batch_max_size: 15,
            timeout: Duration::from_millis(50),
        };
        let p = BatchProcessor::new("batch", &cfg, sink.clone());
        p.consume(batch(32)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(*sink.0.lock().unwrap(), [15, 15]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*sink.0.lock().unwrap(), [15, 15, 2]);
        p.consume(batch(3)).await.unwrap();
        p.shutdown().await;
        assert_eq!(*sink.0.lock().unwrap(), [15, 15, 2, 3]);
        assert!(p.consume(batch(1)).await.is_err());
    }

    /// `batch(n)` with valid trace ids, so it survives an OTLP round trip.
    fn raw(n: u64) -> Payload {
        let mut b = batch(n);
        for s in &mut b.resource_spans[0].scope_spans[0].spans {
            s.trace_id = model::TraceId::from_halves(1, 1);
        }
        Payload::Otlp(OtlpBytes::encode(&b))
    }

    #[tokio::test]
    async fn otlp_bytes_are_concatenated_within_the_max_size() {
        let sink = Arc::new(Collect(StdMutex::new(Vec::new())));
        let cfg = Batch {
            send_batch_size: 10,
            send_batch_max_size: 10,
            timeout: Duration::from_secs(10),
        };
        let p = BatchProcessor::new("batch", &cfg, sink.clone());
        for _ in 0..3 {
            p.consume_payload(raw(4)).await.unwrap();
        }
        // 12 spans: whole requests up to the max (8) go at once, the rest waits.
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(*sink.0.lock().unwrap(), [8]);
        // A decoded batch joins the bytes; one request larger than the max is split.
        let mut decoded = batch(1);
        decoded.resource_spans[0].scope_spans[0].spans[0].trace_id =
            model::TraceId::from_halves(1, 1);
        p.consume(decoded).await.unwrap();
        p.consume_payload(raw(12)).await.unwrap();
        p.shutdown().await;
        assert_eq!(*sink.0.lock().unwrap(), [8, 5, 10, 2]);
    }
}
