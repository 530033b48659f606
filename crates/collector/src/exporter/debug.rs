//! `debug`: writes what it receives to the log (stderr), as the OTel Collector's debug exporter.

use std::sync::atomic::{AtomicU64, Ordering};

use model::TraceBatch;

use super::{Export, ExportError};
use crate::config::{DebugExporter as Config, Verbosity};
use crate::consumer::BoxFuture;

pub struct DebugExporter {
    name: String,
    verbosity: Verbosity,
    initial: u64,
    thereafter: u64,
    seen: AtomicU64,
}

impl DebugExporter {
    pub fn new(name: &str, cfg: &Config) -> Self {
        Self {
            name: name.to_owned(),
            verbosity: cfg.verbosity,
            initial: cfg.sampling_initial.unwrap_or(2),
            thereafter: cfg.sampling_thereafter.unwrap_or(1).max(1),
            seen: AtomicU64::new(0),
        }
    }
}

impl Export for DebugExporter {
    fn export<'a>(&'a self, batch: &'a TraceBatch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let n = self.seen.fetch_add(1, Ordering::Relaxed);
            if n >= self.initial && !(n - self.initial).is_multiple_of(self.thereafter) {
                return Ok(());
            }
            tracing::info!(
                exporter = %self.name,
                "resource spans: {}, spans: {}",
                batch.resource_spans.len(),
                batch.span_count()
            );
            match self.verbosity {
                Verbosity::Basic => {}
                Verbosity::Normal => {
                    for (resource, _, span) in batch.spans() {
                        tracing::info!(
                            exporter = %self.name,
                            "{} {} {} {} {}ns",
                            resource.service_name(),
                            span.trace_id,
                            span.span_id,
                            span.name,
                            span.duration_nanos()
                        );
                    }
                }
                Verbosity::Detailed => {
                    let json = wire::otlp::encode_json(batch);
                    tracing::info!(exporter = %self.name, "{}", String::from_utf8_lossy(&json));
                }
            }
            Ok(())
        })
    }
}
