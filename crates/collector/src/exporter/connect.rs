//! How the exporters open connections: TCP (no Nagle, a connect deadline), then, for a TLS
//! endpoint, the handshake with the settings current at that moment ([`ClientTlsSource`], so
//! rotated certificates reach new connections). One connector serves tonic's channel (gRPC,
//! ALPN `h2`) and hyper's HTTP/1.1 client (ALPN `http/1.1`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::tls::ClientTlsSource;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connection as the clients take it: plain, or TLS over TCP.
pub type Conn = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Opens exporter connections (see the module doc).
#[derive(Clone)]
pub struct Connector {
    tcp: HttpConnector,
    tls: Option<Arc<ClientTlsSource>>,
}

impl Connector {
    /// Connections made with `tls` when set, in cleartext when not; TCP connects give up after
    /// `timeout`.
    pub fn new(tls: Option<ClientTlsSource>, timeout: Duration) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(timeout));
        tcp.set_nodelay(true);
        // The scheme says whether TLS is used; the TCP part takes both.
        tcp.enforce_http(false);
        Self {
            tcp,
            tls: tls.map(Arc::new),
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let host = uri.host().unwrap_or_default().to_owned();
        let tcp = self.tcp.call(uri);
        Box::pin(async move {
            let tcp = tcp.await?;
            let Some(tls) = tls else {
                return Ok(MaybeHttpsStream::Http(tcp));
            };
            let name = tls.server_name(&host)?;
            let stream = TlsConnector::from(tls.config())
                .connect(name, TokioIo::new(tcp))
                .await?;
            Ok(MaybeHttpsStream::Https(TokioIo::new(stream)))
        })
    }
}
