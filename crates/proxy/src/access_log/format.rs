//! Envoy's access log formats: a format string of text and command operators (`%RESPONSE_CODE%`,
//! `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):64%`, `%START_TIME(%s)%`), or a JSON dictionary whose
//! values hold them (a value that is one operator keeps its type: numbers stay numbers, a value
//! missing is `null`). Parsed once at start, so a mistake is an error naming it; rendered per
//! request from an [`Entry`](super::Entry) with no parsing left to do.
//!
//! A value that is not there (a header the request did not bring, the upstream of a request
//! that had none) is written `-`, as Envoy writes it.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderName;

use super::Entry;

/// Envoy's default format (its `%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%` is `-` here: the proxy
/// does not add that header).
pub const DEFAULT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// The command operators understood, for the error that names an unknown one.
const OPERATORS: &str = "START_TIME, REQ, RESP, PROTOCOL, RESPONSE_CODE, RESPONSE_FLAGS, BYTES_RECEIVED, BYTES_SENT, DURATION, RESPONSE_DURATION, UPSTREAM_HOST, UPSTREAM_CLUSTER, UPSTREAM_REQUEST_ATTEMPT_COUNT, UPSTREAM_TRANSPORT_FAILURE_REASON, ROUTE_NAME, DOWNSTREAM_REMOTE_ADDRESS, DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, DOWNSTREAM_DIRECT_REMOTE_ADDRESS, DOWNSTREAM_LOCAL_ADDRESS, HOSTNAME, TRACE_ID";

/// A parsed format.
#[derive(Debug)]
pub struct Format {
    shape: Shape,
    /// What `REQ(...)` operators read, in the order of their slots in an entry.
    pub(super) request_headers: Vec<HeaderRef>,
    /// What `RESP(...)` operators read.
    pub(super) response_headers: Vec<HeaderName>,
    /// Whether some operator needs the connection's local address.
    pub(super) local_address: bool,
    /// The machine's name, for `%HOSTNAME%`.
    hostname: String,
}

#[derive(Debug)]
enum Shape {
    Text(Vec<Piece>),
    Json(Json),
}

#[derive(Debug)]
enum Json {
    Object(Vec<(String, Json)>),
    /// A string that is exactly one operator: typed.
    Operator(Operator),
    /// A string of text and operators.
    Text(Vec<Piece>),
    Literal(serde_json::Value),
}

#[derive(Debug)]
enum Piece {
    Text(String),
    Operator(Operator),
}

#[derive(Debug)]
struct Operator {
    kind: Kind,
    /// `:N`: at most N bytes of the value.
    max: Option<usize>,
}

#[derive(Debug)]
enum Kind {
    StartTime(Option<String>),
    /// A slot of [`Format::request_headers`].
    Req(usize),
    /// A slot of [`Format::response_headers`].
    Resp(usize),
    Protocol,
    ResponseCode,
    ResponseFlags,
    BytesReceived,
    BytesSent,
    Duration,
    ResponseDuration,
    UpstreamHost,
    UpstreamCluster,
    AttemptCount,
    FailureReason,
    RouteName,
    RemoteAddress,
    RemoteAddressWithoutPort,
    LocalAddress,
    Hostname,
    TraceId,
}

/// A request header operand: `main`, else `alt` (`REQ(X?Y)`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HeaderRef {
    pub main: Source,
    pub alt: Option<Source>,
}

/// A header, or one of HTTP/2's pseudo-headers (which HTTP/1.1 requests have too).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Source {
    Method,
    Path,
    Authority,
    Scheme,
    Header(HeaderName),
}

/// One operator's value for an entry.
enum Value<'a> {
    Missing,
    Text(Cow<'a, str>),
    Number(u64),
}

impl Format {
    /// A format string (`None`: Envoy's default).
    pub fn text(format: Option<&str>) -> Result<Format, String> {
        let mut f = Format::empty();
        let pieces = f.pieces(format.unwrap_or(DEFAULT))?;
        f.shape = Shape::Text(pieces);
        Ok(f)
    }

    /// A JSON dictionary: keys to values with operators (nested dictionaries too), or literals.
    pub fn json(dictionary: &serde_json::Map<String, serde_json::Value>) -> Result<Format, String> {
        let mut f = Format::empty();
        let shape = f.object(dictionary)?;
        f.shape = Shape::Json(shape);
        Ok(f)
    }

    fn empty() -> Format {
        Format {
            shape: Shape::Text(Vec::new()),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            local_address: false,
            hostname: hostname(),
        }
    }

    fn object(
        &mut self,
        dictionary: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Json, String> {
        let mut fields = Vec::with_capacity(dictionary.len());
        for (key, value) in dictionary {
            let shape = match value {
                serde_json::Value::Object(inner) => self.object(inner)?,
                serde_json::Value::String(s) => {
                    let mut pieces = self.pieces(s).map_err(|e| format!("{key}: {e}"))?;
                    match pieces.as_slice() {
                        [Piece::Operator(_)] => match pieces.pop() {
                            Some(Piece::Operator(op)) => Json::Operator(op),
                            _ => Json::Text(pieces),
                        },
                        _ => Json::Text(pieces),
                    }
                }
                serde_json::Value::Array(_) => {
                    return Err(format!("{key}: a list is not a value of a JSON format"))
                }
                literal => Json::Literal(literal.clone()),
            };
            fields.push((key.clone(), shape));
        }
        Ok(Json::Object(fields))
    }

    /// Splits `s` into text and operators (Envoy's grammar: `%NAME%`, `%NAME(ARG)%`, either
    /// with `:MAX` before the closing `%`).
    fn pieces(&mut self, s: &str) -> Result<Vec<Piece>, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(at) = rest.find('%') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let position = s.len() - after.len() - 1;
            let (op, used) = self
                .operator(after)
                .map_err(|e| format!("at position {position} of {s:?}: {e}"))?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Operator(op));
            rest = &after[used..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(pieces)
    }

    /// One operator from just after its opening `%`; returns it and the bytes it took, closing
    /// `%` included.
    fn operator(&mut self, s: &str) -> Result<(Operator, usize), String> {
        let name_len = s
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        let name = &s[..name_len];
        if name.is_empty() {
            return Err("a % that starts no command operator (%NAME%)".to_owned());
        }
        let mut i = name_len;
        let mut arg = None;
        if s[i..].starts_with('(') {
            let close = s[i..]
                .find(')')
                .ok_or_else(|| format!("%{name}( is not closed with )"))?;
            arg = Some(&s[i + 1..i + close]);
            i += close + 1;
        }
        let mut max = None;
        if s[i..].starts_with(':') {
            let digits = s[i + 1..].bytes().take_while(u8::is_ascii_digit).count();
            let n = s[i + 1..i + 1 + digits]
                .parse::<usize>()
                .map_err(|_| format!("%{name}: needs a length after the colon"))?;
            max = Some(n);
            i += 1 + digits;
        }
        if !s[i..].starts_with('%') {
            return Err(format!("%{name} is not closed with %"));
        }
        i += 1;
        let no_arg = |kind: Kind| match arg {
            None => Ok(kind),
            Some(_) => Err(format!("%{name}% takes no argument")),
        };
        let kind = match name {
            "START_TIME" => {
                if let Some(f) = arg {
                    check_time_format(f)?;
                }
                Kind::StartTime(arg.map(str::to_owned))
            }
            "REQ" => {
                let r = header_ref(arg, name)?;
                self.request_headers.push(r);
                Kind::Req(self.request_headers.len() - 1)
            }
            "RESP" => {
                let r = header_ref(arg, name)?;
                let (Source::Header(h), None) = (r.main, r.alt) else {
                    return Err(
                        "%RESP(...)% takes one response header name (no pseudo-header, no ?)"
                            .to_owned(),
                    );
                };
                self.response_headers.push(h);
                Kind::Resp(self.response_headers.len() - 1)
            }
            "PROTOCOL" => no_arg(Kind::Protocol)?,
            "RESPONSE_CODE" => no_arg(Kind::ResponseCode)?,
            "RESPONSE_FLAGS" => no_arg(Kind::ResponseFlags)?,
            "BYTES_RECEIVED" => no_arg(Kind::BytesReceived)?,
            "BYTES_SENT" => no_arg(Kind::BytesSent)?,
            "DURATION" => no_arg(Kind::Duration)?,
            "RESPONSE_DURATION" => no_arg(Kind::ResponseDuration)?,
            "UPSTREAM_HOST" => no_arg(Kind::UpstreamHost)?,
            "UPSTREAM_CLUSTER" => no_arg(Kind::UpstreamCluster)?,
            "UPSTREAM_REQUEST_ATTEMPT_COUNT" => no_arg(Kind::AttemptCount)?,
            "UPSTREAM_TRANSPORT_FAILURE_REASON" => no_arg(Kind::FailureReason)?,
            "ROUTE_NAME" => no_arg(Kind::RouteName)?,
            "DOWNSTREAM_REMOTE_ADDRESS" | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => {
                no_arg(Kind::RemoteAddress)?
            }
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
            | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
                no_arg(Kind::RemoteAddressWithoutPort)?
            }
            "DOWNSTREAM_LOCAL_ADDRESS" => {
                self.local_address = true;
                no_arg(Kind::LocalAddress)?
            }
            "HOSTNAME" => no_arg(Kind::Hostname)?,
            "TRACE_ID" => no_arg(Kind::TraceId)?,
            other => {
                return Err(format!(
                    "unknown command operator %{other}% (known: {OPERATORS})"
                ))
            }
        };
        Ok((Operator { kind, max }, i))
    }

    /// Appends `entry`'s line (a JSON one ends with a newline; a text one as its format does).
    pub fn render(&self, entry: &Entry, out: &mut Vec<u8>) {
        match &self.shape {
            Shape::Text(pieces) => {
                let mut line = String::with_capacity(256);
                self.text_into(pieces, entry, &mut line);
                out.extend_from_slice(line.as_bytes());
            }
            Shape::Json(shape) => {
                let value = self.json_value(shape, entry);
                if serde_json::to_writer(&mut *out, &value).is_ok() {
                    out.push(b'\n');
                }
            }
        }
    }

    fn text_into(&self, pieces: &[Piece], entry: &Entry, line: &mut String) {
        for p in pieces {
            match p {
                Piece::Text(t) => line.push_str(t),
                Piece::Operator(op) => match self.value(op, entry) {
                    Value::Missing => line.push('-'),
                    Value::Text(t) => line.push_str(&t),
                    Value::Number(n) => {
                        let _ = write!(line, "{n}");
                    }
                },
            }
        }
    }

    fn json_value(&self, shape: &Json, entry: &Entry) -> serde_json::Value {
        match shape {
            Json::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), self.json_value(v, entry)))
                    .collect(),
            ),
            Json::Operator(op) => match self.value(op, entry) {
                Value::Missing => serde_json::Value::Null,
                Value::Text(t) => serde_json::Value::String(t.into_owned()),
                Value::Number(n) => serde_json::Value::from(n),
            },
            Json::Text(pieces) => {
                let mut s = String::new();
                self.text_into(pieces, entry, &mut s);
                serde_json::Value::String(s)
            }
            Json::Literal(v) => v.clone(),
        }
    }

    fn value<'a>(&'a self, op: &Operator, e: &'a Entry) -> Value<'a> {
        let text = |s: &'a str| Value::Text(Cow::Borrowed(s));
        let owned = |s: String| Value::Text(Cow::Owned(s));
        let v = match &op.kind {
            Kind::StartTime(None) => owned(humantime::format_rfc3339_millis(e.start).to_string()),
            Kind::StartTime(Some(f)) => owned(format_time(e.start, f)),
            Kind::Req(i) => match e.request_headers.get(*i).and_then(Option::as_ref) {
                Some(v) => Value::Text(String::from_utf8_lossy(v.as_bytes())),
                None => Value::Missing,
            },
            Kind::Resp(i) => match e.response_headers.get(*i).and_then(Option::as_ref) {
                Some(v) => Value::Text(String::from_utf8_lossy(v.as_bytes())),
                None => Value::Missing,
            },
            Kind::Protocol => text(e.protocol),
            Kind::ResponseCode => Value::Number(u64::from(e.status)),
            Kind::ResponseFlags => text(&e.flags),
            Kind::BytesReceived => Value::Number(e.bytes_received),
            Kind::BytesSent => Value::Number(e.bytes_sent),
            Kind::Duration => millis(e.duration),
            Kind::ResponseDuration => millis(e.response_duration),
            Kind::UpstreamHost => e.upstream_host.as_deref().map_or(Value::Missing, text),
            Kind::UpstreamCluster => e.cluster.as_deref().map_or(Value::Missing, text),
            Kind::AttemptCount => match e.attempts {
                0 => Value::Missing,
                n => Value::Number(u64::from(n)),
            },
            Kind::FailureReason => e.failure.as_deref().map_or(Value::Missing, text),
            Kind::RouteName => e.route.as_deref().map_or(Value::Missing, text),
            Kind::RemoteAddress => owned(e.peer.to_string()),
            Kind::RemoteAddressWithoutPort => owned(e.peer.ip().to_string()),
            Kind::LocalAddress => e.local.map_or(Value::Missing, |a| owned(a.to_string())),
            Kind::Hostname => text(&self.hostname),
            Kind::TraceId => owned(e.trace_id.to_string()),
        };
        match (v, op.max) {
            (Value::Text(t), Some(max)) if t.len() > max => {
                let mut end = max;
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                Value::Text(match t {
                    Cow::Borrowed(b) => Cow::Borrowed(&b[..end]),
                    Cow::Owned(mut o) => {
                        o.truncate(end);
                        Cow::Owned(o)
                    }
                })
            }
            (v, _) => v,
        }
    }
}

fn millis(d: Option<std::time::Duration>) -> Value<'static> {
    match d {
        Some(d) => Value::Number(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => Value::Missing,
    }
}

/// `X`, or `X?Y` (`Y` when the request has no `X`); `:PATH`-style names are pseudo-headers.
fn header_ref(arg: Option<&str>, op: &str) -> Result<HeaderRef, String> {
    let arg = arg
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("%{op}(...)% needs a header name"))?;
    let (main, alt) = match arg.split_once('?') {
        Some((m, a)) => (m, Some(a)),
        None => (arg, None),
    };
    let source = |name: &str| -> Result<Source, String> {
        Ok(match name.to_ascii_lowercase().as_str() {
            ":method" => Source::Method,
            ":path" => Source::Path,
            ":authority" | ":host" => Source::Authority,
            ":scheme" => Source::Scheme,
            pseudo if pseudo.starts_with(':') => {
                return Err(format!(
                    "unknown pseudo-header {name} (:METHOD, :PATH, :AUTHORITY, :SCHEME)"
                ))
            }
            lower => Source::Header(
                HeaderName::from_bytes(lower.as_bytes())
                    .map_err(|_| format!("{name:?} is not a header name"))?,
            ),
        })
    };
    Ok(HeaderRef {
        main: source(main)?,
        alt: alt.map(source).transpose()?,
    })
}

/// `%START_TIME(FORMAT)%`: strftime's specifiers as chrono reads them (`%s` epoch seconds,
/// `%3f` milliseconds, ...), in UTC.
fn check_time_format(f: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "%START_TIME({f})%: not a time format (strftime's specifiers)"
        ));
    }
    Ok(())
}

fn format_time(t: SystemTime, f: &str) -> String {
    let utc: chrono::DateTime<chrono::Utc> = t.into();
    let mut s = String::new();
    if write!(s, "{}", utc.format(f)).is_err() {
        // Checked at start; a value chrono still cannot write is the epoch seconds.
        s = t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string();
    }
    s
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_are_named_with_their_position() {
        for (format, want) in [
            ("%FOO%", "unknown command operator %FOO%"),
            ("x %REQ()%", "needs a header name"),
            ("%REQ(:nope)%", "unknown pseudo-header :nope"),
            ("%RESP(:PATH)%", "RESP(...)% takes one response header"),
            ("%DURATION(x)%", "%DURATION% takes no argument"),
            ("%START_TIME(%Q)%", "not a time format"),
            ("ab %DURATION", "at position 3"),
            ("100%", "a % that starts no command operator"),
            ("%REQ(A:%", "not closed with )"),
            ("%BYTES_SENT:x%", "needs a length after the colon"),
        ] {
            let e = Format::text(Some(format)).unwrap_err();
            assert!(e.contains(want), "{format}: {e}");
        }
        assert!(Format::text(None).is_ok(), "Envoy's default format");
    }
}
