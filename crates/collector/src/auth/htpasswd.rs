//! htpasswd lines (`user:hash`), as Apache's `htpasswd` writes them and the OTel Collector's
//! `basicauth` reads them: bcrypt (`htpasswd -B`), SHA-1 (`{SHA}`, `htpasswd -s`), salted SHA-1
//! (`{SSHA}`) and plain text. Apache's MD5 (`$apr1$`, the tool's old default) and the crypt(3)
//! SHA-2 forms are named as unsupported when the file is read, not silently taken as plain text
//! that no password would ever match.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};

/// How one user's password is stored.
#[derive(Clone, Debug, PartialEq)]
pub enum Hash {
    Plain(String),
    Bcrypt(String),
    Sha1([u8; 20]),
    SaltedSha1 { digest: [u8; 20], salt: Vec<u8> },
}

impl Hash {
    /// Whether `password` is the one stored. bcrypt is slow by design (tens of ms): callers
    /// remember what they accepted.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            Hash::Plain(p) => same(p.as_bytes(), password.as_bytes()),
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Sha1(digest) => same(&Sha1::digest(password.as_bytes())[..], digest),
            Hash::SaltedSha1 { digest, salt } => {
                let mut h = Sha1::new();
                h.update(password.as_bytes());
                h.update(salt);
                same(&h.finalize()[..], digest)
            }
        }
    }
}

/// The users of an htpasswd text (`origin` names it in errors: a file path, or "inline").
/// Blank lines and `#` comments are skipped; a later line for the same user wins.
pub fn parse(text: &str, origin: &str) -> Result<Vec<(String, Hash)>, String> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let at = || format!("{origin} line {}", n + 1);
        let (user, stored) = line
            .split_once(':')
            .ok_or_else(|| format!("{}: expected user:password", at()))?;
        if user.is_empty() {
            return Err(format!("{}: the user name is empty", at()));
        }
        let hash = hash(stored).map_err(|e| format!("{} (user {user:?}): {e}", at()))?;
        users.push((user.to_owned(), hash));
    }
    Ok(users)
}

fn hash(stored: &str) -> Result<Hash, String> {
    const UNSUPPORTED: [(&str, &str); 4] = [
        ("$apr1$", "Apache MD5"),
        ("$1$", "MD5-crypt"),
        ("$5$", "SHA-256-crypt"),
        ("$6$", "SHA-512-crypt"),
    ];
    if let Some((_, name)) = UNSUPPORTED.iter().find(|(p, _)| stored.starts_with(p)) {
        return Err(format!(
            "{name} hashes are not supported; store the password with bcrypt (htpasswd -B) \
             or {{SHA}} (htpasswd -s)"
        ));
    }
    if ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
    {
        stored
            .parse::<bcrypt::HashParts>()
            .map_err(|e| format!("not a bcrypt hash: {e}"))?;
        return Ok(Hash::Bcrypt(stored.to_owned()));
    }
    if let Some(b64) = stored.strip_prefix("{SHA}") {
        let digest = STANDARD
            .decode(b64)
            .ok()
            .and_then(|d| <[u8; 20]>::try_from(d).ok())
            .ok_or("{SHA} must be followed by the base64 of a 20-byte SHA-1 digest")?;
        return Ok(Hash::Sha1(digest));
    }
    if let Some(b64) = stored.strip_prefix("{SSHA}") {
        let raw = STANDARD
            .decode(b64)
            .ok()
            .filter(|d| d.len() > 20)
            .ok_or("{SSHA} must be followed by the base64 of a SHA-1 digest and its salt")?;
        let (digest, salt) = raw.split_at(20);
        return Ok(Hash::SaltedSha1 {
            digest: digest.try_into().map_err(|_| "bad {SSHA} digest")?,
            salt: salt.to_vec(),
        });
    }
    Ok(Hash::Plain(stored.to_owned()))
}

/// Equality whose time does not depend on where the inputs first differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Hash {
        parse(line, "inline").unwrap().remove(0).1
    }

    #[test]
    fn each_supported_form_verifies_its_password_only() {
        // {SHA} and {SSHA} of "s3cret", computed here from the definitions.
        let sha = STANDARD.encode(Sha1::digest(b"s3cret"));
        let mut salted = Sha1::new();
        salted.update(b"s3cret");
        salted.update(b"salt");
        let mut ssha = salted.finalize().to_vec();
        ssha.extend_from_slice(b"salt");
        let ssha = STANDARD.encode(ssha);
        let bcrypt = bcrypt::hash("s3cret", 4).unwrap();
        for line in [
            "u:s3cret".to_owned(),
            format!("u:{{SHA}}{sha}"),
            format!("u:{{SSHA}}{ssha}"),
            format!("u:{bcrypt}"),
        ] {
            let h = one(&line);
            assert!(h.verify("s3cret"), "{line}");
            assert!(!h.verify("s3cret "), "{line}");
            assert!(!h.verify(""), "{line}");
        }
    }

    #[test]
    fn comments_blank_lines_and_colons_in_passwords() {
        let users = parse("# users\n\nalice:pa:ss\r\nbob:x\n", "f").unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].0, "alice");
        assert!(users[0].1.verify("pa:ss"));
    }

    #[test]
    fn malformed_and_unsupported_lines_are_named() {
        let e = parse("ok:1\nnocolon\n", "/etc/h").unwrap_err();
        assert!(
            e.contains("/etc/h line 2") && e.contains("user:password"),
            "{e}"
        );
        let e = parse(":pw", "inline").unwrap_err();
        assert!(e.contains("user name is empty"), "{e}");
        let e = parse("u:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00", "inline").unwrap_err();
        assert!(e.contains("Apache MD5") && e.contains("htpasswd -B"), "{e}");
        let e = parse("u:{SHA}notbase64!", "inline").unwrap_err();
        assert!(e.contains("{SHA}"), "{e}");
        let e = parse("u:$2y$05$short", "inline").unwrap_err();
        assert!(e.contains("bcrypt"), "{e}");
    }
}
