//! TLS on both sides of a listener. Downstream, HTTPS: the certificate files of its `tls` block
//! read once at start (a missing or unreadable file, a key that does not fit the certificate, an
//! unknown version are start-up errors naming the listener and the key), and each accepted
//! connection's handshake, with a deadline, on the worker that serves it; ALPN offers `h2` and
//! `http/1.1`. Upstream, its `upstream_tls` block ([`Originate`]): connections to the upstreams
//! made over TLS (mutual when a client certificate is set), ALPN naming the protocol the
//! connection will speak; an outbound cluster's own `tls` block is read the same way.
//!
//! Both are [`Watched`]: certificates are rotated on disk (cert-manager, a mesh CA, a Kubernetes
//! secret's volume), so the files are looked at every [`RELOAD_CHECK`] and the settings rebuilt
//! when one changed; new connections use the new ones, open connections keep theirs.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use receiver::tls::{Alpn, ClientTls, Params, ServerTls};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{ListenerTls, UpstreamTls};
use crate::stats::Stats;

/// How long a client has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the certificate files are looked at for changes.
pub(crate) const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// TLS settings kept in step with the files they were read from.
pub(crate) struct Watched<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Watched<T> {
    /// The settings as of the last successful (re)load.
    pub(crate) fn get(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Builds the settings now (an error stops the start), and returns the task that rebuilds them
/// whenever one of `files` changes. A rebuild that fails (a file half written, a key that does
/// not match the new certificate yet) keeps the settings in use and is logged; the next change
/// is tried again. `what` names them in the log.
pub(crate) fn watched<T: Send + Sync + 'static>(
    what: String,
    files: Vec<String>,
    build: impl Fn() -> Result<T, String> + Send + 'static,
) -> Result<(Arc<Watched<T>>, impl Future<Output = ()> + Send), String> {
    let mut seen = receiver::tls::modified(&files);
    let watched = Arc::new(Watched {
        current: RwLock::new(Arc::new(build()?)),
    });
    let current = watched.clone();
    let task = async move {
        loop {
            tokio::time::sleep(RELOAD_CHECK).await;
            let now = receiver::tls::modified(&files);
            if now == seen {
                continue;
            }
            seen = now;
            match build() {
                Ok(settings) => {
                    *current.current.write().unwrap_or_else(PoisonError::into_inner) =
                        Arc::new(settings);
                    tracing::info!("{what}: certificate files changed, reloaded");
                }
                Err(e) => tracing::warn!(
                    "{what}: certificate files changed but cannot be used, keeping the previous: {e}"
                ),
            }
        }
    };
    Ok((watched, task))
}

/// The files a listener's `tls` block reads.
pub(crate) fn listener_files(tls: &ListenerTls) -> Vec<String> {
    [
        Some(&tls.cert_file),
        Some(&tls.key_file),
        tls.client_ca_file.as_ref(),
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect()
}

/// The files an `upstream_tls` block reads.
pub(crate) fn upstream_files(tls: &UpstreamTls) -> Vec<String> {
    [&tls.ca_file, &tls.cert_file, &tls.key_file]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
}

/// The acceptor for a listener's `tls` block; the error names the key at fault.
pub(crate) fn acceptor(tls: &ListenerTls) -> Result<TlsAcceptor, String> {
    let read =
        |key: &str, path: &str| std::fs::read(path).map_err(|e| format!("tls.{key} {path}: {e}"));
    let settings = ServerTls {
        cert_pem: read("cert_file", &tls.cert_file)?,
        key_pem: read("key_file", &tls.key_file)?,
        client_ca_pem: tls
            .client_ca_file
            .as_deref()
            .map(|path| read("client_ca_file", path))
            .transpose()?,
        params: Params::from_names(
            tls.min_version.as_deref(),
            tls.max_version.as_deref(),
            &tls.cipher_suites,
            &tls.curve_preferences,
        )
        .map_err(|e| format!("tls.{e}"))?,
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

/// A listener's TLS to its upstreams: one connector per protocol (ALPN `h2` or `http/1.1`), and
/// the name to check when the configuration fixes one.
pub(crate) struct Originate {
    http1: TlsConnector,
    http2: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

/// The upstream side of an `upstream_tls` block (or a cluster's `tls`, named by `block`); the
/// error names the key at fault.
pub(crate) fn originate(tls: &UpstreamTls, block: &str) -> Result<Originate, String> {
    let read = |key: &str, path: &Option<String>| {
        path.as_deref()
            .map(|p| std::fs::read(p).map_err(|e| format!("{block}.{key} {p}: {e}")))
            .transpose()
    };
    let settings = ClientTls {
        ca_pem: read("ca_file", &tls.ca_file)?,
        system_roots: tls.ca_file.is_none(),
        cert_pem: read("cert_file", &tls.cert_file)?,
        key_pem: read("key_file", &tls.key_file)?,
        params: Params::from_names(
            tls.min_version.as_deref(),
            tls.max_version.as_deref(),
            &tls.cipher_suites,
            &tls.curve_preferences,
        )
        .map_err(|e| format!("{block}.{e}"))?,
    };
    let connector = |alpn: &[u8]| {
        settings
            .config(&[alpn])
            .map(|c| TlsConnector::from(Arc::new(c)))
            .map_err(|e| format!("{block}: {e}"))
    };
    let server_name = tls
        .server_name
        .as_deref()
        .map(|n| {
            ServerName::try_from(n.to_owned())
                .map_err(|e| format!("{block}.server_name {n:?}: {e}"))
        })
        .transpose()?;
    Ok(Originate {
        http1: connector(b"http/1.1")?,
        http2: connector(b"h2")?,
        server_name,
    })
}

impl Originate {
    /// The client side of the handshake with the upstream at `address` (`host:port`), for a
    /// connection that will speak HTTP/2 (`http2`) or HTTP/1.1.
    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
        address: &str,
        http2: bool,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => host_name(address)?,
        };
        let connector = if http2 { &self.http2 } else { &self.http1 };
        connector.connect(name, stream).await
    }
}

/// The host of a `host:port` address (`[v6]:port` too), as the name its certificate must hold.
fn host_name(address: &str) -> std::io::Result<ServerName<'static>> {
    let host = match address.rsplit_once(':') {
        Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => address,
    };
    ServerName::try_from(host.to_owned()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host:?} cannot be checked against a certificate ({e}); set upstream_tls.server_name"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_checked_is_the_address_host() {
        for (address, name) in [
            ("reviews.default:9080", "reviews.default"),
            ("127.0.0.1:8443", "127.0.0.1"),
            ("[::1]:8443", "::1"),
        ] {
            let got = host_name(address).map(|n| n.to_str().into_owned());
            assert_eq!(got.ok().as_deref(), Some(name), "{address}");
        }
        assert!(host_name("bad host:80").is_err());
    }
}
