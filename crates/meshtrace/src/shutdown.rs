//! One shutdown signal for the whole process: SIGINT or SIGTERM, observed by every server.

use tokio::sync::watch;

/// A cloneable handle that resolves once shutdown has begun.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Starts listening for SIGINT/SIGTERM.
    pub fn on_signals() -> std::io::Result<Self> {
        let (tx, rx) = watch::channel(false);
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            #[cfg(unix)]
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown requested: draining and flushing");
            let _ = tx.send(true);
        });
        Ok(Self(rx))
    }

    /// Completes when shutdown begins.
    pub async fn wait(mut self) {
        // An error means the sender is gone, which only happens once shutdown was sent.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
