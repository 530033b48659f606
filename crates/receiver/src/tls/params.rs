//! What one side of a TLS connection allows: protocol versions, cipher suites and key-exchange
//! groups, named as the OTel Collector's `configtls` names them (`min_version`, `max_version`,
//! `cipher_suites`, `curve_preferences`; Go's spellings), and turned into the rustls (ring)
//! provider and version list both the listeners and the clients build on.
//!
//! Names are refused rather than skipped: a suite Go knows but rustls does not offer (CBC, RC4,
//! 3DES, RSA key exchange) and a curve ring has no code for (P-521) are each named, since a
//! list quietly shortened would not be the policy that was written.

use std::sync::Arc;

use rustls::crypto::ring::{cipher_suite as suite, default_provider, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use super::{TlsError, TlsVersion};

/// The cipher suites on offer, by Go's names (the TLS 1.3 ones first).
pub const CIPHER_SUITES: [&str; 9] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// The key-exchange groups on offer, by Go's names.
pub const CURVES: [&str; 3] = ["X25519", "P256", "P384"];

/// Versions, suites and groups a side allows; empty or unset means everything on offer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    /// Go's (IANA) suite names. TLS 1.2 may use only the TLS 1.2 suites listed; TLS 1.3 is
    /// limited only when the list names TLS 1.3 suites (Go never limits them, so a list written
    /// for the OTel Collector, which names TLS 1.2 suites, means the same here).
    pub cipher_suites: Vec<String>,
    /// Key-exchange groups in order of preference: `X25519`, `P256`, `P384`.
    pub curve_preferences: Vec<String>,
}

impl Params {
    /// The settings as a configuration spells them (versions `"1.2"`/`"1.3"`, Go's suite and
    /// curve names), each checked; the error names the key at fault.
    pub fn from_names(
        min_version: Option<&str>,
        max_version: Option<&str>,
        cipher_suites: &[String],
        curve_preferences: &[String],
    ) -> Result<Self, TlsError> {
        let version = |key: &str, v: Option<&str>| {
            v.map(str::parse)
                .transpose()
                .map_err(|e: TlsError| TlsError(format!("{key}: {e}")))
        };
        let params = Self {
            min_version: version("min_version", min_version)?,
            max_version: version("max_version", max_version)?,
            cipher_suites: cipher_suites.to_vec(),
            curve_preferences: curve_preferences.to_vec(),
        };
        params.provider()?;
        Ok(params)
    }

    /// The provider (ring, with only the allowed suites and groups) and the protocol versions
    /// left once versions without an allowed suite are removed.
    pub fn provider(
        &self,
    ) -> Result<(Arc<CryptoProvider>, Vec<&'static SupportedProtocolVersion>), TlsError> {
        let allowed = |v: TlsVersion| {
            self.min_version.is_none_or(|min| v >= min)
                && self.max_version.is_none_or(|max| v <= max)
        };
        let mut suites = if self.cipher_suites.is_empty() {
            default_provider().cipher_suites
        } else {
            let named = self
                .cipher_suites
                .iter()
                .map(|name| cipher_suite(name))
                .collect::<Result<Vec<_>, _>>()?;
            let names_tls13 = named.iter().any(|s| version_of(*s) == TlsVersion::V1_3);
            let mut suites = named;
            if !names_tls13 {
                suites.extend(
                    default_provider()
                        .cipher_suites
                        .into_iter()
                        .filter(|s| version_of(*s) == TlsVersion::V1_3),
                );
            }
            suites
        };
        suites.retain(|s| allowed(version_of(*s)));
        dedup(&mut suites, |a, b| a.suite() == b.suite());
        let versions: Vec<&'static SupportedProtocolVersion> = [
            (TlsVersion::V1_2, &rustls::version::TLS12),
            (TlsVersion::V1_3, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| allowed(*v) && suites.iter().any(|s| version_of(*s) == *v))
        .map(|(_, p)| p)
        .collect();
        if versions.is_empty() {
            let why = if [TlsVersion::V1_2, TlsVersion::V1_3]
                .into_iter()
                .any(allowed)
            {
                "cipher_suites lists none for the TLS versions allowed"
            } else {
                "min_version is above max_version"
            };
            return Err(TlsError(format!("{why}: no TLS version is left")));
        }
        let mut kx_groups = if self.curve_preferences.is_empty() {
            default_provider().kx_groups
        } else {
            self.curve_preferences
                .iter()
                .map(|name| curve(name))
                .collect::<Result<Vec<_>, _>>()?
        };
        dedup(&mut kx_groups, |a, b| a.name() == b.name());
        Ok((
            Arc::new(CryptoProvider {
                cipher_suites: suites,
                kx_groups,
                ..default_provider()
            }),
            versions,
        ))
    }
}

fn version_of(s: SupportedCipherSuite) -> TlsVersion {
    match s {
        SupportedCipherSuite::Tls13(_) => TlsVersion::V1_3,
        SupportedCipherSuite::Tls12(_) => TlsVersion::V1_2,
    }
}

/// Removes later duplicates, keeping the order of first mention (the order is a preference).
fn dedup<T: Copy>(items: &mut Vec<T>, same: impl Fn(&T, &T) -> bool) {
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        if !kept.iter().any(|k| same(k, &item)) {
            kept.push(item);
        }
    }
    *items = kept;
}

/// The suite Go calls `name` (its aliases for the ChaCha20 suites too).
fn cipher_suite(name: &str) -> Result<SupportedCipherSuite, TlsError> {
    Ok(match name {
        "TLS_AES_128_GCM_SHA256" => suite::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => suite::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => suite::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => {
            let weak = ["_CBC_", "RC4", "3DES", "TLS_RSA_WITH_"]
                .iter()
                .any(|w| name.contains(w));
            let why = if weak {
                "is not offered: only forward-secret AEAD suites are (no CBC, RC4, 3DES or RSA key exchange)"
            } else {
                "is not a cipher suite name"
            };
            return Err(TlsError(format!(
                "cipher_suites: {name:?} {why}; the suites on offer: {}",
                CIPHER_SUITES.join(", ")
            )));
        }
    })
}

/// The key-exchange group Go calls `name`.
fn curve(name: &str) -> Result<&'static dyn SupportedKxGroup, TlsError> {
    Ok(match name {
        "X25519" => kx_group::X25519,
        "P256" => kx_group::SECP256R1,
        "P384" => kx_group::SECP384R1,
        _ => {
            let why = match name {
                "P521" | "X25519MLKEM768" => "is not offered by this build's cryptography (ring)",
                _ => "is not a curve name",
            };
            return Err(TlsError(format!(
                "curve_preferences: {name:?} {why}; use {}",
                CURVES.join(", ")
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite;

    fn params(min: Option<TlsVersion>, max: Option<TlsVersion>, suites: &[&str]) -> Params {
        Params {
            min_version: min,
            max_version: max,
            cipher_suites: suites.iter().map(|s| s.to_string()).collect(),
            curve_preferences: Vec::new(),
        }
    }

    fn suites(p: &Params) -> Vec<CipherSuite> {
        let (provider, _) = p.provider().unwrap();
        provider.cipher_suites.iter().map(|s| s.suite()).collect()
    }

    #[test]
    fn every_name_on_offer_is_known() {
        for name in CIPHER_SUITES {
            let s = cipher_suite(name).unwrap();
            // Go's name is the IANA one; rustls spells TLS 1.3's with a TLS13_ prefix.
            let rustls_name = s.suite().as_str().unwrap().replace("TLS13_", "TLS_");
            assert_eq!(rustls_name, name);
        }
        for name in CURVES {
            assert!(curve(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn nothing_set_is_everything_on_offer() {
        let (provider, versions) = Params::default().provider().unwrap();
        assert_eq!(provider.cipher_suites.len(), CIPHER_SUITES.len());
        assert_eq!(provider.kx_groups.len(), CURVES.len());
        assert_eq!(versions.len(), 2);
    }

    #[test]
    fn tls12_suites_limit_tls12_only_as_in_go() {
        let p = params(None, None, &["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"]);
        let got = suites(&p);
        assert!(got.contains(&CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256));
        assert!(!got.contains(&CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256));
        // TLS 1.3 keeps its three.
        assert_eq!(got.len(), 4, "{got:?}");

        let p = params(None, None, &["TLS_AES_256_GCM_SHA384"]);
        assert_eq!(suites(&p), [CipherSuite::TLS13_AES_256_GCM_SHA384]);
        let (_, versions) = p.provider().unwrap();
        assert_eq!(versions, [&rustls::version::TLS13]);
    }

    #[test]
    fn versions_without_a_suite_are_left_out_or_named() {
        let v12 = Some(TlsVersion::V1_2);
        let v13 = Some(TlsVersion::V1_3);
        let (_, versions) = params(None, v12, &[]).provider().unwrap();
        assert_eq!(versions, [&rustls::version::TLS12]);
        let e = params(v13, v12, &[]).provider().unwrap_err().to_string();
        assert!(e.contains("min_version is above max_version"), "{e}");
        let e = params(None, v12, &["TLS_AES_128_GCM_SHA256"])
            .provider()
            .unwrap_err()
            .to_string();
        assert!(e.contains("cipher_suites lists none"), "{e}");
    }

    #[test]
    fn suites_and_curves_not_on_offer_are_named() {
        let e = params(None, None, &["TLS_RSA_WITH_AES_128_CBC_SHA"])
            .provider()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"TLS_RSA_WITH_AES_128_CBC_SHA\" is not offered"),
            "{e}"
        );
        assert!(e.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), "{e}");
        let e = params(None, None, &["aes"])
            .provider()
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"aes\" is not a cipher suite name"), "{e}");
        for (name, why) in [("P521", "not offered"), ("secp256r1", "not a curve name")] {
            let p = Params {
                curve_preferences: vec![name.to_owned()],
                ..Params::default()
            };
            let e = p.provider().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("X25519, P256, P384"), "{e}");
        }
    }

    #[test]
    fn names_are_read_with_the_key_at_fault() {
        let p = Params::from_names(Some("1.3"), None, &[], &["P256".into()]).unwrap();
        assert_eq!(p.min_version, Some(TlsVersion::V1_3));
        let e = Params::from_names(None, Some("1.1"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("max_version: TLS 1.1"), "{e}");
        let e = Params::from_names(None, None, &[], &["P999".into()])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("curve_preferences: \"P999\""), "{e}");
    }

    #[test]
    fn curves_keep_the_order_given() {
        let p = Params {
            curve_preferences: vec!["P384".into(), "X25519".into(), "P384".into()],
            ..Params::default()
        };
        let (provider, _) = p.provider().unwrap();
        let names: Vec<_> = provider.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            names,
            [rustls::NamedGroup::secp384r1, rustls::NamedGroup::X25519]
        );
    }
}
