//! A receiver's `tls` block (the OTel Collector's `configtls.ServerConfig`) read into the
//! receiver crate's settings: what can be checked without files for `validate`, then the PEM
//! files read, each named when it cannot be.

use receiver::tls::{Params, ServerTls as Settings};

use crate::config::ServerTls;
use crate::exporter::tls::pem;

/// Problems found without reading files, worded for validation.
pub fn check(tls: &ServerTls) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, inline, what) in [
        (&tls.cert_file, &tls.cert_pem, "cert"),
        (&tls.key_file, &tls.key_pem, "key"),
    ] {
        match (file, inline) {
            (Some(_), Some(_)) => problems.push(format!("set {what}_file or {what}_pem, not both")),
            (None, None) => problems.push(format!(
                "{what}_file (or {what}_pem) is required: a TLS server needs its certificate and key"
            )),
            _ => {}
        }
    }
    if let Err(e) = params(tls) {
        problems.push(e.to_string());
    }
    if tls.client_ca_file_reload && tls.client_ca_file.is_none() {
        problems.push("client_ca_file_reload needs client_ca_file".to_owned());
    }
    problems
}

fn params(tls: &ServerTls) -> Result<Params, receiver::tls::TlsError> {
    Params::from_names(
        tls.min_version.as_deref(),
        tls.max_version.as_deref(),
        &tls.cipher_suites,
        &tls.curve_preferences,
    )
}

/// Reads the files; an error names the first problem.
pub fn load(tls: &ServerTls) -> Result<Settings, String> {
    if let Some(problem) = check(tls).into_iter().next() {
        return Err(format!("tls: {problem}"));
    }
    Ok(Settings {
        cert_pem: pem(&tls.cert_file, &tls.cert_pem, "cert_file")?.unwrap_or_default(),
        key_pem: pem(&tls.key_file, &tls.key_pem, "key_file")?.unwrap_or_default(),
        client_ca_pem: pem(&tls.client_ca_file, &None, "client_ca_file")?,
        params: params(tls).map_err(|e| format!("tls.{e}"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_explained() {
        let p = check(&ServerTls::default()).join("; ");
        assert!(p.contains("cert_file (or cert_pem) is required"), "{p}");
        assert!(p.contains("key_file (or key_pem) is required"), "{p}");
        let t = ServerTls {
            cert_file: Some("a".into()),
            cert_pem: Some("b".into()),
            key_file: Some("k".into()),
            min_version: Some("1.0".into()),
            client_ca_file_reload: true,
            ..ServerTls::default()
        };
        let p = check(&t).join("; ");
        assert!(p.contains("set cert_file or cert_pem, not both"), "{p}");
        assert!(p.contains("min_version: TLS 1.0 is not supported"), "{p}");
        assert!(
            p.contains("client_ca_file_reload needs client_ca_file"),
            "{p}"
        );
        let t = ServerTls {
            max_version: Some("2".into()),
            cipher_suites: vec!["TLS_RSA_WITH_RC4_128_SHA".into()],
            ..ServerTls::default()
        };
        let p = check(&t).join("; ");
        assert!(p.contains("max_version: unknown TLS version"), "{p}");
        let t = ServerTls {
            cipher_suites: vec!["TLS_RSA_WITH_RC4_128_SHA".into()],
            ..ServerTls::default()
        };
        let p = check(&t).join("; ");
        assert!(
            p.contains("cipher_suites: \"TLS_RSA_WITH_RC4_128_SHA\" is not offered"),
            "{p}"
        );
    }

    #[test]
    fn unreadable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("server.pem").display().to_string();
        let t = ServerTls {
            cert_file: Some(missing.clone()),
            key_file: Some(missing.clone()),
            ..ServerTls::default()
        };
        let e = load(&t).unwrap_err();
        assert!(e.contains("tls.cert_file") && e.contains(&missing), "{e}");
    }
}
