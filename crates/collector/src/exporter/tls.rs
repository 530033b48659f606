//! Client TLS for the exporters, from the OTel Collector's `tls` block: when it is used, which
//! CAs are trusted, the client certificate for mutual TLS, and the server name checked.
//!
//! gRPC exporters (`otlp`, and `loadbalancing`'s backends), as the OTel Collector's gRPC client:
//! an `https://` endpoint uses TLS, an `http://` one does not, and a bare `host:port` uses TLS
//! unless `tls.insecure: true`. HTTP exporters (`otlphttp`, `zipkin`), as its HTTP client: the
//! URL's scheme decides. A server's certificate is always verified (rustls); there is no switch
//! to skip that.

use rustls_pki_types::ServerName;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

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
    problems
}

/// The tonic TLS settings for a connection to `endpoint`, or `None` when it is plaintext.
/// Reads the PEM files named in `tls`.
pub fn client_config(endpoint: &str, tls: &Tls) -> Result<Option<ClientTlsConfig>, String> {
    if !uses_tls(endpoint, tls) {
        return Ok(None);
    }
    if let Some(problem) = check(tls).into_iter().next() {
        return Err(format!("tls: {problem}"));
    }
    let mut config = ClientTlsConfig::new();
    match pem(&tls.ca_file, &tls.ca_pem, "ca_file")? {
        Some(ca) => {
            config = config.ca_certificate(Certificate::from_pem(ca));
            if tls.include_system_ca_certs_pool {
                config = config.with_native_roots();
            }
        }
        None => config = config.with_native_roots(),
    }
    let cert = pem(&tls.cert_file, &tls.cert_pem, "cert_file")?;
    let key = pem(&tls.key_file, &tls.key_pem, "key_file")?;
    if let (Some(cert), Some(key)) = (cert, key) {
        config = config.identity(Identity::from_pem(cert, key));
    }
    if let Some(name) = &tls.server_name_override {
        config = config.domain_name(name.clone());
    }
    Ok(Some(config))
}

/// The rustls settings for an HTTP exporter's `https://` URL, with the name its certificate must
/// hold when `server_name_override` sets one; `None` for an `http://` URL (no TLS). Reads the PEM
/// files named in `tls`.
pub fn https_client_config(
    url: &str,
    tls: &Tls,
) -> Result<Option<(rustls::ClientConfig, Option<ServerName<'static>>)>, String> {
    if !url.starts_with("https://") {
        return Ok(None);
    }
    if let Some(problem) = check(tls).into_iter().next() {
        return Err(format!("tls: {problem}"));
    }
    let ca_pem = pem(&tls.ca_file, &tls.ca_pem, "ca_file")?;
    let settings = receiver::tls::ClientTls {
        system_roots: ca_pem.is_none() || tls.include_system_ca_certs_pool,
        ca_pem,
        cert_pem: pem(&tls.cert_file, &tls.cert_pem, "cert_file")?,
        key_pem: pem(&tls.key_file, &tls.key_pem, "key_file")?,
    };
    let config = settings.config(&[]).map_err(|e| format!("tls: {e}"))?;
    let name = match &tls.server_name_override {
        Some(n) => Some(
            ServerName::try_from(n.clone())
                .map_err(|e| format!("tls.server_name_override {n:?}: {e}"))?,
        ),
        None => None,
    };
    Ok(Some((config, name)))
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
        let e = client_config("backend:4317", &t).unwrap_err();
        assert!(e.contains("tls.ca_file") && e.contains(&missing), "{e}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let t = Tls {
            ca_file: Some(junk.display().to_string()),
            ..Tls::default()
        };
        let e = client_config("backend:4317", &t).unwrap_err();
        assert!(e.contains("is not PEM"), "{e}");
        // Plaintext endpoints never read the files.
        assert!(client_config("http://backend:4317", &t).unwrap().is_none());
        // HTTP exporters: the scheme decides; files are read and named the same way.
        assert!(https_client_config("http://backend:4318", &t)
            .unwrap()
            .is_none());
        let e = https_client_config("https://backend:4318", &t).unwrap_err();
        assert!(e.contains("is not PEM"), "{e}");
        let t = Tls {
            ca_file: Some(missing.clone()),
            ..Tls::default()
        };
        let e = https_client_config("https://backend:4318", &t).unwrap_err();
        assert!(e.contains("tls.ca_file") && e.contains(&missing), "{e}");
        let t = Tls {
            server_name_override: Some("not a name!".into()),
            ..Tls::default()
        };
        let e = https_client_config("https://backend:4318", &t).unwrap_err();
        assert!(
            e.contains("server_name_override") || e.contains("system CA"),
            "{e}"
        );
    }
}
