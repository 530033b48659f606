//! A Zipkin v2 client that POSTs pre-encoded JSON span lists, so that the generator spends no
//! CPU encoding while it measures the server.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    uri: hyper::Uri,
}

impl Client {
    /// A client for `http://{addr}/api/v2/spans` (connections are pooled and kept alive).
    pub fn new(addr: &str) -> anyhow::Result<Self> {
        let uri = format!("http://{addr}/api/v2/spans")
            .parse()
            .with_context(|| format!("bad Zipkin address {addr}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Self {
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
            uri,
        })
    }

    /// Sends one encoded span list; success is a 2xx answer.
    pub async fn export(&self, body: Bytes) -> anyhow::Result<()> {
        let request = hyper::Request::post(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let response = self.http.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status.is_success(),
            "answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }
}
