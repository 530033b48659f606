//! The reporter: spans go into a bounded buffer that never blocks a request (a full buffer drops
//! the span and counts it), a background task batches them by count or interval and exports them
//! as Zipkin v2 (JSON or proto3; 202 expected) or OTLP (HTTP protobuf or gRPC), retrying with
//! exponential backoff while the collector is away. While it retries, the buffer fills and new
//! spans are dropped: memory stays bounded, requests never wait.
//!
//! The buffer is a mutex-guarded queue, not a channel: the request threads only wake the
//! reporter (which runs on another runtime, another thread) when a full batch is waiting; the
//! interval tick collects the rest. A wake-up per span would cost every request a cross-thread
//! hop and a context switch.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use model::{KeyValue, Resource, ResourceSpans, Scope, ScopeSpans, Span, TraceBatch};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::sync::{oneshot, Notify};

use crate::config::{Config, Protocol, UpstreamTls};
use crate::report_conn::Connect;
use crate::span::{ProxySpan, SpanTags};
use crate::stats::Stats;
use crate::zipkin_json::JsonWriter;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long shutdown waits for the last export.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("collector URL {url:?} is invalid: {reason}")]
    Url { url: String, reason: String },
    #[error("{0}")]
    Tls(String),
    #[error("tracing.headers {name:?}: {reason}")]
    Header { name: String, reason: String },
}

/// The spans waiting for the reporter, shared by the request threads and the reporter task.
struct Queue {
    spans: Mutex<VecDeque<ProxySpan>>,
    /// At most this many spans wait; beyond it new ones are dropped.
    capacity: usize,
    /// A batch this big wakes the reporter.
    batch: usize,
    /// Wakes the reporter; a wake with no one waiting is kept for its next wait.
    full_batch: Notify,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<ProxySpan>> {
        self.spans.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Up to `max` of the oldest spans (none when empty).
    fn take(&self, max: usize) -> Vec<ProxySpan> {
        let mut q = self.lock();
        let n = q.len().min(max);
        q.drain(..n).collect()
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The request side of the reporter: cheap to clone, never waits (beyond a short lock).
#[derive(Clone)]
pub struct SpanSink {
    queue: Arc<Queue>,
    stats: Arc<Stats>,
}

impl SpanSink {
    /// Queues a finished span, or drops it (counted) when the buffer is full. Wakes the reporter
    /// only when this span completes a batch.
    pub fn offer(&self, span: ProxySpan) {
        let queue = &self.queue;
        let len = {
            let mut q = queue.lock();
            if q.len() >= queue.capacity {
                None
            } else {
                q.push_back(span);
                Some(q.len())
            }
        };
        match len {
            None => Stats::inc(&self.stats.spans_dropped),
            Some(n) if n == queue.batch => queue.full_batch.notify_one(),
            Some(_) => {}
        }
    }
}

/// Stops the reporter task, flushing what it holds.
pub struct ReporterHandle {
    close: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl ReporterHandle {
    pub async fn close(mut self) {
        if let Some((tx, task)) = self.close.take() {
            let _ = tx.send(());
            let _ = tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), task).await;
        }
    }
}

enum Exporter {
    Http {
        client: Box<Client<Connect, Full<Bytes>>>,
        uri: http::Uri,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    },
    Grpc {
        client: TraceServiceClient<tonic::transport::Channel>,
        metadata: Vec<(
            tonic::metadata::MetadataKey<tonic::metadata::Ascii>,
            tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
        )>,
    },
}

/// Turns a batch of spans into what the exporter sends, once per batch (retries resend it).
struct Encoder {
    protocol: Protocol,
    /// What every span is given when it becomes a model span.
    tags: SpanTags,
    resource: Resource,
    json: JsonWriter,
}

/// One batch, encoded.
enum Payload {
    Http {
        body: Bytes,
        content_type: &'static str,
    },
    Grpc(ExportTraceServiceRequest),
}

impl Encoder {
    fn encode(&self, spans: Vec<ProxySpan>) -> Payload {
        if self.protocol == Protocol::ZipkinJson {
            return Payload::Http {
                body: Bytes::from(self.json.write(&spans)),
                content_type: "application/json",
            };
        }
        let spans = spans
            .into_iter()
            .map(|s| s.into_model(&self.tags))
            .collect();
        let batch = to_batch(&self.resource, SCOPE_NAME, SCOPE_VERSION, spans);
        let (body, content_type) = match self.protocol {
            Protocol::OtlpGrpc => return Payload::Grpc(wire::otlp::to_request(&batch)),
            Protocol::ZipkinProto => (wire::zipkin::encode_proto(&batch), "application/x-protobuf"),
            _ => (
                wire::otlp::encode_protobuf(&batch),
                "application/x-protobuf",
            ),
        };
        Payload::Http {
            body: Bytes::from(body),
            content_type,
        }
    }
}

/// The instrumentation scope of the proxy's spans.
const SCOPE_NAME: &str = "meshtrace-proxy";
const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What one export attempt came to.
enum Outcome {
    Done,
    Retry(String),
    GiveUp(String),
}

/// Starts the reporter; no sink when no collector is configured (spans are then not recorded).
/// The task keeping `tracing.tls` in step with its files is pushed on `reloading`.
pub fn start(
    config: &Config,
    stats: Arc<Stats>,
    reloading: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(ReporterHandle, Option<SpanSink>), ReportError> {
    let t = &config.tracing;
    let Some(url) = &t.collector else {
        return Ok((ReporterHandle { close: None }, None));
    };
    let bad = |reason: String| ReportError::Url {
        url: url.clone(),
        reason,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad("an http:// or https:// URL is needed".to_owned())),
    };
    if uri.host().is_none() {
        return Err(bad("the URL has no host".to_owned()));
    }
    let tls = match (https, &t.tls) {
        (false, Some(_)) => {
            return Err(ReportError::Tls(format!(
                "tracing.tls is set but the collector URL {url:?} is http://; use https://"
            )))
        }
        (false, None) => None,
        (true, settings) => {
            // An https:// URL without a block trusts the system's CAs.
            let settings = settings.clone().unwrap_or_else(UpstreamTls::default);
            let files = crate::tls::upstream_files(&settings);
            let (watched, reload) =
                crate::tls::watched("tracing.tls".to_owned(), files, move || {
                    crate::tls::originate(&settings, "tracing.tls")
                })
                .map_err(ReportError::Tls)?;
            reloading.push(tokio::spawn(reload));
            Some(watched)
        }
    };
    let connect = |http2| Connect {
        tls: tls.clone(),
        http2,
        timeout: Duration::from_secs(5),
    };
    let header = |name: &String, reason: String| ReportError::Header {
        name: name.clone(),
        reason,
    };
    let exporter = match t.protocol {
        Protocol::OtlpGrpc => {
            let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|e| bad(e.to_string()))?
                .timeout(Duration::from_secs(10));
            let metadata = t
                .headers
                .iter()
                .map(|(k, v)| {
                    let key =
                        tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                            .map_err(|e| header(k, e.to_string()))?;
                    let value = tonic::metadata::MetadataValue::try_from(v.as_str())
                        .map_err(|e| header(k, e.to_string()))?;
                    Ok((key, value))
                })
                .collect::<Result<_, ReportError>>()?;
            Exporter::Grpc {
                client: TraceServiceClient::new(
                    endpoint.connect_with_connector_lazy(connect(true)),
                ),
                metadata,
            }
        }
        _ => {
            let headers = t
                .headers
                .iter()
                .map(|(k, v)| {
                    Ok((
                        http::HeaderName::try_from(k.as_str())
                            .map_err(|e| header(k, e.to_string()))?,
                        http::HeaderValue::try_from(v.as_str())
                            .map_err(|e| header(k, e.to_string()))?,
                    ))
                })
                .collect::<Result<_, ReportError>>()?;
            Exporter::Http {
                client: Box::new(Client::builder(TokioExecutor::new()).build(connect(false))),
                uri,
                headers,
            }
        }
    };
    let queue = Arc::new(Queue {
        spans: Mutex::new(VecDeque::new()),
        capacity: t.buffer_size,
        batch: t.flush.count,
        full_batch: Notify::new(),
    });
    let (close_tx, close_rx) = oneshot::channel();
    let resource = Resource {
        attributes: [
            Some(KeyValue::new(model::SERVICE_NAME, config.service_name())),
            (!config.zone.is_empty()).then(|| KeyValue::new("zone", config.zone.as_str())),
        ]
        .into_iter()
        .flatten()
        .collect(),
        dropped_attributes_count: 0,
    };
    let encoder = Encoder {
        protocol: t.protocol,
        tags: SpanTags::new(config),
        json: JsonWriter::new(
            SpanTags::new(config),
            resource.clone(),
            SCOPE_NAME,
            SCOPE_VERSION,
        ),
        resource,
    };
    let task = tokio::spawn(run(
        queue.clone(),
        close_rx,
        exporter,
        encoder,
        t.flush.count,
        t.flush.interval,
        stats.clone(),
    ));
    Ok((
        ReporterHandle {
            close: Some((close_tx, task)),
        },
        Some(SpanSink { queue, stats }),
    ))
}

async fn run(
    queue: Arc<Queue>,
    mut close: oneshot::Receiver<()>,
    exporter: Exporter,
    encoder: Encoder,
    count: usize,
    interval: Duration,
    stats: Arc<Stats>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Full batches go as soon as they are there; the tick sends what is left too.
        let everything = tokio::select! {
            _ = queue.full_batch.notified() => false,
            _ = tick.tick() => true,
            _ = &mut close => break,
        };
        while everything || queue.len() >= count {
            let buf = queue.take(count);
            if buf.is_empty() {
                break;
            }
            let last = buf.len() < count;
            let n = buf.len() as u64;
            let payload = encoder.encode(buf);
            if flush(&exporter, &payload, n, &stats, &mut close).await {
                return;
            }
            if last {
                break;
            }
        }
    }
    // Closing: take what is queued and try once more, briefly.
    let mut rest = queue.take(usize::MAX);
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(count));
        let chunk = std::mem::replace(&mut rest, tail);
        let n = chunk.len() as u64;
        let payload = encoder.encode(chunk);
        match tokio::time::timeout(CLOSE_TIMEOUT, export(&exporter, &payload)).await {
            Ok(Outcome::Done) => Stats::add(&stats.spans_exported, n),
            _ => Stats::add(&stats.spans_export_failed, n),
        }
    }
}

/// Exports `buf`, retrying with backoff until it succeeds, is refused for good, or close is asked
/// (then the batch is counted as failed and `true` returned: the reporter stops).
async fn flush(
    exporter: &Exporter,
    payload: &Payload,
    n: u64,
    stats: &Stats,
    close: &mut oneshot::Receiver<()>,
) -> bool {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match export(exporter, payload).await {
            Outcome::Done => {
                Stats::add(&stats.spans_exported, n);
                return false;
            }
            Outcome::GiveUp(why) => {
                tracing::warn!("collector refused {n} spans: {why}");
                Stats::add(&stats.spans_export_failed, n);
                return false;
            }
            Outcome::Retry(why) => {
                tracing::debug!("export of {n} spans failed, retrying in {backoff:?}: {why}");
                Stats::inc(&stats.export_retries);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut *close => {
                        Stats::add(&stats.spans_export_failed, n);
                        return true;
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The batch the general encoders take: one resource, one scope.
pub(crate) fn to_batch(
    resource: &Resource,
    scope_name: &str,
    scope_version: &str,
    spans: Vec<Span>,
) -> TraceBatch {
    TraceBatch {
        resource_spans: vec![ResourceSpans {
            resource: resource.clone(),
            schema_url: String::new(),
            scope_spans: vec![ScopeSpans {
                scope: Scope {
                    name: scope_name.to_owned(),
                    version: scope_version.to_owned(),
                    ..Default::default()
                },
                schema_url: String::new(),
                spans,
            }],
        }],
    }
}

async fn export(exporter: &Exporter, payload: &Payload) -> Outcome {
    match (exporter, payload) {
        (Exporter::Grpc { client, metadata }, Payload::Grpc(request)) => {
            let mut client = client.clone();
            let mut request = tonic::Request::new(request.clone());
            for (k, v) in metadata {
                request.metadata_mut().insert(k.clone(), v.clone());
            }
            match client.export(request).await {
                Ok(_) => Outcome::Done,
                Err(s) => match s.code() {
                    tonic::Code::InvalidArgument
                    | tonic::Code::Unimplemented
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated => Outcome::GiveUp(s.to_string()),
                    _ => Outcome::Retry(s.to_string()),
                },
            }
        }
        (
            Exporter::Http {
                client,
                uri,
                headers,
            },
            Payload::Http { body, content_type },
        ) => {
            let mut req = http::Request::post(uri.clone());
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let req = req
                .header(http::header::CONTENT_TYPE, *content_type)
                .body(Full::new(body.clone()));
            let req = match req {
                Ok(r) => r,
                Err(e) => return Outcome::GiveUp(e.to_string()),
            };
            let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req)).await;
            match resp {
                Err(_) => Outcome::Retry("timed out".to_owned()),
                Ok(Err(e)) => Outcome::Retry(e.to_string()),
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    // Read the answer so the connection goes back to the pool.
                    let _ = resp.into_body().collect().await;
                    if status.is_success() {
                        Outcome::Done
                    } else if status.as_u16() == 429 || status.is_server_error() {
                        Outcome::Retry(format!("HTTP {status}"))
                    } else {
                        Outcome::GiveUp(format!("HTTP {status}"))
                    }
                }
            }
        }
        // `start` pairs each exporter with the encoding it sends.
        _ => Outcome::GiveUp("the batch was encoded for another exporter".to_owned()),
    }
}
