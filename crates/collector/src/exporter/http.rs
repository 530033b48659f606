//! The HTTP/1.1 client the `otlphttp` and `zipkin` exporters share: one POST per attempt,
//! optional gzip or zstd, a timeout, HTTPS for `https://` URLs (see [`super::tls`]), and the OTLP rules
//! for which answers are worth retrying (429, 502, 503, 504; `Retry-After` honoured).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::connect::Connector;
use super::ExportError;
use crate::auth::ClientAuth;
use crate::config::{Compression, Tls};

#[derive(Clone)]
pub struct Poster {
    client: Client<Connector, Full<Bytes>>,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    auth: Option<Arc<ClientAuth>>,
    content_type: &'static str,
    compression: Option<Compression>,
    timeout: Duration,
}

impl Poster {
    pub fn new(
        url: &str,
        headers: &BTreeMap<String, String>,
        content_type: &'static str,
        compression: Option<Compression>,
        timeout: Duration,
        tls: &Tls,
    ) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("endpoint {url:?}: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!(
                "endpoint {url:?} must be an http:// or https:// URL"
            ));
        }
        let headers = headers
            .iter()
            .map(|(k, v)| {
                Ok((
                    HeaderName::try_from(k.as_str()).map_err(|e| format!("header {k:?}: {e}"))?,
                    HeaderValue::try_from(v.as_str())
                        .map_err(|e| format!("header {k:?} value: {e}"))?,
                ))
            })
            .collect::<Result<_, String>>()?;
        let tls = (uri.scheme_str() == Some("https"))
            .then(|| super::tls::ClientTlsSource::new(tls, b"http/1.1"))
            .transpose()?;
        let connector = Connector::new(tls, timeout);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri,
            headers,
            auth: None,
            content_type,
            compression,
            timeout,
        })
    }

    /// Every request also carries `auth`'s header (after `headers`, so it wins over one of
    /// the same name).
    pub fn with_auth(mut self, auth: Option<Arc<ClientAuth>>) -> Self {
        self.auth = auth;
        self
    }

    /// One POST of `body`; the answer classified as OTLP/HTTP exporters do.
    pub async fn post(&self, body: Vec<u8>) -> Result<(), ExportError> {
        let (body, encoding) = match self.compression {
            Some(Compression::Zstd) => (
                // Level 1: zstd's fastest, still smaller than gzip's fastest on spans.
                zstd::bulk::compress(&body, 1)
                    .map_err(|e| ExportError::Permanent(format!("zstd: {e}")))?,
                Some("zstd"),
            ),
            Some(_) => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::fast(),
                );
                let gzip = enc
                    .write_all(&body)
                    .and_then(|()| enc.finish())
                    .map_err(|e| ExportError::Permanent(format!("gzip: {e}")))?;
                (gzip, Some("gzip"))
            }
            None => (body, None),
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, self.content_type);
        if let Some(encoding) = encoding {
            req = req.header(CONTENT_ENCODING, encoding);
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(auth) = &self.auth {
            let (k, v) = auth
                .header()
                .await
                .map_err(|e| ExportError::retryable(format!("auth: {e}")))?;
            if let Some(headers) = req.headers_mut() {
                headers.insert(k, v);
            }
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ExportError::Permanent(format!("request: {e}")))?;
        let answer = tokio::time::timeout(self.timeout, async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, hyper_util::client::legacy::Error>((status, retry_after, body))
        })
        .await;
        let (status, retry_after, body) = match answer {
            Err(_) => {
                return Err(ExportError::retryable(format!(
                    "POST {} timed out after {:?}",
                    self.uri, self.timeout
                )))
            }
            Ok(Err(e)) => {
                let message = super::with_causes(format!("POST {}: {e}", self.uri), &e);
                return Err(ExportError::retryable(message));
            }
            Ok(Ok(a)) => a,
        };
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        let message = format!("POST {}: {status}: {}", self.uri, text.trim());
        match status {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Err(ExportError::Retryable {
                message,
                retry_after,
            }),
            _ => Err(ExportError::Permanent(message)),
        }
    }
}
