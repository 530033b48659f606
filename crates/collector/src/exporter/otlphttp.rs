//! `otlphttp`: OTLP over HTTP (`POST …/v1/traces`), protobuf (default) or JSON, gzip by default.

use std::sync::Arc;
use std::time::Duration;

use model::TraceBatch;

use super::http::Poster;
use super::{Export, ExportError};
use crate::auth::ClientAuth;
use crate::config::{Compression, OtlpExporter};
use crate::consumer::BoxFuture;
use crate::payload::Payload;

pub struct OtlpHttpExporter {
    poster: Poster,
    json: bool,
}

impl OtlpHttpExporter {
    pub fn new(cfg: &OtlpExporter, auth: Option<Arc<ClientAuth>>) -> Result<Self, String> {
        let url = match (&cfg.traces_endpoint, &cfg.endpoint) {
            (Some(t), _) => t.clone(),
            (None, Some(e)) => format!("{}/v1/traces", e.trim_end_matches('/')),
            (None, None) => return Err("endpoint must be set".into()),
        };
        let json = cfg.encoding.as_deref() == Some("json");
        let compression = Compression::of(cfg.compression);
        let content_type = if json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        let timeout = cfg.timeout.unwrap_or(Duration::from_secs(30));
        Ok(Self {
            poster: Poster::new(
                &url,
                &cfg.headers,
                content_type,
                compression,
                timeout,
                &cfg.tls,
            )?
            .with_auth(auth),
            json,
        })
    }
}

impl Export for OtlpHttpExporter {
    fn export<'a>(&'a self, batch: &'a TraceBatch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let body = if self.json {
                wire::otlp::encode_json(batch)
            } else {
                wire::otlp::encode_protobuf(batch)
            };
            self.poster.post(body).await
        })
    }

    /// OTLP bytes go out as they are with protobuf encoding (see [`crate::payload`]).
    fn export_payload<'a>(
        &'a self,
        payload: &'a Payload,
    ) -> BoxFuture<'a, Result<(), ExportError>> {
        match payload {
            Payload::Otlp(raw) if !self.json => {
                Box::pin(async move { self.poster.post(raw.to_bytes().to_vec()).await })
            }
            _ => super::export_decoded(self, payload),
        }
    }

    fn accepts_otlp(&self) -> bool {
        !self.json
    }
}
