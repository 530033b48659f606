//! `oauth2client`: the OAuth 2.0 client credentials grant (RFC 6749 §4.4), as the OTel
//! Collector's extension does it: the exporter's requests carry `Authorization: Bearer <token>`
//! for a token fetched from `token_url` with `client_id`/`client_secret` (sent as HTTP Basic
//! credentials first; in the form body when the server refuses those), `scopes` and
//! `endpoint_params`. The token is kept until `expiry_buffer` before it expires and fetched
//! again when a request needs it; one fetch at a time, however many requests wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::OAuth2Client;
use crate::exporter::connect::Connector;
use crate::exporter::tls::ClientTlsSource;

pub struct OAuth2 {
    client: Client<Connector, Full<Bytes>>,
    token_url: Uri,
    client_id: String,
    client_secret: String,
    /// `grant_type`, `scope` and `endpoint_params`, form-encoded.
    form: String,
    timeout: Duration,
    buffer: Duration,
    /// The server refused Basic credentials once: send them in the body from then on.
    in_body: AtomicBool,
    current: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: HeaderValue,
    /// None: the server gave no expiry; kept until refused.
    expires: Option<Instant>,
}

impl OAuth2 {
    pub fn new(cfg: &OAuth2Client) -> Result<Self, String> {
        let token_url: Uri = cfg
            .token_url
            .parse()
            .map_err(|e| format!("token_url {:?}: {e}", cfg.token_url))?;
        let tls = match token_url.scheme_str() {
            Some("https") => Some(ClientTlsSource::new(&cfg.tls, b"http/1.1")?),
            Some("http") => None,
            _ => {
                return Err(format!(
                    "token_url {:?} must be http:// or https://",
                    cfg.token_url
                ))
            }
        };
        let secret = match (&cfg.client_secret, &cfg.client_secret_file) {
            (_, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("client_secret_file {path}: {e}"))?
                .trim()
                .to_owned(),
            (Some(s), None) => s.clone(),
            (None, None) => String::new(),
        };
        let id = match &cfg.client_id_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("client_id_file {path}: {e}"))?
                .trim()
                .to_owned(),
            None => cfg.client_id.clone(),
        };
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if !cfg.scopes.is_empty() {
            form.append_pair("scope", &cfg.scopes.join(" "));
        }
        for (k, v) in &cfg.endpoint_params {
            form.append_pair(k, v);
        }
        let timeout = cfg.timeout.unwrap_or(Duration::from_secs(5));
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(Connector::new(tls, timeout)),
            token_url,
            client_id: id,
            client_secret: secret,
            form: form.finish(),
            timeout,
            buffer: cfg.expiry_buffer.unwrap_or(Duration::from_secs(10)),
            in_body: AtomicBool::new(false),
            current: tokio::sync::Mutex::new(None),
        })
    }

    /// The `Authorization` value to send now: the kept token, or a new one.
    pub async fn header_value(&self) -> Result<HeaderValue, String> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref() {
            if t.expires.is_none_or(|e| Instant::now() + self.buffer < e) {
                return Ok(t.value.clone());
            }
        }
        let token = self.fetch().await?;
        let value = token.value.clone();
        *current = Some(token);
        Ok(value)
    }

    async fn fetch(&self) -> Result<Token, String> {
        let first = self.request(self.in_body.load(Ordering::Relaxed)).await?;
        let (status, body) = match first {
            (s, _) if (s == 400 || s == 401) && !self.in_body.load(Ordering::Relaxed) => {
                let again = self.request(true).await?;
                if again.0.is_success() {
                    self.in_body.store(true, Ordering::Relaxed);
                }
                again
            }
            answer => answer,
        };
        if !status.is_success() {
            return Err(format!(
                "token_url answered {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            access_token: String,
            #[serde(default)]
            token_type: String,
            expires_in: Option<serde_json::Value>,
        }
        let a: Answer = serde_json::from_slice(&body)
            .map_err(|e| format!("token_url answered what is not a token ({e})"))?;
        if a.access_token.is_empty() {
            return Err("token_url answered an empty access_token".into());
        }
        // RFC 6749 says Bearer; some servers write it in lower case; a missing type is Bearer.
        let kind = if a.token_type.is_empty() || a.token_type.eq_ignore_ascii_case("bearer") {
            "Bearer"
        } else {
            a.token_type.as_str()
        };
        let value = HeaderValue::try_from(format!("{kind} {}", a.access_token))
            .map_err(|_| "token_url answered a token that is not a header value".to_owned())?;
        // Some servers write expires_in as a string.
        let seconds = match a.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        Ok(Token {
            value,
            expires: seconds
                .filter(|s| *s > 0)
                .map(|s| Instant::now() + Duration::from_secs(s)),
        })
    }

    /// One token request: client credentials in a Basic header, or in the body.
    async fn request(&self, in_body: bool) -> Result<(hyper::StatusCode, Bytes), String> {
        let mut body = self.form.clone();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.token_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if in_body {
            let mut more = form_urlencoded::Serializer::new(String::new());
            more.append_pair("client_id", &self.client_id);
            more.append_pair("client_secret", &self.client_secret);
            body.push('&');
            body.push_str(&more.finish());
        } else {
            // RFC 6749 §2.3.1: each part form-encoded, then Basic.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(&self.client_id), enc(&self.client_secret));
            req = req.header(AUTHORIZATION, format!("Basic {}", STANDARD.encode(pair)));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("token request: {e}"))?;
        let answer = tokio::time::timeout(self.timeout, async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        })
        .await;
        match answer {
            Err(_) => Err(format!(
                "token_url did not answer within {:?}",
                self.timeout
            )),
            Ok(Err(e)) => Err(crate::exporter::with_causes(
                format!("token_url {}: {e}", self.token_url),
                &*e,
            )),
            Ok(Ok(a)) => Ok(a),
        }
    }
}
