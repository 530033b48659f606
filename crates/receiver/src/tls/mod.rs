//! TLS on the receivers' listeners (the OTel Collector's `tls` block under a receiver): a server
//! certificate, optionally a client CA that every client certificate must chain to (mutual
//! TLS), and the versions, suites and curves allowed ([`Params`]). [`ClientTls`] is the other
//! side, shared by the collector's exporters and the proxy's upstream connections.
//!
//! [`TlsListener`] accepts TCP connections and runs each handshake in its own task with a
//! deadline, so a slow or silent client never holds up the next one; connections that fail the
//! handshake are dropped and logged at debug level (scanners and health checks cause many).
//! It serves both kinds of receiver: as an `axum` listener for the HTTP ones, and, through
//! [`TlsListener::into_incoming`], as tonic's connection stream for gRPC.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

mod params;

pub use params::{Params, CIPHER_SUITES, CURVES};

/// How long a client has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS protocol version a side may be limited to (`min_version`, `max_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

impl std::str::FromStr for TlsVersion {
    type Err = TlsError;

    /// The OTel Collector's spelling: `"1.2"`, `"1.3"`. Older versions are refused by name.
    fn from_str(s: &str) -> Result<Self, TlsError> {
        match s {
            "1.2" => Ok(Self::V1_2),
            "1.3" => Ok(Self::V1_3),
            "1.0" | "1.1" => Err(TlsError(format!(
                "TLS {s} is not supported (too old); use 1.2 or 1.3"
            ))),
            _ => Err(TlsError(format!(
                "unknown TLS version {s:?}; use \"1.2\" or \"1.3\""
            ))),
        }
    }
}

/// A receiver's TLS settings, with the PEM texts already read.
#[derive(Clone, Debug, Default)]
pub struct ServerTls {
    /// The server's certificate chain.
    pub cert_pem: Vec<u8>,
    /// Its private key.
    pub key_pem: Vec<u8>,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca_pem: Option<Vec<u8>>,
    /// Versions, cipher suites and curves allowed.
    pub params: Params,
}

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// What a server offers in ALPN: gRPC needs `h2`; the HTTP receivers take both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    H2,
    H2AndHttp11,
}

/// TLS for connections this process opens (an exporter's, a proxy's to its upstreams), with the
/// PEM texts already read. The server's certificate is always verified; there is no switch to
/// skip that.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// CAs trusted for the server's certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// Trust the system's CA certificates as well.
    pub system_roots: bool,
    /// A client certificate chain and its key, for mutual TLS.
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
    /// Versions, cipher suites and curves allowed.
    pub params: Params,
}

impl ClientTls {
    /// The rustls client configuration, offering `alpn` (none when empty).
    pub fn config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &self.ca_pem {
            for cert in CertificateDer::pem_slice_iter(ca) {
                let cert = cert.map_err(|e| TlsError(format!("CA certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| TlsError(format!("a CA certificate rustls refuses: {e}")))?;
            }
        }
        if self.system_roots {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 && self.ca_pem.is_none() {
                return Err(TlsError(format!(
                    "no system CA certificates could be loaded ({} errors); set ca_file",
                    native.errors.len()
                )));
            }
        }
        if roots.is_empty() {
            return Err(TlsError(
                "no CA certificate to check the server's certificate with".into(),
            ));
        }
        let (provider, versions) = self.params.provider()?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| TlsError(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match (&self.cert_pem, &self.key_pem) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| TlsError(format!("client certificate: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| TlsError(format!("client key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError(format!("client certificate and key: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsError(
                    "a client certificate needs both the certificate and its key".into(),
                ))
            }
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

impl ServerTls {
    /// The rustls server configuration.
    pub fn config(&self, alpn: Alpn) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError(format!("certificate: {e}")))?;
        if chain.is_empty() {
            return Err(TlsError("certificate: no CERTIFICATE block".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| TlsError(format!("private key: {e}")))?;
        let (provider, versions) = self.params.provider()?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| TlsError(e.to_string()))?;
        let builder = match &self.client_ca_pem {
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| TlsError(format!("client CA: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| TlsError(format!("client CA: {e}")))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError(format!("certificate and private key: {e}")))?;
        config.alpn_protocols = match alpn {
            Alpn::H2 => vec![b"h2".to_vec()],
            Alpn::H2AndHttp11 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        Ok(Arc::new(config))
    }
}

/// Looks at a listener's TLS settings again (its certificate files, say): a new configuration,
/// `None` when nothing changed, or why what changed cannot be used.
pub type Reload = Box<dyn FnMut() -> Result<Option<Arc<rustls::ServerConfig>>, String> + Send>;

/// When each file was last modified (following symbolic links, as a Kubernetes secret's volume
/// swaps them), `None` for one that cannot be read now: two looks that differ mean certificate
/// files changed.
pub fn modified(files: &[String]) -> Vec<Option<std::time::SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// A listener's TLS configuration, and how often to look at it again (the OTel Collector's
/// `reload_interval` and `client_ca_file_reload`: rotated certificates are taken up without a
/// restart).
pub struct ListenerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub reload: Option<(Duration, Reload)>,
}

/// Accepts TLS connections on a TCP listener (see the module doc).
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsConn, SocketAddr)>>,
    /// When set, the configuration is read again on each tick; new handshakes use it, and a
    /// configuration that cannot be read keeps the one in use (logged).
    reload: Option<(tokio::time::Interval, Reload)>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, tls: ListenerTls) -> Self {
        let reload = tls.reload.map(|(every, reload)| {
            let every = every.max(Duration::from_millis(100));
            let ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            (ticks, reload)
        });
        Self {
            tcp,
            acceptor: TlsAcceptor::from(tls.config),
            handshakes: JoinSet::new(),
            reload,
        }
    }

    /// The next reload tick, or never without `reload_interval`.
    async fn reload_due(reload: &mut Option<(tokio::time::Interval, Reload)>) {
        match reload {
            Some((ticks, _)) => {
                ticks.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// The next connection whose handshake succeeded.
    pub async fn accept_tls(&mut self) -> (TlsConn, SocketAddr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => Some((TlsConn(tls), peer)),
                                Ok(Err(e)) => {
                                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                                    None
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake with {peer} timed out");
                                    None
                                }
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = Self::reload_due(&mut self.reload) => {
                    if let Some((_, reload)) = &mut self.reload {
                        match reload() {
                            Ok(Some(config)) => self.acceptor = TlsAcceptor::from(config),
                            Ok(None) => {}
                            Err(e) => tracing::warn!(
                                "TLS settings not reloaded, the ones in use stay: {e}"
                            ),
                        }
                    }
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    /// The connections as the stream tonic's server takes.
    pub fn into_incoming(
        self,
    ) -> impl futures::Stream<Item = Result<TlsConn, io::Error>> + Send + 'static {
        futures::stream::unfold(self, |mut listener| async move {
            let (conn, _) = listener.accept_tls().await;
            Some((Ok(conn), listener))
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_tls().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// One accepted TLS connection.
pub struct TlsConn(TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_as_the_otel_collector_writes_them() {
        assert_eq!("1.2".parse::<TlsVersion>().ok(), Some(TlsVersion::V1_2));
        assert_eq!("1.3".parse::<TlsVersion>().ok(), Some(TlsVersion::V1_3));
        let e = "1.1".parse::<TlsVersion>().unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
        let e = "tls13".parse::<TlsVersion>().unwrap_err().to_string();
        assert!(e.contains("unknown TLS version"), "{e}");
    }

    #[test]
    fn unusable_settings_are_named() {
        let e = ServerTls::default()
            .config(Alpn::H2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let t = ServerTls {
            cert_pem: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            key_pem: b"not a key".to_vec(),
            ..ServerTls::default()
        };
        let e = t.config(Alpn::H2).unwrap_err().to_string();
        assert!(e.contains("private key"), "{e}");
    }
}
