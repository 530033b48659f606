//! One shutdown signal for the whole process: SIGINT, SIGTERM, or a server that failed.

use std::sync::Arc;

use tokio::sync::watch;

/// A cloneable handle that resolves once shutdown has begun, and can begin it.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    tx: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// Starts listening for SIGINT/SIGTERM.
    pub fn on_signals() -> std::io::Result<Self> {
        let (tx, rx) = watch::channel(false);
        let shutdown = Self {
            rx,
            tx: Arc::new(tx),
        };
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown requested: draining and flushing");
            trigger.trigger();
        });
        Ok(shutdown)
    }

    /// Begins shutdown (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Completes when shutdown begins.
    pub async fn wait(mut self) {
        // The sender lives in `self`, so this only ends when shutdown was sent.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}
