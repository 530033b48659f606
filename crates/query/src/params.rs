//! Query-string parsing: from the raw query of a request to the store's [`TraceQuery`] and the
//! other inputs the handlers need, with errors that name the offending parameter.
//!
//! The raw query is decoded by hand (not with axum's `Query`) because Jaeger clients repeat keys
//! (`tag=a:1&tag=b:2`, `traceID=..&traceID=..`). Defaults and messages follow Jaeger's query
//! service (`cmd/query/app/query_parser.go`, `apiv3/http_gateway.go`), so clients written for
//! Jaeger see the same behaviour.

use std::time::Duration;

use model::{SpanKind, TraceId};
use store::TraceQuery;

use crate::duration::parse_go_duration;
use crate::rfc3339::parse_rfc3339_nanos;

/// Jaeger's `defaultQueryLimit`: traces returned by a v1 search without `limit`.
pub const DEFAULT_SEARCH_LIMIT: usize = 100;
/// Jaeger's `defaultTraceQueryLookbackDuration`: search window when `start` is absent.
pub const DEFAULT_SEARCH_LOOKBACK: Duration = Duration::from_secs(2 * 24 * 3600);
/// Jaeger's `defaultDependencyLookbackDuration`.
pub const DEFAULT_DEPENDENCY_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

/// A request parameter that could not be used. The text is what clients see in `errors[].msg`
/// (v1) or `error.message` (v3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// v1 wording, as Jaeger's `newParseError`.
    #[error("unable to parse param '{param}': {reason}")]
    Unparsable { param: String, reason: String },
    /// v3 wording, as Jaeger's api_v3 gateway `tryParamError`.
    #[error("malformed parameter {param}: {reason}")]
    Malformed { param: String, reason: String },
    #[error("parameter '{0}' is required")]
    Required(&'static str),
    #[error("'maxDuration' should be greater than 'minDuration'")]
    MaxBelowMin,
    #[error("malformed 'tag' parameter, expecting key:value, received: {0}")]
    MalformedTag(String),
    #[error("malformed 'tags' parameter, cannot unmarshal JSON: {0}")]
    MalformedTags(String),
    #[error("{0}")]
    Other(String),
}

impl ParamError {
    fn unparsable(param: &str, reason: impl ToString) -> Self {
        ParamError::Unparsable {
            param: param.to_owned(),
            reason: reason.to_string(),
        }
    }

    fn malformed(param: &str, reason: impl ToString) -> Self {
        ParamError::Malformed {
            param: param.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The decoded `key=value` pairs of a query string, in order, keys possibly repeated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Decodes a raw query string (`None` when the request had none).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        QueryParams(pairs)
    }

    /// The first non-empty value of `key`, as Go's `FormValue` treats an empty value as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `key`, in order (empty ones included).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// What `/api/traces` was asked for: either traces by id, or a search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    /// When non-empty, these traces are fetched and the search fields are ignored (as Jaeger).
    pub trace_ids: Vec<TraceId>,
    pub query: TraceQuery,
}

/// Parses the parameters of Jaeger's `GET /api/traces`.
///
/// `now_nanos` is the current time, the default `end` (and `start` is `end - 48h` by default,
/// or `end - lookback` when the UI's `lookback` is a duration). Unlike Jaeger, a search without
/// `service` is allowed: it searches every service.
pub fn parse_v1_search(params: &QueryParams, now_nanos: u64) -> Result<SearchRequest, ParamError> {
    let mut trace_ids = Vec::new();
    for raw in params.all("traceID").filter(|v| !v.is_empty()) {
        let id = raw
            .parse::<TraceId>()
            .map_err(|e| ParamError::Other(format!("cannot parse traceID param: {e}")))?;
        trace_ids.push(id);
    }

    let end = match params.get("end") {
        Some(v) => micros_to_nanos(parse_i64("end", v)?),
        None => now_nanos,
    };
    let start = match params.get("start") {
        Some(v) => micros_to_nanos(parse_i64("start", v)?),
        None => {
            let lookback = params
                .get("lookback")
                .and_then(parse_lookback)
                .unwrap_or(DEFAULT_SEARCH_LOOKBACK);
            end.saturating_sub(duration_nanos(lookback))
        }
    };

    let tags = parse_v1_tags(params)?;

    let limit = match params.get("limit") {
        Some(v) => {
            let n = v
                .parse::<i32>()
                .map_err(|e| ParamError::unparsable("limit", e))?;
            match n {
                0 => DEFAULT_SEARCH_LIMIT,
                n if n < 0 => {
                    return Err(ParamError::unparsable("limit", "must not be negative"));
                }
                n => n as usize,
            }
        }
        None => DEFAULT_SEARCH_LIMIT,
    };

    let min_duration = optional_v1_duration(params, "minDuration")?;
    let max_duration = optional_v1_duration(params, "maxDuration")?;
    if let (Some(min), Some(max)) = (min_duration, max_duration) {
        if !min.is_zero() && !max.is_zero() && max < min {
            return Err(ParamError::MaxBelowMin);
        }
    }

    Ok(SearchRequest {
        trace_ids,
        query: TraceQuery {
            service: params.get("service").map(str::to_owned),
            operation: params.get("operation").map(str::to_owned),
            tags,
            min_duration,
            max_duration,
            start_unix_nano: Some(start),
            end_unix_nano: Some(end),
            limit,
        },
    })
}

/// `tag=k:v` (repeated; the value may itself hold colons) then `tags={"k":"v"}` (repeated),
/// later keys replacing earlier ones, as Jaeger merges them into one map.
fn parse_v1_tags(params: &QueryParams) -> Result<Vec<(String, String)>, ParamError> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for tag in params.all("tag").filter(|t| !t.is_empty()) {
        let (key, value) = tag
            .split_once(':')
            .ok_or_else(|| ParamError::MalformedTag(tag.to_owned()))?;
        upsert(&mut tags, key, value.to_owned());
    }
    for json in params.all("tags").filter(|t| !t.is_empty()) {
        for (key, value) in parse_json_string_map(json).map_err(ParamError::MalformedTags)? {
            upsert(&mut tags, &key, value);
        }
    }
    Ok(tags)
}

/// A JSON object whose values are strings (numbers and booleans are taken as their text, which
/// is how the store matches tag values anyway).
fn parse_json_string_map(json: &str) -> Result<Vec<(String, String)>, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let serde_json::Value::Object(map) = value else {
        return Err("expected a JSON object of string values".to_owned());
    };
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(format!("value of {k:?} must be a string, got {other}")),
        })
        .collect()
}

fn upsert(tags: &mut Vec<(String, String)>, key: &str, value: String) {
    match tags.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => tags.push((key.to_owned(), value)),
    }
}

fn optional_v1_duration(params: &QueryParams, name: &str) -> Result<Option<Duration>, ParamError> {
    params
        .get(name)
        .map(|v| parse_go_duration(v).map_err(|e| ParamError::unparsable(name, e)))
        .transpose()
}

/// The UI's `lookback` (`1h`, `2d`, `custom`, ...). Jaeger ignores it; it is used here only when
/// `start` is absent, and anything unreadable is ignored rather than refused.
fn parse_lookback(text: &str) -> Option<Duration> {
    if let Some(days) = text.strip_suffix('d') {
        return days
            .parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(86_400))
            .map(Duration::from_secs);
    }
    parse_go_duration(text).ok()
}

/// Inputs of `GET /api/dependencies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DependenciesRequest {
    pub end_unix_nano: u64,
    pub lookback_nanos: u64,
}

/// `endTs` (Unix ms, default now) and `lookback` (ms, default 24h), as Jaeger.
pub fn parse_dependencies(
    params: &QueryParams,
    now_nanos: u64,
) -> Result<DependenciesRequest, ParamError> {
    let end_unix_nano = match params.get("endTs") {
        Some(v) => millis_to_nanos(parse_i64("endTs", v)?),
        None => now_nanos,
    };
    let lookback_nanos = match params.get("lookback") {
        Some(v) => {
            let ms = parse_i64("lookback", v)?;
            if ms < 0 {
                return Err(ParamError::unparsable("lookback", "must not be negative"));
            }
            millis_to_nanos(ms)
        }
        None => duration_nanos(DEFAULT_DEPENDENCY_LOOKBACK),
    };
    Ok(DependenciesRequest {
        end_unix_nano,
        lookback_nanos,
    })
}

/// Parses Jaeger's lowercase span kind (`server`, `client`, ...); empty means all kinds.
pub fn parse_span_kind(param: &str, value: Option<&str>) -> Result<Option<SpanKind>, ParamError> {
    match value {
        None => Ok(None),
        Some(text) => SpanKind::from_jaeger_str(&text.to_ascii_lowercase())
            .map(Some)
            .ok_or_else(|| {
                ParamError::Other(format!("unsupported span kind '{text}' in param '{param}'"))
            }),
    }
}

/// Parses api_v3's `GET /api/v3/traces` (`query.*` parameters).
///
/// As Jaeger, `query.start_time_min` and `query.start_time_max` are required. Attributes come
/// as `query.attributes={"k":"v"}` or grpc-gateway's map syntax `query.attributes[k]=v`.
pub fn parse_v3_search(params: &QueryParams) -> Result<TraceQuery, ParamError> {
    const MIN: &str = "query.start_time_min";
    const MAX: &str = "query.start_time_max";
    let (Some(min), Some(max)) = (params.get(MIN), params.get(MAX)) else {
        return Err(ParamError::Other(format!("{MIN} and {MAX} are required")));
    };
    let start = parse_rfc3339_nanos(min).map_err(|e| ParamError::malformed(MIN, e))?;
    let end = parse_rfc3339_nanos(max).map_err(|e| ParamError::malformed(MAX, e))?;

    let limit = match params.get("query.num_traces") {
        Some(v) => {
            let n = v
                .parse::<i64>()
                .map_err(|e| ParamError::malformed("query.num_traces", e))?;
            usize::try_from(n)
                .map_err(|_| ParamError::malformed("query.num_traces", "must not be negative"))?
        }
        None => 0,
    };

    let duration = |name: &str| {
        params
            .get(name)
            .map(|v| parse_go_duration(v).map_err(|e| ParamError::malformed(name, e)))
            .transpose()
    };
    let min_duration = duration("query.duration_min")?;
    let max_duration = duration("query.duration_max")?;

    let mut tags = Vec::new();
    for (key, value) in params.pairs() {
        if key == "query.attributes" {
            if value.is_empty() {
                continue;
            }
            let map = parse_json_string_map(value)
                .map_err(|e| ParamError::malformed("query.attributes", e))?;
            for (k, v) in map {
                upsert(&mut tags, &k, v);
            }
        } else if let Some(inner) = key
            .strip_prefix("query.attributes[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            upsert(&mut tags, inner, value.to_owned());
        }
    }

    Ok(TraceQuery {
        service: params.get("query.service_name").map(str::to_owned),
        operation: params.get("query.operation_name").map(str::to_owned),
        tags,
        min_duration,
        max_duration,
        start_unix_nano: Some(start),
        end_unix_nano: Some(end),
        limit,
    })
}

/// Validates api_v3's optional `start_time`/`end_time` of a trace fetch (RFC 3339).
pub fn check_v3_trace_window(params: &QueryParams) -> Result<(), ParamError> {
    for name in ["start_time", "end_time"] {
        if let Some(v) = params.get(name) {
            parse_rfc3339_nanos(v).map_err(|e| ParamError::malformed(name, e))?;
        }
    }
    Ok(())
}

/// A Go `strconv.ParseBool` flag (`raw`, `raw_traces`), false when absent; `None` when unreadable.
pub fn parse_bool(value: Option<&str>) -> Option<bool> {
    match value {
        None => Some(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Some(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Some(false),
        Some(_) => None,
    }
}

fn parse_i64(param: &str, value: &str) -> Result<i64, ParamError> {
    value
        .parse::<i64>()
        .map_err(|e| ParamError::unparsable(param, e))
}

fn micros_to_nanos(us: i64) -> u64 {
    u64::try_from(us).unwrap_or(0).saturating_mul(1_000)
}

fn millis_to_nanos(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000_000_000;

    fn q(raw: &str) -> QueryParams {
        QueryParams::parse(Some(raw))
    }

    fn err_v1(raw: &str) -> String {
        parse_v1_search(&q(raw), NOW).unwrap_err().to_string()
    }

    #[test]
    fn repeated_keys_and_percent_decoding() {
        let p = q("tag=a%3A1&tag=b:2&service=my+svc&empty=&traceID=1");
        assert_eq!(p.all("tag").collect::<Vec<_>>(), ["a:1", "b:2"]);
        assert_eq!(p.get("service"), Some("my svc"));
        assert_eq!(p.get("empty"), None);
        assert_eq!(p.get("missing"), None);
        assert_eq!(QueryParams::parse(None).get("x"), None);
    }

    #[test]
    fn v1_search_full_parameters() {
        let req = parse_v1_search(
            &q("service=frontend&operation=GET%20%2F&tags=%7B%22http.status_code%22%3A%22500%22%2C%22n%22%3A5%7D\
                &tag=error:true&tag=url:http://x:80/&minDuration=1.2ms&maxDuration=5s\
                &start=1000&end=2000&limit=7"),
            NOW,
        )
        .unwrap();
        assert!(req.trace_ids.is_empty());
        let query = req.query;
        assert_eq!(query.service.as_deref(), Some("frontend"));
        assert_eq!(query.operation.as_deref(), Some("GET /"));
        assert_eq!(
            query.tags,
            vec![
                ("error".to_owned(), "true".to_owned()),
                ("url".to_owned(), "http://x:80/".to_owned()),
                ("http.status_code".to_owned(), "500".to_owned()),
                ("n".to_owned(), "5".to_owned()),
            ]
        );
        assert_eq!(query.min_duration, Some(Duration::from_micros(1200)));
        assert_eq!(query.max_duration, Some(Duration::from_secs(5)));
        assert_eq!(query.start_unix_nano, Some(1_000_000));
        assert_eq!(query.end_unix_nano, Some(2_000_000));
        assert_eq!(query.limit, 7);
    }

    #[test]
    fn v1_search_defaults_follow_jaeger() {
        let query = parse_v1_search(&q(""), NOW).unwrap().query;
        assert_eq!(query.service, None);
        assert_eq!(query.limit, DEFAULT_SEARCH_LIMIT);
        assert_eq!(query.end_unix_nano, Some(NOW));
        assert_eq!(
            query.start_unix_nano,
            Some(NOW - 2 * 24 * 3600 * 1_000_000_000)
        );
        let query = parse_v1_search(&q("lookback=1h&limit=0"), NOW)
            .unwrap()
            .query;
        assert_eq!(query.start_unix_nano, Some(NOW - 3600 * 1_000_000_000));
        assert_eq!(query.limit, DEFAULT_SEARCH_LIMIT);
        let query = parse_v1_search(&q("lookback=2d"), NOW).unwrap().query;
        assert_eq!(
            query.start_unix_nano,
            Some(NOW - 2 * 86_400 * 1_000_000_000)
        );
        let query = parse_v1_search(&q("lookback=custom&start=-5"), NOW)
            .unwrap()
            .query;
        assert_eq!(query.start_unix_nano, Some(0));
    }

    #[test]
    fn v1_search_trace_ids() {
        let req = parse_v1_search(
            &q("traceID=abc&traceID=4bf92f3577b34da6a3ce929d0e0e4736"),
            NOW,
        )
        .unwrap();
        assert_eq!(req.trace_ids.len(), 2);
        assert_eq!(req.trace_ids[0].to_short_hex(), "0000000000000abc");
        assert!(err_v1("traceID=xyz").starts_with("cannot parse traceID param: "));
    }

    #[test]
    fn v1_search_errors_name_the_parameter() {
        assert_eq!(
            err_v1("minDuration=abc"),
            r#"unable to parse param 'minDuration': time: invalid duration "abc""#
        );
        assert!(err_v1("maxDuration=5").starts_with("unable to parse param 'maxDuration': "));
        assert!(err_v1("start=yesterday").starts_with("unable to parse param 'start': "));
        assert!(err_v1("end=1.5").starts_with("unable to parse param 'end': "));
        assert!(err_v1("limit=many").starts_with("unable to parse param 'limit': "));
        assert!(err_v1("limit=-1").starts_with("unable to parse param 'limit': "));
        assert_eq!(
            err_v1("minDuration=5s&maxDuration=1s"),
            "'maxDuration' should be greater than 'minDuration'"
        );
        assert_eq!(
            err_v1("tag=novalue"),
            "malformed 'tag' parameter, expecting key:value, received: novalue"
        );
        assert!(err_v1("tags=%7Bbad")
            .starts_with("malformed 'tags' parameter, cannot unmarshal JSON: "));
        assert!(err_v1("tags=%5B1%5D").starts_with("malformed 'tags' parameter"));
        assert!(err_v1("tags=%7B%22a%22%3A%5B%5D%7D").starts_with("malformed 'tags' parameter"));
    }

    #[test]
    fn dependencies_parameters() {
        let d = parse_dependencies(&q(""), NOW).unwrap();
        assert_eq!(d.end_unix_nano, NOW);
        assert_eq!(d.lookback_nanos, 24 * 3600 * 1_000_000_000);
        let d = parse_dependencies(&q("endTs=1700000000000&lookback=60000"), NOW).unwrap();
        assert_eq!(d.end_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(d.lookback_nanos, 60_000_000_000);
        let e = parse_dependencies(&q("endTs=now"), NOW)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unable to parse param 'endTs': "), "{e}");
        let e = parse_dependencies(&q("lookback=1h"), NOW)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("unable to parse param 'lookback': "), "{e}");
        assert!(parse_dependencies(&q("lookback=-1"), NOW).is_err());
    }

    #[test]
    fn span_kinds() {
        assert_eq!(parse_span_kind("spanKind", None), Ok(None));
        assert_eq!(
            parse_span_kind("spanKind", Some("server")),
            Ok(Some(SpanKind::Server))
        );
        assert_eq!(
            parse_span_kind("spanKind", Some("CLIENT")),
            Ok(Some(SpanKind::Client))
        );
        let e = parse_span_kind("spanKind", Some("sideways")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported span kind 'sideways' in param 'spanKind'"
        );
    }

    #[test]
    fn v3_search_parameters() {
        let query = parse_v3_search(&q(
            "query.service_name=frontend&query.operation_name=GET&query.start_time_min=2024-05-01T00:00:00Z\
             &query.start_time_max=2024-05-01T01:00:00%2B01:00&query.duration_min=1.5s&query.num_traces=3\
             &query.attributes=%7B%22a%22%3A%221%22%7D&query.attributes%5Bhttp.method%5D=GET",
        ))
        .unwrap();
        assert_eq!(query.service.as_deref(), Some("frontend"));
        assert_eq!(query.operation.as_deref(), Some("GET"));
        assert_eq!(query.start_unix_nano, Some(1_714_521_600_000_000_000));
        assert_eq!(query.end_unix_nano, Some(1_714_521_600_000_000_000));
        assert_eq!(query.min_duration, Some(Duration::from_millis(1500)));
        assert_eq!(query.max_duration, None);
        assert_eq!(query.limit, 3);
        assert_eq!(
            query.tags,
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("http.method".to_owned(), "GET".to_owned())
            ]
        );
    }

    #[test]
    fn v3_search_errors() {
        let e = |raw: &str| parse_v3_search(&q(raw)).unwrap_err().to_string();
        assert_eq!(
            e("query.service_name=x"),
            "query.start_time_min and query.start_time_max are required"
        );
        let ok =
            "query.start_time_min=2024-05-01T00:00:00Z&query.start_time_max=2024-05-01T00:00:00Z";
        assert!(
            e("query.start_time_min=yesterday&query.start_time_max=2024-05-01T00:00:00Z")
                .starts_with("malformed parameter query.start_time_min: ")
        );
        assert!(e(&format!("{ok}&query.duration_min=1"))
            .starts_with("malformed parameter query.duration_min: "));
        assert!(e(&format!("{ok}&query.num_traces=x"))
            .starts_with("malformed parameter query.num_traces: "));
        assert!(e(&format!("{ok}&query.num_traces=-2"))
            .starts_with("malformed parameter query.num_traces: "));
        assert!(e(&format!("{ok}&query.attributes=nope"))
            .starts_with("malformed parameter query.attributes: "));
    }

    #[test]
    fn bool_flags() {
        assert_eq!(parse_bool(None), Some(false));
        assert_eq!(parse_bool(Some("true")), Some(true));
        assert_eq!(parse_bool(Some("0")), Some(false));
        assert_eq!(parse_bool(Some("yes")), None);
    }
}
