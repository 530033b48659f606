//! Processors: the stages of a pipeline between its receivers and its exporters.
//!
//! Stateless ones (sampler, attributes, resource, filter, transform, span, redaction,
//! groupbyattrs, resource detection, memory limiter) transform or refuse a batch
//! inline in a [`Stage`]; `batch` buffers and sends from its own task.

pub mod attributes;
pub mod batch;
pub mod filter;
pub mod groupbyattrs;
pub mod matching;
pub mod memory_limiter;
pub mod ottl;
pub mod probabilistic;
pub mod redaction;
pub mod resourcedetection;
pub mod span;
pub mod tail;
pub mod tracestate;
pub mod transform;

use std::sync::Arc;

use model::TraceBatch;

use crate::config::{ComponentId, Processor};
use crate::consumer::{BoxFuture, ConsumeError, Consumer};
use crate::payload::Payload;

/// What an inline stage does to a batch.
enum Inline {
    Sampler(probabilistic::Sampler),
    SpanAttributes(attributes::Actions, matching::SpanMatcher),
    ResourceAttributes(attributes::Actions),
    MemoryLimiter(memory_limiter::Limiter),
    Filter(filter::SpanFilter),
    Detected(resourcedetection::Detected),
    Transform(transform::Transform),
    Span(Box<span::SpanEdits>),
    Redaction(Box<redaction::Redaction>),
    Group(groupbyattrs::GroupByAttrs),
}

/// An inline processor followed by the rest of the pipeline.
pub struct Stage {
    name: String,
    inline: Inline,
    next: Arc<dyn Consumer>,
}

/// Builds the processor `id` in front of `next`.
pub fn build(
    id: &ComponentId,
    cfg: &Processor,
    next: Arc<dyn Consumer>,
) -> Result<Arc<dyn Consumer>, String> {
    let name = id.to_string();
    let inline = match cfg {
        Processor::Batch(b) => return Ok(Arc::new(batch::BatchProcessor::new(&name, b, next))),
        Processor::TailSampling(t) => return Ok(Arc::new(tail::TailSampler::new(&name, t, next))),
        Processor::ProbabilisticSampler(s) => {
            Inline::Sampler(probabilistic::Sampler::new(&name, s))
        }
        Processor::Attributes(a) => Inline::SpanAttributes(
            attributes::Actions::new(&a.actions),
            matching::SpanMatcher::new(a.include.as_deref(), a.exclude.as_deref())
                .map_err(|e| format!("processors.{name}: {e}"))?,
        ),
        Processor::Resource(r) => {
            Inline::ResourceAttributes(attributes::Actions::new(&r.attributes))
        }
        Processor::Filter(f) => Inline::Filter(
            filter::SpanFilter::new(&f.traces.span, f.error_mode.as_deref())
                .map_err(|e| format!("processors.{name}: {e}"))?,
        ),
        Processor::Transform(t) => Inline::Transform(
            transform::Transform::new(t).map_err(|e| format!("processors.{name}: {e}"))?,
        ),
        Processor::GroupByAttrs(g) => Inline::Group(groupbyattrs::GroupByAttrs::new(&g.keys)),
        Processor::Redaction(r) => Inline::Redaction(Box::new(
            redaction::Redaction::new(r).map_err(|e| format!("processors.{name}: {e}"))?,
        )),
        Processor::Span(s) => Inline::Span(Box::new(
            span::SpanEdits::new(s).map_err(|e| format!("processors.{name}: {e}"))?,
        )),
        Processor::ResourceDetection(r) => {
            Inline::Detected(resourcedetection::Detected::detect(&name, r))
        }
        Processor::MemoryLimiter(m) => {
            Inline::MemoryLimiter(memory_limiter::Limiter::start(&name, m).ok_or_else(|| {
                format!("processors.{name}: cannot tell this machine's total memory; set limit_mib")
            })?)
        }
    };
    Ok(Arc::new(Stage { name, inline, next }))
}

impl Stage {
    /// Refuses a batch the memory limiter does not take.
    fn limit(&self, l: &memory_limiter::Limiter, spans: usize) -> Result<(), ConsumeError> {
        if l.refusing() {
            metrics::counter!("meshtrace_processor_refused_spans_total", "processor" => self.name.clone())
                .increment(spans as u64);
            return Err(ConsumeError::Overloaded(format!(
                "{}: memory is above the soft limit of {} MiB",
                self.name,
                l.soft_limit / (1024 * 1024)
            )));
        }
        Ok(())
    }

    fn run(&self, batch: &mut TraceBatch) -> Result<(), ConsumeError> {
        match &self.inline {
            Inline::Sampler(s) => {
                s.process(batch);
            }
            Inline::SpanAttributes(a, only) => a.apply_to_spans(batch, only),
            Inline::ResourceAttributes(a) => a.apply_to_resources(batch),
            Inline::MemoryLimiter(l) => self.limit(l, batch.span_count())?,
            Inline::Filter(f) => f.apply(&self.name, batch).map_err(|e| {
                ConsumeError::Permanent(format!("{}: a condition failed: {e}", self.name))
            })?,
            Inline::Detected(d) => d.apply(batch),
            Inline::Span(s) => s.apply(batch),
            Inline::Redaction(r) => r.apply(batch),
            Inline::Group(g) => g.apply(batch),
            Inline::Transform(t) => t.apply(&self.name, batch).map_err(|e| {
                ConsumeError::Permanent(format!("{}: a statement failed: {e}", self.name))
            })?,
        }
        Ok(())
    }
}

impl Consumer for Stage {
    fn consume(&self, mut batch: TraceBatch) -> BoxFuture<'_, Result<(), ConsumeError>> {
        Box::pin(async move {
            let incoming = batch.span_count() as u64;
            metrics::counter!("meshtrace_processor_incoming_items_total", "processor" => self.name.clone())
                .increment(incoming);
            self.run(&mut batch)?;
            let outgoing = batch.span_count() as u64;
            metrics::counter!("meshtrace_processor_outgoing_items_total", "processor" => self.name.clone())
                .increment(outgoing);
            if outgoing == 0 {
                return Ok(());
            }
            self.next.consume(batch).await
        })
    }

    /// The memory limiter passes OTLP bytes on as they are: it does not read spans. The sampler
    /// reads trace ids from the bytes and decodes only what it may keep.
    fn consume_payload(&self, payload: Payload) -> BoxFuture<'_, Result<(), ConsumeError>> {
        match (payload, &self.inline) {
            (Payload::Otlp(raw), Inline::Sampler(s)) => Box::pin(async move {
                metrics::counter!("meshtrace_processor_incoming_items_total", "processor" => self.name.clone())
                    .increment(raw.span_count() as u64);
                let (batch, kept, _) = s
                    .process_otlp(&raw)
                    .map_err(|e| ConsumeError::Permanent(format!("undecodable OTLP bytes: {e}")))?;
                metrics::counter!("meshtrace_processor_outgoing_items_total", "processor" => self.name.clone())
                    .increment(kept);
                if kept == 0 {
                    return Ok(());
                }
                self.next.consume(batch).await
            }),
            (Payload::Otlp(raw), Inline::MemoryLimiter(l)) => Box::pin(async move {
                let spans = raw.span_count() as u64;
                metrics::counter!("meshtrace_processor_incoming_items_total", "processor" => self.name.clone())
                    .increment(spans);
                self.limit(l, raw.span_count())?;
                metrics::counter!("meshtrace_processor_outgoing_items_total", "processor" => self.name.clone())
                    .increment(spans);
                if spans == 0 {
                    return Ok(());
                }
                self.next.consume_payload(Payload::Otlp(raw)).await
            }),
            (payload, _) => match payload.into_batch() {
                Ok(batch) => self.consume(batch),
                Err(e) => Box::pin(async move {
                    Err(ConsumeError::Permanent(format!(
                        "undecodable OTLP bytes: {e}"
                    )))
                }),
            },
        }
    }

    /// The memory limiter when the rest of the pipeline takes bytes; the sampler always (what
    /// it keeps goes on decoded).
    fn accepts_otlp(&self) -> bool {
        match self.inline {
            Inline::MemoryLimiter(_) => self.next.accepts_otlp(),
            Inline::Sampler(_) => true,
            Inline::SpanAttributes(..)
            | Inline::ResourceAttributes(_)
            | Inline::Filter(_)
            | Inline::Detected(_)
            | Inline::Transform(_)
            | Inline::Span(_)
            | Inline::Redaction(_)
            | Inline::Group(_) => false,
        }
    }
}
