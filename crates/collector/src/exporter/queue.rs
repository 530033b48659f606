//! `sending_queue`: an in-memory queue of batches in front of an exporter, drained by
//! `num_consumers` senders, so a slow or absent backend pushes back on nothing upstream until the
//! queue is full (then receivers answer a retryable "overloaded", or, with `block_on_overflow`,
//! wait for room). Without a queue the receiver waits for the export, retries included.
//!
//! With `storage` set, the queue is a [`DiskQueue`] instead: batches are on disk before they
//! are acknowledged, and shutdown leaves whatever is unsent there for the next run.
//!
//! Shutdown (in memory): no new batches are taken; the senders stop waiting between retries and drain what
//! is queued, one attempt per batch, for at most [`DRAIN_TIMEOUT`]. Batches still queued after
//! that are counted in `meshtrace_exporter_dropped_spans_total` and logged: an in-memory queue
//! cannot outlive the process.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use model::TraceBatch;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinSet;

use super::persistent::{DiskQueue, DiskQueueError};
use super::{retry, Export, ExportError};
use crate::config::{RetryOnFailure, SendingQueue};
use crate::consumer::{BoxFuture, ConsumeError, Consumer};
use crate::payload::Payload;

/// How long shutdown spends sending what is still queued.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// With `block_on_overflow`, how often a full disk queue is looked at again for room.
const FULL_DISK_RETRY: Duration = Duration::from_millis(20);

/// Why a batch was not queued.
enum Refused {
    Full,
    Closed,
}

struct Shared {
    name: String,
    export: Arc<dyn Export>,
    retry: RetryOnFailure,
    queued: AtomicI64,
    /// Spans an in-memory queue lost because the process was stopping.
    lost_on_shutdown: AtomicI64,
}

impl Shared {
    /// Sends with retries. `kept` says a failure cut short by shutdown leaves the batch stored
    /// (persistent queue) rather than dropped.
    async fn send(
        &self,
        batch: &Payload,
        stop: &mut watch::Receiver<bool>,
        kept: bool,
    ) -> Result<(), ExportError> {
        let spans = batch.span_count() as u64;
        // Decoded once here rather than at every attempt, for exporters that need the model
        // (undecodable bytes fail the first attempt for good).
        let decoded;
        let batch = match batch {
            Payload::Otlp(raw) if !self.export.accepts_otlp() => match raw.decode() {
                Ok(b) => {
                    decoded = Payload::Batch(b);
                    &decoded
                }
                Err(_) => batch,
            },
            b => b,
        };
        let result = retry::send_payload(&self.name, &*self.export, batch, &self.retry, stop).await;
        match &result {
            Ok(()) => metrics::counter!("meshtrace_exporter_sent_spans_total", "exporter" => self.name.clone()).increment(spans),
            Err(e) if kept && *stop.borrow() => {
                tracing::info!(exporter = %self.name, spans, "shutting down: batch kept in the persistent queue ({e})");
            }
            Err(e) => {
                if *stop.borrow() {
                    self.lost_on_shutdown.fetch_add(spans as i64, Ordering::Relaxed);
                    metrics::counter!("meshtrace_exporter_dropped_spans_total", "exporter" => self.name.clone(), "reason" => "shutdown").increment(spans);
                }
                metrics::counter!("meshtrace_exporter_send_failed_spans_total", "exporter" => self.name.clone()).increment(spans);
                tracing::error!(exporter = %self.name, spans, "dropping data after a failed export: {e}");
            }
        }
        result
    }
}

pub struct ExporterStage {
    shared: Arc<Shared>,
    queue: Mutex<Option<mpsc::Sender<Payload>>>,
    disk: Option<Arc<DiskQueue>>,
    senders: Mutex<JoinSet<()>>,
    /// A queue was configured (so a missing sender means shutting down).
    queued_mode: bool,
    /// `block_on_overflow`: a full queue makes the caller wait rather than refusing.
    block: bool,
    stop: watch::Sender<bool>,
    /// Ends the drain: after it, senders drop what is left.
    abandon: watch::Sender<bool>,
}

impl ExporterStage {
    pub fn new(
        name: String,
        export: Arc<dyn Export>,
        queue: Option<SendingQueue>,
        retry: RetryOnFailure,
        disk: Option<Arc<DiskQueue>>,
    ) -> Self {
        let shared = Arc::new(Shared {
            name,
            export,
            retry,
            queued: AtomicI64::new(0),
            lost_on_shutdown: AtomicI64::new(0),
        });
        let (stop, _) = watch::channel(false);
        let (abandon, _) = watch::channel(false);
        let mut senders = JoinSet::new();
        let tx = match &queue {
            Some(q) if q.enabled && disk.is_some() => {
                if let Some(d) = &disk {
                    metrics::gauge!("meshtrace_exporter_queue_capacity", "exporter" => shared.name.clone()).set(q.queue_size as f64);
                    metrics::gauge!("meshtrace_exporter_queue_size", "exporter" => shared.name.clone()).set(d.len() as f64);
                    for _ in 0..q.num_consumers.max(1) {
                        senders.spawn(disk_sender(shared.clone(), d.clone(), stop.subscribe()));
                    }
                }
                None
            }
            Some(q) if q.enabled => {
                let (tx, rx) = mpsc::channel(q.queue_size.max(1));
                metrics::gauge!("meshtrace_exporter_queue_capacity", "exporter" => shared.name.clone()).set(q.queue_size as f64);
                metrics::gauge!("meshtrace_exporter_queue_size", "exporter" => shared.name.clone())
                    .set(0.0);
                let rx = Arc::new(Mutex::new(rx));
                for _ in 0..q.num_consumers.max(1) {
                    senders.spawn(sender(
                        shared.clone(),
                        rx.clone(),
                        stop.subscribe(),
                        abandon.subscribe(),
                    ));
                }
                Some(tx)
            }
            _ => None,
        };
        let queued_mode = tx.is_some() || disk.is_some();
        let block = queued_mode && queue.as_ref().is_some_and(|q| q.block_on_overflow);
        Self {
            shared,
            queue: Mutex::new(tx),
            disk,
            senders: Mutex::new(senders),
            queued_mode,
            block,
            stop,
            abandon,
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Batches waiting in the queue.
    pub fn queued(&self) -> i64 {
        self.shared.queued.load(Ordering::Relaxed)
    }
}

async fn sender(
    shared: Arc<Shared>,
    rx: Arc<Mutex<mpsc::Receiver<Payload>>>,
    mut stop: watch::Receiver<bool>,
    abandon: watch::Receiver<bool>,
) {
    loop {
        let next = rx.lock().await.recv().await;
        let Some(batch) = next else { return };
        let left = shared.queued.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("meshtrace_exporter_queue_size", "exporter" => shared.name.clone())
            .set(left as f64);
        if *abandon.borrow() {
            let spans = batch.span_count() as u64;
            shared
                .lost_on_shutdown
                .fetch_add(spans as i64, Ordering::Relaxed);
            metrics::counter!("meshtrace_exporter_dropped_spans_total", "exporter" => shared.name.clone(), "reason" => "shutdown").increment(spans);
            continue;
        }
        let _ = shared.send(&batch, &mut stop, false).await;
    }
}

async fn disk_sender(shared: Arc<Shared>, queue: Arc<DiskQueue>, mut stop: watch::Receiver<bool>) {
    while let Some((seq, batch)) = queue.pop_payload().await {
        let result = shared.send(&batch, &mut stop, true).await;
        if result.is_err() && *stop.borrow() {
            continue; // interrupted by shutdown: stays on disk for the next run
        }
        queue.done(seq);
        metrics::gauge!("meshtrace_exporter_queue_size", "exporter" => shared.name.clone())
            .set(queue.len() as f64);
    }
}

impl Consumer for ExporterStage {
    fn consume(&self, batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        self.consume_payload(Payload::Batch(batch))
    }

    fn accepts_otlp(&self) -> bool {
        self.shared.export.accepts_otlp()
    }

    fn consume_payload(&self, batch: Payload) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            let spans = batch.span_count() as u64;
            if let Some(disk) = &self.disk {
                let mut pushed = disk.push_payload(&batch).await;
                // block_on_overflow: look again for room while the senders drain the queue.
                while self.block && matches!(pushed, Err(DiskQueueError::Full(_))) {
                    let mut stop = self.stop.subscribe();
                    tokio::select! {
                        () = tokio::time::sleep(FULL_DISK_RETRY) => {}
                        _ = stop.wait_for(|stopping| *stopping) => break,
                    }
                    pushed = disk.push_payload(&batch).await;
                }
                return match pushed {
                    Ok(()) => {
                        metrics::gauge!("meshtrace_exporter_queue_size", "exporter" => self.shared.name.clone()).set(disk.len() as f64);
                        Ok(())
                    }
                    Err(e) => {
                        metrics::counter!("meshtrace_exporter_enqueue_failed_spans_total", "exporter" => self.shared.name.clone()).increment(spans);
                        Err(match e {
                            DiskQueueError::Full(_) => {
                                ConsumeError::Overloaded(format!("{}: {e}", self.shared.name))
                            }
                            _ => ConsumeError::Unavailable(format!("{}: {e}", self.shared.name)),
                        })
                    }
                };
            }
            let queue = self.queue.lock().await.clone();
            let Some(tx) = queue else {
                if self.queued_mode || *self.stop.borrow() {
                    return Err(ConsumeError::Unavailable(format!(
                        "{}: shutting down",
                        self.shared.name
                    )));
                }
                // No queue: the caller waits for the export, retries included.
                let mut stop = self.stop.subscribe();
                return self
                    .shared
                    .send(&batch, &mut stop, false)
                    .await
                    .map_err(|e| match e {
                        ExportError::Retryable { message, .. } => {
                            ConsumeError::Unavailable(message)
                        }
                        ExportError::Permanent(m) => ConsumeError::Permanent(m),
                    });
            };
            self.shared.queued.fetch_add(1, Ordering::Relaxed);
            let queued = if self.block {
                // block_on_overflow: wait for room (the caller, and its client, wait too).
                // A stop wins over room made by the drain: the client is told to go elsewhere
                // rather than handed to a queue that is being emptied.
                let mut stop = self.stop.subscribe();
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stopping| *stopping) => Err(Refused::Closed),
                    sent = tx.send(batch) => sent.map_err(|_| Refused::Closed),
                }
            } else {
                tx.try_send(batch).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => Refused::Full,
                    mpsc::error::TrySendError::Closed(_) => Refused::Closed,
                })
            };
            match queued {
                Ok(()) => {
                    let n = self.shared.queued.load(Ordering::Relaxed);
                    metrics::gauge!("meshtrace_exporter_queue_size", "exporter" => self.shared.name.clone()).set(n as f64);
                    Ok(())
                }
                Err(refused) => {
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                    metrics::counter!("meshtrace_exporter_enqueue_failed_spans_total", "exporter" => self.shared.name.clone()).increment(spans);
                    Err(match refused {
                        Refused::Full => ConsumeError::Overloaded(format!(
                            "{}: sending queue is full",
                            self.shared.name
                        )),
                        Refused::Closed => ConsumeError::Unavailable(format!(
                            "{}: shutting down",
                            self.shared.name
                        )),
                    })
                }
            }
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.queue.lock().await.take();
            self.stop.send_replace(true);
            if let Some(disk) = &self.disk {
                disk.close();
            }
            let mut senders = std::mem::take(&mut *self.senders.lock().await);
            let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
                while senders.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                let left = self.queued();
                tracing::warn!(exporter = %self.shared.name, batches = left, "queue not drained in {DRAIN_TIMEOUT:?}: dropping what is left");
                self.abandon.send_replace(true);
                // Whatever is mid-attempt finishes within its timeout; the rest is dropped.
                let _ = tokio::time::timeout(Duration::from_secs(30), async {
                    while senders.join_next().await.is_some() {}
                })
                .await;
                senders.abort_all();
            }
            let lost = self.shared.lost_on_shutdown.load(Ordering::Relaxed);
            if lost > 0 {
                tracing::warn!(
                    exporter = %self.shared.name,
                    spans = lost,
                    "the in-memory queue lost spans at shutdown (meshtrace_exporter_dropped_spans_total); a file_storage persistent queue keeps them"
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    struct Counting {
        ok_after: u32,
        calls: AtomicU32,
        spans: AtomicI64,
    }

    impl Export for Counting {
        fn export<'a>(&'a self, b: &'a TraceBatch) -> BoxFuture<'a, Result<(), ExportError>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let r = if n < self.ok_after {
                Err(ExportError::retryable("down"))
            } else {
                self.spans
                    .fetch_add(b.span_count() as i64, Ordering::SeqCst);
                Ok(())
            };
            Box::pin(async move { r })
        }
    }

    fn one_span() -> TraceBatch {
        TraceBatch {
            resource_spans: vec![model::ResourceSpans {
                scope_spans: vec![model::ScopeSpans {
                    spans: vec![Default::default()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn block_on_overflow_makes_the_caller_wait_for_room_instead_of_refusing() {
        let export = Arc::new(Counting {
            ok_after: 3,
            calls: AtomicU32::new(0),
            spans: AtomicI64::new(0),
        });
        let retry = RetryOnFailure {
            initial_interval: Duration::from_millis(50),
            randomization_factor: 0.0,
            ..Default::default()
        };
        let q = SendingQueue {
            num_consumers: 1,
            queue_size: 1,
            block_on_overflow: true,
            ..Default::default()
        };
        let stage = ExporterStage::new("e".into(), export.clone(), Some(q), retry, None);
        stage.consume(one_span()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        stage.consume(one_span()).await.unwrap();
        // One is being retried, one waits: the third waits for room, then is queued.
        let started = tokio::time::Instant::now();
        let third = stage.consume(one_span()).await;
        assert!(third.is_ok(), "{third:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(40),
            "it waited for the retried batch to go out"
        );
        for _ in 0..200 {
            if export.spans.load(Ordering::SeqCst) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            export.spans.load(Ordering::SeqCst),
            3,
            "nothing refused, nothing lost"
        );
        // A caller still waiting when the collector stops is told so (not left hanging).
        let export = Arc::new(Counting {
            ok_after: u32::MAX,
            calls: AtomicU32::new(0),
            spans: AtomicI64::new(0),
        });
        let stage = Arc::new(ExporterStage::new(
            "e".into(),
            export,
            Some(q_blocking()),
            RetryOnFailure::default(),
            None,
        ));
        stage.consume(one_span()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        stage.consume(one_span()).await.unwrap();
        let waiting = tokio::spawn({
            let stage = Arc::clone(&stage);
            async move { stage.consume(one_span()).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the full queue makes it wait");
        stage.shutdown().await;
        let answer = waiting.await.unwrap();
        assert!(
            matches!(answer, Err(ConsumeError::Unavailable(_))),
            "{answer:?}"
        );
    }

    fn q_blocking() -> SendingQueue {
        SendingQueue {
            num_consumers: 1,
            queue_size: 1,
            block_on_overflow: true,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn queued_batches_are_retried_then_delivered_and_a_full_queue_refuses() {
        let export = Arc::new(Counting {
            ok_after: 2,
            calls: AtomicU32::new(0),
            spans: AtomicI64::new(0),
        });
        let retry = RetryOnFailure {
            initial_interval: Duration::from_millis(10),
            ..Default::default()
        };
        let q = SendingQueue {
            num_consumers: 1,
            queue_size: 2,
            ..Default::default()
        };
        let stage = ExporterStage::new("e".into(), export.clone(), Some(q), retry, None);
        stage.consume(one_span()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        stage.consume(one_span()).await.unwrap();
        stage.consume(one_span()).await.unwrap();
        // One is being retried, two wait: the queue (2) is full.
        let full = stage.consume(one_span()).await;
        assert!(matches!(full, Err(ConsumeError::Overloaded(_))), "{full:?}");
        for _ in 0..200 {
            if export.spans.load(Ordering::SeqCst) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(export.spans.load(Ordering::SeqCst), 3);
        assert_eq!(stage.queued(), 0);
        stage.shutdown().await;
        assert!(stage.consume(one_span()).await.is_err());
    }
}

#[cfg(test)]
mod shutdown_tests {
    use super::*;
    use crate::consumer::BoxFuture;

    struct Down;

    impl Export for Down {
        fn export<'a>(&'a self, _: &'a TraceBatch) -> BoxFuture<'a, Result<(), ExportError>> {
            Box::pin(async { Err(ExportError::retryable("connection refused")) })
        }
    }

    #[tokio::test]
    async fn in_memory_loss_at_shutdown_is_counted() {
        let q = SendingQueue {
            num_consumers: 1,
            queue_size: 10,
            ..Default::default()
        };
        let retry = RetryOnFailure {
            initial_interval: Duration::from_secs(60),
            ..Default::default()
        };
        let stage = ExporterStage::new("down".into(), Arc::new(Down), Some(q), retry, None);
        for _ in 0..3 {
            let batch = TraceBatch {
                resource_spans: vec![model::ResourceSpans {
                    scope_spans: vec![model::ScopeSpans {
                        spans: vec![Default::default(); 2],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            stage.consume(batch).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stage.shutdown().await;
        assert_eq!(stage.shared.lost_on_shutdown.load(Ordering::Relaxed), 6);
    }
}
