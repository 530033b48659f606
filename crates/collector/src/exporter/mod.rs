//! Exporters: the last stage of a pipeline, sending batches to a backend.
//!
//! Each exporter type ([`otlp`], [`otlphttp`], [`zipkin`], [`debug`]) only knows how to make one
//! attempt and whether its failure is worth retrying. [`retry`] adds `retry_on_failure` and
//! [`queue`] the `sending_queue`, the same way for all of them.

pub mod connect;
pub mod debug;
pub mod file;
pub mod http;
pub mod loadbalancing;
pub mod otlp;
pub mod otlphttp;
pub mod persistent;
pub mod queue;
pub mod retry;
pub mod tls;
pub mod zipkin;

use std::sync::Arc;
use std::time::Duration;

use model::TraceBatch;

use crate::config::{ComponentId, Exporter};
use crate::consumer::BoxFuture;
use crate::payload::Payload;

/// Why one export attempt failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExportError {
    /// Worth trying again (backend down, throttled, timed out); `retry_after` is the backend's
    /// own hint (HTTP Retry-After, gRPC RetryInfo).
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The backend refused the data for good (bad request, unauthorised, ...).
    #[error("{0}")]
    Permanent(String),
}

impl ExportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// `message`, then each cause of `error` whose text it does not hold yet, `: `-separated:
/// connection and TLS failures say why only in their sources ("client error (Connect)", then
/// "invalid peer certificate: UnknownIssuer").
pub(crate) fn with_causes(mut message: String, error: &dyn std::error::Error) -> String {
    let mut cause = error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

/// One attempt at sending a batch.
pub trait Export: Send + Sync + 'static {
    fn export<'a>(&'a self, batch: &'a TraceBatch) -> BoxFuture<'a, Result<(), ExportError>>;

    /// One attempt at sending a batch in either form. Exporters that send OTLP protobuf
    /// override it (and [`Export::accepts_otlp`]) to send the bytes as they are; the others
    /// get the batch decoded.
    fn export_payload<'a>(
        &'a self,
        payload: &'a Payload,
    ) -> BoxFuture<'a, Result<(), ExportError>> {
        export_decoded(self, payload)
    }

    /// Whether [`Export::export_payload`] sends OTLP bytes without decoding them.
    fn accepts_otlp(&self) -> bool {
        false
    }
}

/// A payload exported as a batch: OTLP bytes decoded first (undecodable ones are a permanent
/// failure). What [`Export::export_payload`] does by default, and what exporters that send
/// bytes as they are do for the forms they cannot send so.
fn export_decoded<'a, E: Export + ?Sized>(
    exporter: &'a E,
    payload: &'a Payload,
) -> BoxFuture<'a, Result<(), ExportError>> {
    match payload {
        Payload::Batch(b) => exporter.export(b),
        Payload::Otlp(raw) => Box::pin(async move {
            let batch = raw
                .decode()
                .map_err(|e| ExportError::Permanent(format!("undecodable OTLP bytes: {e}")))?;
            exporter.export(&batch).await
        }),
    }
}

/// Builds the exporter `id` as a pipeline stage (queue + retries + the exporter itself).
/// `storage` is the directory of the `file_storage` extension its queue names, if any.
/// `auths` holds the authenticators an `auth` block may name.
pub fn build(
    id: &ComponentId,
    cfg: &Exporter,
    storage: Option<&std::path::Path>,
    auths: &crate::auth::Authenticators,
) -> Result<Arc<dyn crate::consumer::Consumer>, String> {
    let name = id.to_string();
    let at = |e: String| format!("exporters.{name}: {e}");
    if let Exporter::LoadBalancing(lb) = cfg {
        let auth = auths.client(lb.protocol.otlp.auth.as_ref()).map_err(at)?;
        return Ok(Arc::new(
            loadbalancing::LoadBalancer::new(&name, lb, auth).map_err(at)?,
        ));
    }
    let (export, queue, retry): (Arc<dyn Export>, _, _) = match cfg {
        Exporter::Otlp(o) => (
            Arc::new(
                otlp::OtlpExporter::new(o)
                    .map_err(at)?
                    .with_auth(auths.client(o.auth.as_ref()).map_err(at)?),
            ),
            Some(o.sending_queue.clone()),
            o.retry_on_failure.clone(),
        ),
        Exporter::OtlpHttp(o) => (
            Arc::new(
                otlphttp::OtlpHttpExporter::new(o, auths.client(o.auth.as_ref()).map_err(at)?)
                    .map_err(at)?,
            ),
            Some(o.sending_queue.clone()),
            o.retry_on_failure.clone(),
        ),
        Exporter::Zipkin(z) => (
            Arc::new(
                zipkin::ZipkinExporter::new(z, auths.client(z.auth.as_ref()).map_err(at)?)
                    .map_err(at)?,
            ),
            Some(z.sending_queue.clone()),
            z.retry_on_failure.clone(),
        ),
        Exporter::LoadBalancing(_) => return Err(format!("exporters.{name}: unexpected")),
        Exporter::Debug(d) => (
            Arc::new(debug::DebugExporter::new(&name, d)),
            None,
            crate::config::RetryOnFailure {
                enabled: false,
                ..Default::default()
            },
        ),
        // Written at once to a local file: no queue, and a failed write is reported, not retried.
        Exporter::File(f) => (
            Arc::new(file::FileExporter::new(f).map_err(at)?),
            None,
            crate::config::RetryOnFailure {
                enabled: false,
                ..Default::default()
            },
        ),
    };
    let disk = match (storage, &queue) {
        (Some(dir), Some(q)) if q.enabled => {
            // One folder per exporter, named as the OTel Collector names its queue storage.
            let folder = dir.join(format!("exporter_{}_traces", name.replace('/', "_")));
            Some(Arc::new(
                persistent::DiskQueue::open(&folder, q.queue_size)
                    .map_err(|e| format!("exporters.{name}: {e}"))?,
            ))
        }
        _ => None,
    };
    Ok(Arc::new(queue::ExporterStage::new(
        name, export, queue, retry, disk,
    )))
}
