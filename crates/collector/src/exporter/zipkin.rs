//! `zipkin`: Zipkin v2 spans (`POST /api/v2/spans`), JSON (default) or proto3.

use std::sync::Arc;
use std::time::Duration;

use model::{KeyValue, TraceBatch, SERVICE_NAME};

use super::http::Poster;
use super::{Export, ExportError};
use crate::auth::ClientAuth;
use crate::config::ZipkinExporter as Config;
use crate::consumer::BoxFuture;

pub struct ZipkinExporter {
    poster: Poster,
    proto: bool,
    default_service_name: Option<String>,
}

impl ZipkinExporter {
    pub fn new(cfg: &Config, auth: Option<Arc<ClientAuth>>) -> Result<Self, String> {
        let url = cfg.endpoint.clone().ok_or("endpoint must be set")?;
        let proto = cfg.format.as_deref() == Some("proto");
        let content_type = if proto {
            "application/x-protobuf"
        } else {
            "application/json"
        };
        let timeout = cfg.timeout.unwrap_or(Duration::from_secs(5));
        Ok(Self {
            poster: Poster::new(&url, &cfg.headers, content_type, None, timeout, &cfg.tls)?
                .with_auth(auth),
            proto,
            default_service_name: cfg.default_service_name.clone(),
        })
    }
}

impl Export for ZipkinExporter {
    fn export<'a>(&'a self, batch: &'a TraceBatch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move {
            let named;
            let batch = match &self.default_service_name {
                Some(name)
                    if batch
                        .resource_spans
                        .iter()
                        .any(|rs| rs.resource.attribute(SERVICE_NAME).is_none()) =>
                {
                    let mut b = batch.clone();
                    for rs in &mut b.resource_spans {
                        if rs.resource.attribute(SERVICE_NAME).is_none() {
                            rs.resource
                                .attributes
                                .push(KeyValue::new(SERVICE_NAME, name.as_str()));
                        }
                    }
                    named = b;
                    &named
                }
                _ => batch,
            };
            let body = if self.proto {
                wire::zipkin::encode_proto(batch)
            } else {
                wire::zipkin::encode_json(batch)
            };
            self.poster.post(body).await
        })
    }
}
