//! HTTPS on a listener: the certificate files of its `tls` block read once at start (a missing
//! or unreadable file, a key that does not fit the certificate, an unknown version are start-up
//! errors naming the listener and the key), and each accepted connection's handshake, with a
//! deadline, on the worker that serves it. ALPN offers `h2` and `http/1.1`.

use std::time::Duration;

use receiver::tls::{Alpn, ServerTls};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::ListenerTls;
use crate::stats::Stats;

/// How long a client has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The acceptor for a listener's `tls` block; the error names the key at fault.
pub(crate) fn acceptor(tls: &ListenerTls) -> Result<TlsAcceptor, String> {
    let read =
        |key: &str, path: &str| std::fs::read(path).map_err(|e| format!("tls.{key} {path}: {e}"));
    let version = |key: &str, v: &Option<String>| {
        v.as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| format!("tls.{key}: {e}"))
    };
    let settings = ServerTls {
        cert_pem: read("cert_file", &tls.cert_file)?,
        key_pem: read("key_file", &tls.key_file)?,
        client_ca_pem: tls
            .client_ca_file
            .as_deref()
            .map(|path| read("client_ca_file", path))
            .transpose()?,
        min_version: version("min_version", &tls.min_version)?,
        max_version: version("max_version", &tls.max_version)?,
    };
    let config = settings
        .config(Alpn::H2AndHttp11)
        .map_err(|e| format!("tls: {e}"))?;
    Ok(TlsAcceptor::from(config))
}

/// The server side of the handshake, or `None` when it fails or takes longer than the deadline
/// (counted; logged at debug level only, since scanners and health checks fail many).
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    stats: &Stats,
) -> Option<TlsStream<TcpStream>> {
    let failed = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => return Some(tls),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    tracing::debug!("TLS handshake with {peer} failed: {failed}");
    Stats::inc(&stats.tls_handshake_failures);
    None
}
