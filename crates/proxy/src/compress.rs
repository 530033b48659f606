//! Gzip on the way out (Envoy's `compressor` filter with its gzip library, per listener or
//! route): an answer is compressed when the request accepts gzip (`Accept-Encoding`, q-values
//! read), the answer is not encoded already, its type is a text type worth it (Envoy's list by
//! default), it is at least `min_content_length` bytes (or of unknown length), and neither
//! `Cache-Control: no-transform` nor (with `disable_on_etag_header`) an `ETag` forbids it. The
//! compressed answer has no `Content-Length`, `Content-Encoding: gzip`, `Vary: Accept-Encoding`,
//! and a strong `ETag` made weak, as Envoy does.
//!
//! Bodies stay streamed: each chunk is compressed and flushed as it comes (a sync flush, so a
//! server-sent event or a slow stream reaches the client at once), and the gzip trailer goes with
//! the end.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use flate2::write::GzEncoder;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body::{Body, Frame};
use serde::Deserialize;

use crate::forward::ProxyBody;

/// Envoy's default `content_type` list.
const DEFAULT_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "application/javascript",
    "application/x-javascript",
    "text/javascript",
    "text/x-javascript",
    "text/ecmascript",
    "text/js",
    "text/jscript",
    "text/x-js",
    "application/ecmascript",
    "application/x-json",
    "application/xml",
    "application/json",
    "image/svg+xml",
    "text/xml",
    "application/xhtml+xml",
];

/// A listener's or route's `compressor`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressorConfig {
    /// Smaller answers (by their `Content-Length`) are sent as they are. Envoy's default 30.
    pub min_content_length: u64,
    /// Media types compressed (Envoy's text types when empty).
    pub content_type: Vec<String>,
    /// Answers with an `ETag` are sent as they are.
    pub disable_on_etag_header: bool,
    /// The request goes upstream without its `Accept-Encoding` (the upstream then never
    /// compresses itself).
    pub remove_accept_encoding_header: bool,
    /// `BEST_SPEED`, `DEFAULT_COMPRESSION` (Envoy's default) or `BEST_COMPRESSION`, or 1–9.
    pub compression_level: Level,
}

impl Default for CompressorConfig {
    fn default() -> Self {
        CompressorConfig {
            min_content_length: 30,
            content_type: Vec::new(),
            disable_on_etag_header: false,
            remove_accept_encoding_header: false,
            compression_level: Level::Named(NamedLevel::DefaultCompression),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Level {
    Named(NamedLevel),
    Number(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NamedLevel {
    BestSpeed,
    DefaultCompression,
    BestCompression,
}

/// A compressor ready to use.
#[derive(Debug)]
pub struct Compressor {
    min_length: u64,
    types: Vec<String>,
    skip_etag: bool,
    pub remove_accept_encoding: bool,
    level: flate2::Compression,
}

impl CompressorConfig {
    pub fn compile(&self) -> Result<Compressor, String> {
        let level = match self.compression_level {
            Level::Named(NamedLevel::BestSpeed) => flate2::Compression::fast(),
            Level::Named(NamedLevel::DefaultCompression) => flate2::Compression::default(),
            Level::Named(NamedLevel::BestCompression) => flate2::Compression::best(),
            Level::Number(n @ 1..=9) => flate2::Compression::new(n),
            Level::Number(n) => {
                return Err(format!("compression_level {n} is not 1–9"));
            }
        };
        let types = if self.content_type.is_empty() {
            DEFAULT_TYPES.iter().map(|t| (*t).to_owned()).collect()
        } else {
            self.content_type
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect()
        };
        Ok(Compressor {
            min_length: self.min_content_length,
            types,
            skip_etag: self.disable_on_etag_header,
            remove_accept_encoding: self.remove_accept_encoding_header,
            level,
        })
    }
}

impl Compressor {
    /// Whether a request (its method and headers) takes gzip answers.
    pub fn accepted(method: &Method, headers: &HeaderMap) -> bool {
        method != Method::HEAD
            && headers
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|coding| {
                    let mut parts = coding.split(';');
                    let name = parts.next().unwrap_or("").trim();
                    let q = parts
                        .filter_map(|p| p.trim().strip_prefix("q="))
                        .find_map(|q| q.trim().parse::<f32>().ok())
                        .unwrap_or(1.0);
                    (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
                })
    }

    /// Whether an answer is to be compressed (see the module's doc); if so, its headers are
    /// made those of the compressed answer, and its body is to go through [`Compressor::wrap`].
    pub fn apply(&self, status: StatusCode, headers: &mut HeaderMap) -> bool {
        if !self.wanted(status, headers) {
            return false;
        }
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let varies = headers
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case("accept-encoding") || v.trim() == "*");
        if !varies {
            headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        if let Some(etag) = headers.get(header::ETAG) {
            if !etag.as_bytes().starts_with(b"W/") {
                let mut weak = b"W/".to_vec();
                weak.extend_from_slice(etag.as_bytes());
                if let Ok(w) = HeaderValue::from_bytes(&weak) {
                    headers.insert(header::ETAG, w);
                }
            }
        }
        true
    }

    /// `body`, compressed as it streams.
    pub fn wrap(&self, body: ProxyBody) -> ProxyBody {
        http_body_util::BodyExt::boxed(Gzip {
            inner: body,
            encoder: Some(GzEncoder::new(Vec::new(), self.level)),
            trailers: None,
        })
    }

    fn wanted(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return false;
        }
        let encoded = headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded || (self.skip_etag && headers.contains_key(header::ETAG)) {
            return false;
        }
        let no_transform = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| d.trim().eq_ignore_ascii_case("no-transform"));
        if no_transform {
            return false;
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if length.is_some_and(|n| n < self.min_length) {
            return false;
        }
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase());
        media.is_some_and(|m| self.types.contains(&m))
    }
}

/// A body compressed as it streams.
struct Gzip {
    inner: ProxyBody,
    /// `None` once finished.
    encoder: Option<GzEncoder<Vec<u8>>>,
    /// The inner body's trailers, sent after the gzip trailer.
    trailers: Option<HeaderMap>,
}

impl Body for Gzip {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        // Writing to a Vec never fails; a sync flush hands the bytes on now.
                        let _ = encoder.write_all(&data);
                        let _ = encoder.flush();
                        let out = std::mem::take(encoder.get_mut());
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            this.trailers = Some(t);
                        }
                    }
                },
                Poll::Ready(None) => {
                    let tail = this
                        .encoder
                        .take()
                        .and_then(|e| e.finish().ok())
                        .unwrap_or_default();
                    if !tail.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(tail)))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Read;

    fn compressor(yaml: &str) -> Compressor {
        serde_yaml::from_str::<CompressorConfig>(yaml)
            .unwrap()
            .compile()
            .unwrap()
    }

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn accept_encoding_is_read_with_its_q_values() {
        let get = Method::GET;
        assert!(Compressor::accepted(&get, &accept("gzip")));
        assert!(Compressor::accepted(&get, &accept("br, GZIP;q=0.5")));
        assert!(Compressor::accepted(&get, &accept("*")));
        assert!(!Compressor::accepted(&get, &accept("gzip;q=0")));
        assert!(!Compressor::accepted(&get, &accept("br, deflate")));
        assert!(!Compressor::accepted(&get, &HeaderMap::new()));
        assert!(!Compressor::accepted(&Method::HEAD, &accept("gzip")));
    }

    fn response(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn which_answers_are_compressed() {
        let c = compressor("{}");
        let yes = |h: &[(&'static str, &'static str)]| c.wanted(StatusCode::OK, &response(h));
        assert!(yes(&[("content-type", "application/json; charset=utf-8")]));
        assert!(yes(&[
            ("content-type", "text/html"),
            ("content-length", "30")
        ]));
        assert!(!yes(&[
            ("content-type", "text/html"),
            ("content-length", "29")
        ]));
        assert!(!yes(&[("content-type", "image/png")]));
        assert!(!yes(&[]));
        assert!(!yes(&[
            ("content-type", "text/html"),
            ("content-encoding", "br")
        ]));
        assert!(yes(&[
            ("content-type", "text/html"),
            ("content-encoding", "identity")
        ]));
        assert!(!yes(&[
            ("content-type", "text/html"),
            ("cache-control", "public, no-transform")
        ]));
        assert!(!c.wanted(
            StatusCode::NO_CONTENT,
            &response(&[("content-type", "text/html")])
        ));
        let etag = compressor("{ disable_on_etag_header: true, content_type: [image/png] }");
        assert!(!etag.wanted(StatusCode::OK, &response(&[("content-type", "text/html")])));
        assert!(etag.wanted(StatusCode::OK, &response(&[("content-type", "image/png")])));
        assert!(!etag.wanted(
            StatusCode::OK,
            &response(&[("content-type", "image/png"), ("etag", "\"x\"")])
        ));
    }

    #[tokio::test]
    async fn a_streamed_body_comes_out_as_gzip_chunk_by_chunk_with_its_trailers() {
        let c = compressor("{ compression_level: BEST_SPEED }");
        let mut h = response(&[
            ("content-type", "text/plain"),
            ("content-length", "100"),
            ("etag", "\"v1\""),
            ("vary", "Origin"),
        ]);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, hyper::Error>>(4);
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        assert!(c.apply(StatusCode::OK, &mut h));
        let mut body = c.wrap(http_body_util::StreamBody::new(stream).boxed());
        assert_eq!(h["content-encoding"], "gzip");
        assert!(h.get("content-length").is_none());
        assert_eq!(h["etag"], "W/\"v1\"");
        let vary: Vec<_> = h.get_all("vary").iter().collect();
        assert_eq!(vary, ["Origin", "Accept-Encoding"]);

        // Each chunk comes out before the next goes in: streaming survives.
        let mut compressed = Vec::new();
        for chunk in ["hello ", "hello ", "world"] {
            tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.unwrap();
            let f = body.frame().await.unwrap().unwrap();
            compressed.extend_from_slice(f.data_ref().unwrap());
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        tx.send(Ok(Frame::trailers(trailers))).await.unwrap();
        drop(tx);
        let mut got_trailers = None;
        while let Some(f) = body.frame().await {
            let f = f.unwrap();
            match f.into_data() {
                Ok(d) => compressed.extend_from_slice(&d),
                Err(f) => got_trailers = f.into_trailers().ok(),
            }
        }
        let mut plain = String::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "hello hello world");
        assert_eq!(got_trailers.unwrap()["grpc-status"], "0");
        assert!(body.is_end_stream());
    }

    #[test]
    fn mistakes_are_named() {
        let err = serde_yaml::from_str::<CompressorConfig>("{ compression_level: 12 }")
            .unwrap()
            .compile()
            .unwrap_err();
        assert!(err.contains("1–9"));
        assert!(serde_yaml::from_str::<CompressorConfig>("{ window_bits: 12 }").is_err());
    }
}
