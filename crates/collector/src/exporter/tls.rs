//! Client TLS for the exporters, from the OTel Collector's `tls` block: when it is used, which
//! CAs are trusted, the client certificate for mutual TLS, and the server name checked.
//!
//! gRPC exporters (`otlp`, and `loadbalancing`'s backends), as the OTel Collector's gRPC client:
//! an `https://` endpoint uses TLS, an `http://` one does not, and a bare `host:port` uses TLS
//! unless `tls.insecure: true`. HTTP exporters (`otlphttp`, `zipkin`), as its HTTP client: the
//! URL's scheme decides. A server's certificate is always verified (rustls); there is no switch
//! to skip that. The settings are read again when `reload_interval` has passed
//! ([`ClientTlsSource`]); [`super::connect`] uses them for each new connection.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use receiver::tls::Params;
use rustls_pki_types::ServerName;

use crate::config::Tls;

/// Whether the connection to `endpoint` is made over TLS.
pub fn uses_tls(endpoint: &str, tls: &Tls) -> bool {
    if endpoint.starts_with("https://") {
        true
    } else if endpoint.starts_with("http://") {
        false
    } else {
        !tls.insecure
    }
}

/// Problems with a `tls` block that can be found without reading files, worded for validation.
pub fn check(tls: &Tls) -> Vec<String> {
    let mut problems = Vec::new();
    if tls.insecure_skip_verify {
        problems.push(
            "insecure_skip_verify is not supported: the server's certificate is always checked; \
             trust a private CA with ca_file"
                .to_owned(),
        );
    }
    for (file, pem, what) in [
        (&tls.ca_file, &tls.ca_pem, "ca"),
        (&tls.cert_file, &tls.cert_pem, "cert"),
        (&tls.key_file, &tls.key_pem, "key"),
    ] {
        if file.is_some() && pem.is_some() {
            problems.push(format!("set {what}_file or {what}_pem, not both"));
        }
    }
    let has_cert = tls.cert_file.is_some() || tls.cert_pem.is_some();
    let has_key = tls.key_file.is_some() || tls.key_pem.is_some();
    if has_cert != has_key {
        problems.push("a client certificate needs both cert_file and key_file".to_owned());
    }
    if let Err(e) = params(tls) {
        problems.push(e.to_string());
    }
    problems
}

/// An exporter's TLS settings: the rustls configuration built from its `tls` block, read again
/// from the files when a connection is made `reload_interval` or more after the last read (the
/// only moment the settings are used). A read that fails keeps the settings in use (logged).
pub struct ClientTlsSource {
    tls: Tls,
    alpn: &'static [u8],
    server_name: Option<ServerName<'static>>,
    current: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<rustls::ClientConfig>,
    read_at: Instant,
}

impl ClientTlsSource {
    /// Reads the files now; offers `alpn` (`h2` for gRPC, `http/1.1` for the HTTP exporters).
    pub fn new(tls: &Tls, alpn: &'static [u8]) -> Result<Self, String> {
        if let Some(problem) = check(tls).into_iter().next() {
            return Err(format!("tls: {problem}"));
        }
        let server_name = match &tls.server_name_override {
            Some(n) => Some(
                ServerName::try_from(n.clone())
                    .map_err(|e| format!("tls.server_name_override {n:?}: {e}"))?,
            ),
            None => None,
        };
        let config = read(tls, alpn)?;
        Ok(Self {
            tls: tls.clone(),
            alpn,
            server_name,
            current: Mutex::new(Loaded {
                config,
                read_at: Instant::now(),
            }),
        })
    }

    /// The settings for a connection made now (read again first when they are due).
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        let mut loaded = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let every = self.tls.reload_interval.filter(|every| !every.is_zero());
        if every.is_some_and(|every| loaded.read_at.elapsed() >= every) {
            loaded.read_at = Instant::now();
            match read(&self.tls, self.alpn) {
                Ok(config) => loaded.config = config,
                Err(e) => {
                    tracing::warn!("exporter TLS settings not reloaded, the ones in use stay: {e}")
                }
            }
        }
        loaded.config.clone()
    }

    /// The name the server's certificate must hold: `server_name_override`, else the host
    /// connected to.
    pub fn server_name(&self, host: &str) -> std::io::Result<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_owned()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} cannot be checked against a certificate ({e}); set tls.server_name_override"),
            )
        })
    }
}

/// The rustls settings of a `tls` block, its files read now.
fn read(tls: &Tls, alpn: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let ca_pem = pem(&tls.ca_file, &tls.ca_pem, "ca_file")?;
    let settings = receiver::tls::ClientTls {
        system_roots: ca_pem.is_none() || tls.include_system_ca_certs_pool,
        ca_pem,
        cert_pem: pem(&tls.cert_file, &tls.cert_pem, "cert_file")?,
        key_pem: pem(&tls.key_file, &tls.key_pem, "key_file")?,
        params: params(tls).map_err(|e| format!("tls.{e}"))?,
    };
    let config = settings.config(&[alpn]).map_err(|e| format!("tls: {e}"))?;
    Ok(Arc::new(config))
}

fn params(tls: &Tls) -> Result<Params, receiver::tls::TlsError> {
    Params::from_names(
        tls.min_version.as_deref(),
        tls.max_version.as_deref(),
        &tls.cipher_suites,
        &tls.curve_preferences,
    )
}

/// The PEM text of `file` or `inline`; checks it holds a PEM block so a wrong file is named
/// here rather than as a handshake failure later.
pub(crate) fn pem(
    file: &Option<String>,
    inline: &Option<String>,
    key: &str,
) -> Result<Option<Vec<u8>>, String> {
    let (bytes, what) = match (file, inline) {
        (Some(path), _) => (
            std::fs::read(path).map_err(|e| format!("tls.{key} {path:?}: {e}"))?,
            format!("tls.{key} {path:?}"),
        ),
        (None, Some(text)) => (
            text.clone().into_bytes(),
            format!("tls.{}", key.replace("_file", "_pem")),
        ),
        (None, None) => return Ok(None),
    };
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!("{what} is not PEM (no -----BEGIN line)"));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_used_as_the_otel_collector_decides() {
        let secure = Tls::default();
        let insecure = Tls {
            insecure: true,
            ..Tls::default()
        };
        assert!(uses_tls("backend:4317", &secure));
        assert!(!uses_tls("backend:4317", &insecure));
        assert!(uses_tls("https://backend:4317", &insecure));
        assert!(!uses_tls("http://backend:4317", &secure));
    }

    #[test]
    fn inconsistent_blocks_are_explained() {
        let t = Tls {
            insecure_skip_verify: true,
            ca_file: Some("a".into()),
            ca_pem: Some("b".into()),
            cert_file: Some("c".into()),
            ..Tls::default()
        };
        let p = check(&t).join("; ");
        assert!(p.contains("insecure_skip_verify is not supported"), "{p}");
        assert!(p.contains("set ca_file or ca_pem, not both"), "{p}");
        assert!(p.contains("needs both cert_file and key_file"), "{p}");
        assert!(check(&Tls::default()).is_empty());
    }

    #[test]
    fn unreadable_and_non_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem").display().to_string();
        let t = Tls {
            ca_file: Some(missing.clone()),
            ..Tls::default()
        };
        let e = ClientTlsSource::new(&t, b"h2").err().unwrap();
        assert!(e.contains("tls.ca_file") && e.contains(&missing), "{e}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let t = Tls {
            ca_file: Some(junk.display().to_string()),
            ..Tls::default()
        };
        let e = ClientTlsSource::new(&t, b"h2").err().unwrap();
        assert!(e.contains("is not PEM"), "{e}");
        let t = Tls {
            server_name_override: Some("not a name!".into()),
            ..Tls::default()
        };
        let e = ClientTlsSource::new(&t, b"http/1.1").err().unwrap();
        assert!(
            e.contains("server_name_override") || e.contains("system CA"),
            "{e}"
        );
        let t = Tls {
            min_version: Some("1.3".into()),
            cipher_suites: vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()],
            ..Tls::default()
        };
        assert!(check(&t).is_empty(), "TLS 1.3 keeps its own suites");
        let t = Tls {
            max_version: Some("1.2".into()),
            cipher_suites: vec!["TLS_AES_128_GCM_SHA256".into()],
            ..Tls::default()
        };
        let p = check(&t).join("; ");
        assert!(p.contains("cipher_suites lists none"), "{p}");
    }

    #[test]
    fn settings_are_read_again_once_reload_interval_passed() {
        let dir = tempfile::tempdir().unwrap();
        ca_certificate(dir.path());
        let ca = dir.path().join("ca.pem");
        let mut t = Tls {
            ca_file: Some(ca.display().to_string()),
            ..Tls::default()
        };
        let fixed = ClientTlsSource::new(&t, b"h2").unwrap();
        t.reload_interval = Some(std::time::Duration::from_millis(1));
        let reloading = ClientTlsSource::new(&t, b"h2").unwrap();
        let (a, b) = (fixed.config(), reloading.config());
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(
            Arc::ptr_eq(&a, &fixed.config()),
            "no reload_interval: never read again"
        );
        let c = reloading.config();
        assert!(!Arc::ptr_eq(&b, &c), "read again once due");
        // A file that cannot be used now keeps the settings in use.
        std::fs::write(&ca, "half written").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(Arc::ptr_eq(&c, &reloading.config()));
    }

    /// A self-signed CA certificate as `dir/ca.pem` (any certificate rustls takes as a root).
    fn ca_certificate(dir: &std::path::Path) {
        let status = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            ])
            .args(["-subj", "/CN=test CA"])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
    }
}
