//! `otlp`: OTLP over gRPC with tonic and opentelemetry-proto's generated client; gzip by
//! default (as the OTel Collector; `compression: zstd` or `none` otherwise), custom headers as metadata, a per-attempt timeout.
//!
//! Retryable answers are the ones the OTLP specification lists: CANCELLED, DEADLINE_EXCEEDED,
//! ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and RESOURCE_EXHAUSTED only when the server
//! sent a RetryInfo (which also gives the delay). Connection failures surface as UNAVAILABLE.
//!
//! TLS as the OTel Collector's gRPC client decides it (see [`super::tls`]).
//!
//! OTLP bytes ([`Payload::Otlp`], see [`crate::payload`]) are sent as they are, through a codec
//! that writes them into the gRPC frame instead of encoding a request.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;
use model::TraceBatch;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use super::{Export, ExportError};
use crate::auth::ClientAuth;
use crate::config::{Compression, OtlpExporter as Config};
use crate::consumer::BoxFuture;
use crate::payload::{OtlpBytes, Payload};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

pub struct OtlpExporter {
    client: TraceServiceClient<Channel>,
    /// The same channel, for sending OTLP bytes as they are.
    raw: tonic::client::Grpc<Channel>,
    metadata: Vec<(
        MetadataKey<tonic::metadata::Ascii>,
        MetadataValue<tonic::metadata::Ascii>,
    )>,
    auth: Option<Arc<ClientAuth>>,
    timeout: Duration,
    target: String,
}

impl OtlpExporter {
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let endpoint = cfg.endpoint.as_deref().ok_or("endpoint must be set")?;
        let tls = super::tls::uses_tls(endpoint, &cfg.tls)
            .then(|| super::tls::ClientTlsSource::new(&cfg.tls, b"h2"))
            .transpose()?;
        let host_port = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"))
            .unwrap_or(endpoint);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let timeout = cfg.timeout.unwrap_or(Duration::from_secs(5));
        let mut channel = Endpoint::from_str(&format!("{scheme}://{host_port}"))
            .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?
            .connect_timeout(timeout)
            .timeout(timeout);
        if let Some(k) = &cfg.keepalive {
            // gRPC's defaults when only part is set: 20 s to answer a ping.
            if let Some(time) = k.time.filter(|t| !t.is_zero()) {
                channel = channel
                    .http2_keep_alive_interval(time)
                    .keep_alive_timeout(k.timeout.unwrap_or(Duration::from_secs(20)))
                    .keep_alive_while_idle(k.permit_without_stream);
            }
        }
        let channel =
            channel.connect_with_connector_lazy(super::connect::Connector::new(tls, timeout));
        let mut raw =
            tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(64 * 1024 * 1024);
        let mut client =
            TraceServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        let encoding = match Compression::of(cfg.compression) {
            Some(Compression::Zstd) => Some(CompressionEncoding::Zstd),
            Some(_) => Some(CompressionEncoding::Gzip),
            None => None,
        };
        if let Some(encoding) = encoding {
            client = client.send_compressed(encoding);
            raw = raw.send_compressed(encoding);
        }
        let metadata = cfg
            .headers
            .iter()
            .map(|(k, v)| {
                let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .map_err(|e| format!("header {k:?}: {e}"))?;
                let value = MetadataValue::try_from(v.as_str())
                    .map_err(|e| format!("header {k:?} value: {e}"))?;
                Ok((key, value))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            client,
            raw,
            metadata,
            auth: None,
            timeout,
            target: endpoint.to_owned(),
        })
    }

    /// Every call also carries `auth`'s header as metadata.
    pub fn with_auth(mut self, auth: Option<Arc<ClientAuth>>) -> Self {
        self.auth = auth;
        self
    }
}

impl OtlpExporter {
    async fn request<T>(&self, message: T) -> Result<tonic::Request<T>, ExportError> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(self.timeout);
        for (k, v) in &self.metadata {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        if let Some(auth) = &self.auth {
            let (k, v) = auth
                .header()
                .await
                .map_err(|e| ExportError::retryable(format!("{}: auth: {e}", self.target)))?;
            // A header name is lower case and a value visible ASCII, so both are metadata.
            if let (Ok(k), Ok(v)) = (
                MetadataKey::from_bytes(k.as_str().as_bytes()),
                MetadataValue::try_from(v.as_bytes()),
            ) {
                req.metadata_mut().insert(k, v);
            }
        }
        Ok(req)
    }

    /// The outcome of one call, given at most `timeout` + 1 s.
    async fn call(
        &self,
        call: impl std::future::Future<
            Output = Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status>,
        >,
    ) -> Result<(), ExportError> {
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), call).await {
            Err(_) => Err(ExportError::retryable(format!(
                "{}: timed out after {:?}",
                self.target, self.timeout
            ))),
            Ok(Ok(resp)) => {
                if let Some(p) = resp.into_inner().partial_success {
                    if p.rejected_spans > 0 {
                        tracing::warn!(target_endpoint = %self.target, rejected = p.rejected_spans, "backend rejected spans: {}", p.error_message);
                    }
                }
                Ok(())
            }
            Ok(Err(status)) => Err(classify(&self.target, &status)),
        }
    }
}

impl Export for OtlpExporter {
    fn export<'a>(&'a self, batch: &'a TraceBatch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let req = self.request(wire::otlp::to_request(batch)).await?;
            let mut client = self.client.clone();
            self.call(client.export(req)).await
        })
    }

    fn export_payload<'a>(
        &'a self,
        payload: &'a Payload,
    ) -> BoxFuture<'a, Result<(), ExportError>> {
        match payload {
            Payload::Batch(b) => self.export(b),
            Payload::Otlp(raw) => Box::pin(async move {
                let req = self.request(raw.clone()).await?;
                let mut grpc = self.raw.clone();
                self.call(async move {
                    grpc.ready().await.map_err(|e| {
                        tonic::Status::unavailable(format!("service was not ready: {e}"))
                    })?;
                    grpc.unary(req, PathAndQuery::from_static(EXPORT_PATH), RawCodec)
                        .await
                })
                .await
            }),
        }
    }

    fn accepts_otlp(&self) -> bool {
        true
    }
}

/// Writes [`OtlpBytes`] into the gRPC frame as they are; decodes the response with prost.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = OtlpBytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = OtlpBytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: OtlpBytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.reserve(item.len());
        for chunk in item.chunks() {
            dst.put_slice(chunk);
        }
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        use prost::Message;
        ExportTraceServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable response: {e}")))
    }
}

fn classify(target: &str, status: &tonic::Status) -> ExportError {
    let message = super::with_causes(
        format!("{target}: {:?}: {}", status.code(), status.message()),
        status,
    );
    let retry_after = retry_delay(status.details());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => ExportError::Retryable {
            message,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => ExportError::Retryable {
            message,
            retry_after,
        },
        _ => ExportError::Permanent(message),
    }
}

/// The delay of a `google.rpc.RetryInfo` in the status details, if any.
fn retry_delay(details: &[u8]) -> Option<Duration> {
    use prost::Message;
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|a| a.type_url.ends_with("google.rpc.RetryInfo"))?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let secs = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos).ok()?;
    Some(Duration::new(secs, nanos))
}

/// `google.rpc.Status`, only as far as RetryInfo needs.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn retryable_codes_follow_the_otlp_spec() {
        let s = |code| tonic::Status::new(code, "x");
        assert!(matches!(
            classify("t", &s(Code::Unavailable)),
            ExportError::Retryable { .. }
        ));
        assert!(matches!(
            classify("t", &s(Code::DeadlineExceeded)),
            ExportError::Retryable { .. }
        ));
        assert!(matches!(
            classify("t", &s(Code::InvalidArgument)),
            ExportError::Permanent(_)
        ));
        assert!(matches!(
            classify("t", &s(Code::ResourceExhausted)),
            ExportError::Permanent(_)
        ));
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: 2,
                nanos: 0,
            }),
        };
        let details = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        let st = tonic::Status::with_details(
            Code::ResourceExhausted,
            "slow down",
            details.encode_to_vec().into(),
        );
        assert_eq!(
            classify("t", &st),
            ExportError::Retryable {
                message: "t: ResourceExhausted: slow down".into(),
                retry_after: Some(Duration::from_secs(2))
            }
        );
    }
}
