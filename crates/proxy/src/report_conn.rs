//! How the reporter reaches its collector: TCP (no Nagle, a connect deadline), then TLS when the
//! collector URL is `https://` (ALPN `h2` for OTLP gRPC, `http/1.1` otherwise), with the
//! settings of `tracing.tls` as they are when the connection is made (they follow their files,
//! see [`crate::tls::Watched`]). One connector serves hyper's HTTP/1.1 client (Zipkin, OTLP/HTTP)
//! and tonic's channel (OTLP gRPC).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::tls::{Originate, Watched};
use crate::upstream::UpstreamIo;

/// Opens connections to the collector (see the module doc).
#[derive(Clone)]
pub(crate) struct Connect {
    pub tls: Option<Arc<Watched<Originate>>>,
    /// The connection will speak HTTP/2 (gRPC).
    pub http2: bool,
    /// For the TCP connect and the TLS handshake together.
    pub timeout: Duration,
}

impl tower_service::Service<Uri> for Connect {
    type Response = Conn;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Conn>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("{uri}: no host"))
            })?;
            let port = uri
                .port_u16()
                .unwrap_or(if this.tls.is_some() { 443 } else { 80 });
            let address = format!("{host}:{port}");
            let connect = async {
                let stream = TcpStream::connect(&address).await?;
                let _ = stream.set_nodelay(true);
                Ok::<_, io::Error>(match &this.tls {
                    None => UpstreamIo::Plain(stream),
                    Some(tls) => UpstreamIo::Tls(Box::new(
                        tls.get().connect(stream, &address, this.http2).await?,
                    )),
                })
            };
            let io = tokio::time::timeout(this.timeout, connect)
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {address} took over {:?}", this.timeout),
                    )
                })??;
            Ok(Conn(TokioIo::new(io)))
        })
    }
}

/// A connection to the collector.
pub(crate) struct Conn(TokioIo<UpstreamIo>);

impl Connection for Conn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
