//! Authenticator extensions, as the OTel Collector's `basicauth`, `bearertokenauth` and
//! `oauth2client`: the credentials exporters send and receivers require. A component names one with
//! `auth: { authenticator: <id> }`; the extension must be defined under `extensions` and
//! listed in `service.extensions`.
//!
//! Built once at start ([`Authenticators::build`]): htpasswd files are read then (a line that
//! cannot be checked is an error naming it), token files then and again whenever they change
//! (looked at no more than once a second, when a request needs the token), so a rotated token
//! is picked up without a restart; a token file that cannot be read later keeps the last token.

mod htpasswd;
mod oauth2;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use receiver::auth::{Authenticate, Authenticator};
use sha2::{Digest, Sha256};

use crate::config::{AuthRef, BasicAuth, BearerTokenAuth, ComponentId, Config, Extension};

/// Which side of a connection uses an authenticator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A receiver: it checks what clients send.
    Server,
    /// An exporter: it sends credentials.
    Client,
}

/// Why `auth` cannot be used by a component on side `role`, if it cannot (for `validate`, and
/// for the start).
pub fn misuse(config: &Config, auth: &AuthRef, role: Role) -> Option<String> {
    let name = &auth.authenticator;
    let Ok(id) = name.parse::<ComponentId>() else {
        return Some(format!("auth.authenticator `{name}` is not a component id"));
    };
    let Some(ext) = config.extension(&id) else {
        return Some(format!(
            "auth.authenticator `{name}` is not defined under extensions"
        ));
    };
    if !config.service.extensions.iter().any(|e| e == name) {
        return Some(format!(
            "auth.authenticator `{name}` must also be listed in service.extensions"
        ));
    }
    match (ext, role) {
        (Extension::BasicAuth(b), Role::Client) if b.client_auth.is_none() => Some(format!(
            "auth.authenticator `{name}` has no client_auth, so an exporter has nothing to send"
        )),
        (Extension::BasicAuth(b), Role::Server) if b.htpasswd.is_none() => Some(format!(
            "auth.authenticator `{name}` has no htpasswd, so a receiver has no users to accept"
        )),
        (Extension::BearerTokenAuth(b), Role::Client)
            if b.filename.is_none() && b.token.is_none() =>
        {
            Some(format!(
                "auth.authenticator `{name}` has no token or filename to send"
            ))
        }
        (Extension::OAuth2Client(_), Role::Server) => Some(format!(
            "auth.authenticator `{name}` is an oauth2client, which only exporters use"
        )),
        (
            Extension::BasicAuth(_) | Extension::BearerTokenAuth(_) | Extension::OAuth2Client(_),
            _,
        ) => None,
        _ => Some(format!(
            "auth.authenticator `{name}` is not an authenticator (basicauth, bearertokenauth or oauth2client)"
        )),
    }
}

/// What is wrong with an authenticator extension's own settings, if anything.
pub fn invalid(ext: &Extension) -> Option<String> {
    match ext {
        Extension::BasicAuth(b) => match (&b.htpasswd, &b.client_auth) {
            (Some(_), Some(_)) => {
                Some("set htpasswd (for receivers) or client_auth (for exporters), not both".into())
            }
            (None, None) => {
                Some("needs htpasswd (for receivers) or client_auth (for exporters)".into())
            }
            (Some(h), None) if h.file.is_none() && h.inline.is_none() => {
                Some("htpasswd needs a file or inline users".into())
            }
            _ => None,
        },
        Extension::BearerTokenAuth(b) => {
            if b.token.is_none() && b.filename.is_none() && b.tokens.is_empty() {
                return Some("needs a token, a filename or tokens".into());
            }
            if let Err(e) = HeaderName::try_from(b.header.as_str()) {
                return Some(format!("header {:?}: {e}", b.header));
            }
            if let Some(t) = &b.token {
                if let Err(e) = HeaderValue::try_from(bearer_value(&b.scheme, t)) {
                    return Some(format!("token: not a header value ({e})"));
                }
            }
            None
        }
        Extension::OAuth2Client(o) => {
            if o.token_url.is_empty() {
                return Some("token_url must be set".into());
            }
            if o.client_id.is_empty() && o.client_id_file.is_none() {
                return Some("client_id (or client_id_file) must be set".into());
            }
            if o.client_secret.is_none() && o.client_secret_file.is_none() {
                return Some("client_secret (or client_secret_file) must be set".into());
            }
            None
        }
        _ => None,
    }
}

/// The authenticators a config's components use, by extension id.
#[derive(Default)]
pub struct Authenticators {
    clients: HashMap<String, Arc<ClientAuth>>,
    servers: HashMap<String, Authenticator>,
}

impl Authenticators {
    /// Builds every authenticator extension the service enables (reading its files).
    pub fn build(config: &Config) -> Result<Self, String> {
        let mut built = Self::default();
        for (id, ext) in &config.extensions {
            let name = id.to_string();
            if !config.service.extensions.contains(&name) {
                continue;
            }
            if let Some(e) = invalid(ext) {
                return Err(format!("extensions.{name}: {e}"));
            }
            let at = |e: String| format!("extensions.{name}: {e}");
            match ext {
                Extension::BasicAuth(b) => {
                    if let Some(c) = &b.client_auth {
                        built
                            .clients
                            .insert(name.clone(), Arc::new(ClientAuth::basic(c).map_err(at)?));
                    }
                    if b.htpasswd.is_some() {
                        let users = Htpasswd::load(b).map_err(at)?;
                        built.servers.insert(name, Arc::new(users));
                    }
                }
                Extension::BearerTokenAuth(b) => {
                    let token = TokenSource::new(b).map_err(at)?;
                    if b.token.is_some() || b.filename.is_some() {
                        let client = ClientAuth::bearer(b, token.clone()).map_err(at)?;
                        built.clients.insert(name.clone(), Arc::new(client));
                    }
                    let server = BearerCheck::new(b, token).map_err(at)?;
                    built.servers.insert(name, Arc::new(server));
                }
                Extension::OAuth2Client(o) => {
                    let client = oauth2::OAuth2::new(o).map_err(at)?;
                    built.clients.insert(
                        name,
                        Arc::new(ClientAuth {
                            header: axum::http::header::AUTHORIZATION,
                            value: ClientValue::OAuth2(Box::new(client)),
                        }),
                    );
                }
                _ => {}
            }
        }
        Ok(built)
    }

    /// What an exporter with `auth` sends (none without `auth`).
    pub fn client(&self, auth: Option<&AuthRef>) -> Result<Option<Arc<ClientAuth>>, String> {
        let Some(auth) = auth else { return Ok(None) };
        self.clients
            .get(&auth.authenticator)
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "auth.authenticator `{}` is not an enabled client authenticator",
                    auth.authenticator
                )
            })
    }

    /// What a receiver with `auth` requires (nothing without `auth`).
    pub fn server(&self, auth: Option<&AuthRef>) -> Result<Option<Authenticator>, String> {
        let Some(auth) = auth else { return Ok(None) };
        self.servers
            .get(&auth.authenticator)
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "auth.authenticator `{}` is not an enabled server authenticator",
                    auth.authenticator
                )
            })
    }
}

fn bearer_value(scheme: &str, token: &str) -> String {
    if scheme.is_empty() {
        token.to_owned()
    } else {
        format!("{scheme} {token}")
    }
}

// ---------------------------------------------------------------- exporters

/// The header an exporter adds to every request (gRPC metadata for `otlp`).
pub struct ClientAuth {
    header: HeaderName,
    value: ClientValue,
}

enum ClientValue {
    Fixed(HeaderValue),
    Token { scheme: String, token: TokenSource },
    OAuth2(Box<oauth2::OAuth2>),
}

impl ClientAuth {
    fn basic(c: &crate::config::ClientCredentials) -> Result<Self, String> {
        let raw = STANDARD.encode(format!("{}:{}", c.username, c.password));
        let value = HeaderValue::try_from(format!("Basic {raw}"))
            .map_err(|e| format!("client_auth: {e}"))?;
        Ok(Self {
            header: axum::http::header::AUTHORIZATION,
            value: ClientValue::Fixed(value),
        })
    }

    fn bearer(b: &BearerTokenAuth, token: TokenSource) -> Result<Self, String> {
        Ok(Self {
            header: HeaderName::try_from(b.header.as_str()).map_err(|e| e.to_string())?,
            value: ClientValue::Token {
                scheme: b.scheme.clone(),
                token,
            },
        })
    }

    /// The header to send now (a token file that changed is read again first; an OAuth 2.0
    /// token is fetched when there is none or it is about to expire). An error (the token
    /// server unreachable or refusing) is worth retrying later.
    pub async fn header(&self) -> Result<(HeaderName, HeaderValue), String> {
        let value = match &self.value {
            ClientValue::Fixed(v) => v.clone(),
            ClientValue::Token { scheme, token } => {
                let current = token.current();
                let sent = current.first().map(|t| bearer_value(scheme, t));
                sent.and_then(|s| HeaderValue::try_from(s).ok())
                    .ok_or("no token to send")?
            }
            ClientValue::OAuth2(o) => o.header_value().await?,
        };
        Ok((self.header.clone(), value))
    }
}

// ---------------------------------------------------------------- tokens

/// `bearertokenauth`'s tokens: `filename`'s content when set (read again when the file
/// changes), else `token`; then `tokens`, which only receivers accept.
#[derive(Clone)]
struct TokenSource {
    fixed: Arc<Vec<String>>,
    file: Option<Arc<Mutex<TokenFile>>>,
}

struct TokenFile {
    path: String,
    token: String,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// How often a token file's modification time is looked at, at most.
const TOKEN_FILE_CHECK: Duration = Duration::from_secs(1);

impl TokenSource {
    fn new(b: &BearerTokenAuth) -> Result<Self, String> {
        let file = match &b.filename {
            Some(path) => {
                let (token, modified) = read_token(path)?;
                Some(Arc::new(Mutex::new(TokenFile {
                    path: path.clone(),
                    token,
                    modified,
                    checked: Instant::now(),
                })))
            }
            None => None,
        };
        let first = if file.is_some() {
            None
        } else {
            b.token.clone()
        };
        let fixed = first.into_iter().chain(b.tokens.iter().cloned()).collect();
        Ok(Self {
            fixed: Arc::new(fixed),
            file,
        })
    }

    /// The tokens in force, the one an exporter sends first.
    fn current(&self) -> Vec<String> {
        let mut all = Vec::with_capacity(self.fixed.len() + 1);
        if let Some(file) = &self.file {
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            if f.checked.elapsed() >= TOKEN_FILE_CHECK {
                f.checked = Instant::now();
                let modified = std::fs::metadata(&f.path).and_then(|m| m.modified()).ok();
                if modified != f.modified {
                    match read_token(&f.path) {
                        Ok((token, modified)) => {
                            f.token = token;
                            f.modified = modified;
                        }
                        Err(e) => tracing::warn!("{e}; the last token read stays in use"),
                    }
                }
            }
            all.push(f.token.clone());
        }
        all.extend(self.fixed.iter().cloned());
        all
    }
}

fn read_token(path: &str) -> Result<(String, Option<SystemTime>), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {path}: {e}"))?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(format!("the token file {path} is empty"));
    }
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Ok((token, modified))
}

// ---------------------------------------------------------------- receivers

/// `bearertokenauth` on a receiver: the header must be `<scheme> <token>` for a token in force.
struct BearerCheck {
    header: HeaderName,
    scheme: String,
    tokens: TokenSource,
}

impl BearerCheck {
    fn new(b: &BearerTokenAuth, tokens: TokenSource) -> Result<Self, String> {
        Ok(Self {
            header: HeaderName::try_from(b.header.as_str()).map_err(|e| e.to_string())?,
            scheme: b.scheme.clone(),
            tokens,
        })
    }
}

impl Authenticate for BearerCheck {
    fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let sent = headers
            .get(&self.header)
            .map(|v| v.as_bytes())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("no {} header", self.header))?;
        let accepted = self.tokens.current().iter().fold(false, |ok, t| {
            ok | htpasswd::same(sent, bearer_value(&self.scheme, t).as_bytes())
        });
        if accepted {
            Ok(())
        } else {
            Err(format!(
                "the {} header holds no accepted token",
                self.header
            ))
        }
    }

    fn challenge(&self) -> Option<HeaderValue> {
        (self.header == axum::http::header::AUTHORIZATION && !self.scheme.is_empty())
            .then(|| HeaderValue::try_from(self.scheme.as_str()).ok())
            .flatten()
    }
}

/// `basicauth` on a receiver: HTTP Basic credentials of a user in the htpasswd file or lines.
struct Htpasswd {
    users: HashMap<String, htpasswd::Hash>,
    /// SHA-256 of `Authorization` values already accepted: bcrypt costs tens of ms per check,
    /// too much to pay on every export request. Bounded; forgotten when full.
    accepted: Mutex<HashSet<[u8; 32]>>,
}

/// Distinct credentials remembered as accepted, at most.
const ACCEPTED_CACHE: usize = 1024;

impl Htpasswd {
    fn load(b: &BasicAuth) -> Result<Self, String> {
        let mut users = HashMap::new();
        if let Some(h) = &b.htpasswd {
            if let Some(path) = &h.file {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("htpasswd.file {path}: {e}"))?;
                users.extend(htpasswd::parse(&text, &format!("htpasswd.file {path}"))?);
            }
            // Inline lines come second: for a user both name, the inline password wins.
            if let Some(text) = &h.inline {
                users.extend(htpasswd::parse(text, "htpasswd.inline")?);
            }
        }
        if users.is_empty() {
            return Err("htpasswd lists no users".into());
        }
        Ok(Self {
            users,
            accepted: Mutex::new(HashSet::new()),
        })
    }
}

impl Authenticate for Htpasswd {
    fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or("no authorization header")?;
        let key: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if accepted.contains(&key) {
            return Ok(());
        }
        drop(accepted);
        let text = value
            .to_str()
            .map_err(|_| "the authorization header is not text")?;
        let (scheme, encoded) = text.split_once(' ').ok_or("not Basic credentials")?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err("not Basic credentials".into());
        }
        let decoded = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or("the Basic credentials are not base64 of user:password")?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or("the Basic credentials are not base64 of user:password")?;
        match self.users.get(user) {
            Some(hash) if hash.verify(password) => {
                accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
                if accepted.len() >= ACCEPTED_CACHE {
                    accepted.clear();
                }
                accepted.insert(key);
                Ok(())
            }
            _ => Err("wrong user or password".into()),
        }
    }

    fn challenge(&self) -> Option<HeaderValue> {
        Some(HeaderValue::from_static("Basic realm=\"meshtrace\""))
    }
}
