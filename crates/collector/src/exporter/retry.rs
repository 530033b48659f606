//! `retry_on_failure`: exponential backoff with jitter for retryable failures, honouring the
//! backend's Retry-After / RetryInfo, bounded by `max_elapsed_time` (0 = forever), and cut short
//! when the collector shuts down.

use std::time::{Duration, Instant};

use model::TraceBatch;
use tokio::sync::watch;

use super::{Export, ExportError};
use crate::config::RetryOnFailure;
use crate::consumer::BoxFuture;
use crate::payload::Payload;

/// Sends `batch`, retrying retryable failures as `cfg` says. `stop` turning true ends the
/// waiting: the current failure is then returned.
pub async fn send(
    name: &str,
    export: &dyn Export,
    batch: &TraceBatch,
    cfg: &RetryOnFailure,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ExportError> {
    attempts(name, || export.export(batch), cfg, stop).await
}

/// [`send`] for a batch in either form.
pub async fn send_payload(
    name: &str,
    export: &dyn Export,
    payload: &Payload,
    cfg: &RetryOnFailure,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ExportError> {
    attempts(name, || export.export_payload(payload), cfg, stop).await
}

async fn attempts<'a>(
    name: &str,
    attempt_once: impl Fn() -> BoxFuture<'a, Result<(), ExportError>>,
    cfg: &RetryOnFailure,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ExportError> {
    let started = Instant::now();
    let mut interval = cfg.initial_interval;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let err = match attempt_once().await {
            Ok(()) => return Ok(()),
            Err(e @ ExportError::Permanent(_)) => return Err(e),
            Err(e) => e,
        };
        if !cfg.enabled || *stop.borrow() {
            return Err(err);
        }
        let hint = match &err {
            ExportError::Retryable { retry_after, .. } => *retry_after,
            ExportError::Permanent(_) => None,
        };
        let wait = hint.unwrap_or_else(|| jitter(interval, cfg.randomization_factor));
        if !cfg.max_elapsed_time.is_zero() && started.elapsed() + wait > cfg.max_elapsed_time {
            tracing::warn!(
                exporter = name,
                attempt,
                "giving up after {:?}: {err}",
                started.elapsed()
            );
            return Err(err);
        }
        tracing::info!(
            exporter = name,
            attempt,
            "export failed, retrying in {wait:?}: {err}"
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return Err(err),
        }
        interval = interval
            .mul_f64(cfg.multiplier.max(1.0))
            .min(cfg.max_interval.max(cfg.initial_interval));
    }
}

/// `interval` ± `factor`, from a cheap clock-seeded value (no need for a strong RNG here).
fn jitter(interval: Duration, factor: f64) -> Duration {
    let factor = factor.clamp(0.0, 1.0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = u64::from(nanos) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let unit = (x % 1_000_000) as f64 / 1_000_000.0; // [0, 1)
    interval.mul_f64(1.0 - factor + 2.0 * factor * unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::BoxFuture;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Flaky {
        fails: u32,
        calls: AtomicU32,
        error: ExportError,
    }

    impl Export for Flaky {
        fn export<'a>(&'a self, _: &'a TraceBatch) -> BoxFuture<'a, Result<(), ExportError>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let r = if n < self.fails {
                Err(self.error.clone())
            } else {
                Ok(())
            };
            Box::pin(async move { r })
        }
    }

    fn fast() -> RetryOnFailure {
        RetryOnFailure {
            initial_interval: Duration::from_millis(5),
            max_interval: Duration::from_millis(20),
            max_elapsed_time: Duration::from_secs(5),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn retries_retryable_until_success_but_not_permanent() {
        let (_tx, mut stop) = watch::channel(false);
        let f = Flaky {
            fails: 3,
            calls: AtomicU32::new(0),
            error: ExportError::retryable("503"),
        };
        assert!(send("e", &f, &TraceBatch::default(), &fast(), &mut stop)
            .await
            .is_ok());
        assert_eq!(f.calls.load(Ordering::SeqCst), 4);
        let p = Flaky {
            fails: 3,
            calls: AtomicU32::new(0),
            error: ExportError::Permanent("400".into()),
        };
        assert!(send("e", &p, &TraceBatch::default(), &fast(), &mut stop)
            .await
            .is_err());
        assert_eq!(p.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_after_max_elapsed_and_on_stop() {
        let (tx, mut stop) = watch::channel(false);
        let cfg = RetryOnFailure {
            max_elapsed_time: Duration::from_millis(30),
            ..fast()
        };
        let f = Flaky {
            fails: u32::MAX,
            calls: AtomicU32::new(0),
            error: ExportError::retryable("down"),
        };
        let t = Instant::now();
        assert!(send("e", &f, &TraceBatch::default(), &cfg, &mut stop)
            .await
            .is_err());
        assert!(t.elapsed() < Duration::from_secs(1));
        let forever = RetryOnFailure {
            max_elapsed_time: Duration::ZERO,
            ..fast()
        };
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send_replace(true);
        });
        assert!(send("e", &f, &TraceBatch::default(), &forever, &mut stop)
            .await
            .is_err());
        stopper.await.unwrap();
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let (_tx, mut stop) = watch::channel(false);
        let f = Flaky {
            fails: 1,
            calls: AtomicU32::new(0),
            error: ExportError::Retryable {
                message: "429".into(),
                retry_after: Some(Duration::from_millis(200)),
            },
        };
        let t = Instant::now();
        send("e", &f, &TraceBatch::default(), &fast(), &mut stop)
            .await
            .unwrap();
        assert!(t.elapsed() >= Duration::from_millis(200));
    }
}
