//! OTLP/JSON, as the OTLP specification defines it: proto3 JSON with lowerCamelCase keys,
//! hex (not base64) trace and span ids, 64-bit integers as decimal strings, enums as integers.
//!
//! The generated types of `opentelemetry-proto` (feature `with-serde`) do most of the work. What
//! they do not accept, and senders do send, is fixed on a `serde_json::Value` before they see it
//! (see [`normalise`]): enum names (`"SPAN_KIND_SERVER"`), 32-bit counters and flags written as
//! strings, doubles as strings, `null` for any field (proto3 JSON: "use the default"),
//! snake_case keys, and `arrayValue`/`kvlistValue`/`KeyValue` objects with fields left out.
//! On the way out, their `"status": null` (and other nulls) are removed so the JSON is clean OTLP.

use serde_json::{Map, Value};

use super::convert::{from_request, to_request};
use crate::{Decoded, ExportTraceServiceRequest, WireError};

const FORMAT: &str = "OTLP";

/// Decodes an OTLP/JSON `ExportTraceServiceRequest` body (already decompressed).
pub fn decode_json(body: &[u8]) -> Result<Decoded, WireError> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| WireError::json_syntax(FORMAT, &e))?;
    if !value.is_object() {
        return Err(WireError::invalid(
            "(root)",
            format!(
                "expected a JSON object (ExportTraceServiceRequest), got {}",
                json_type(&value)
            ),
        ));
    }
    normalise(&mut value)?;
    let req: ExportTraceServiceRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "(root)".to_owned()
        } else {
            path
        };
        WireError::invalid(path, e.into_inner().to_string())
    })?;
    Ok(from_request(req))
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Encodes the batch as OTLP/JSON.
pub fn encode_json(batch: &model::TraceBatch) -> Vec<u8> {
    // Writing a `Value` into a Vec cannot fail.
    serde_json::to_vec(&batch_to_json_value(batch)).unwrap_or_default()
}

/// The OTLP/JSON form of the batch as a value, for embedding in API envelopes (Jaeger api_v3).
pub fn batch_to_json_value(batch: &model::TraceBatch) -> Value {
    match serde_json::to_value(to_request(batch)) {
        Ok(mut v) => {
            strip_nulls(&mut v);
            v
        }
        // Unreachable: the generated types serialise to plain maps with string keys.
        Err(_) => Value::Object(Map::new()),
    }
}

/// Removes `null` members everywhere (the serde derive writes unset messages as `null`).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Rewrites what real senders send into what the generated serde types accept.
///
/// Walks only the known structure; anything of an unexpected type is left in place for the
/// typed deserialisation to report with its path.
fn normalise(v: &mut Value) -> Result<(), WireError> {
    let Some(req) = message(v) else {
        return Ok(());
    };
    for_each(req, "resourceSpans", "resourceSpans", |rs, path| {
        if let Some(res) = rs.get_mut("resource").and_then(message) {
            fix_counts(res);
            attributes(res);
        }
        for_each(
            rs,
            "scopeSpans",
            &format!("{path}.scopeSpans"),
            |ss, path| {
                if let Some(scope) = ss.get_mut("scope").and_then(message) {
                    fix_counts(scope);
                    attributes(scope);
                }
                for_each(ss, "spans", &format!("{path}.spans"), span)
            },
        )
    })
}

fn span(s: &mut Map<String, Value>, path: &str) -> Result<(), WireError> {
    fix_counts(s);
    attributes(s);
    enum_field(s, "kind", path, SPAN_KINDS)?;
    for_each(s, "events", "", |e, _| {
        fix_counts(e);
        attributes(e);
        Ok(())
    })?;
    for_each(s, "links", "", |l, _| {
        fix_counts(l);
        attributes(l);
        Ok(())
    })?;
    if let Some(status) = s.get_mut("status").and_then(message) {
        enum_field(status, "code", &format!("{path}.status"), STATUS_CODES)?;
    }
    Ok(())
}

const SPAN_KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_CODES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/// Turns an enum given by name (proto3 JSON allows it) into its number.
fn enum_field(
    m: &mut Map<String, Value>,
    key: &str,
    path: &str,
    names: &[&str],
) -> Result<(), WireError> {
    let Some(Value::String(name)) = m.get(key) else {
        return Ok(());
    };
    let number = match names.iter().position(|n| n == name) {
        Some(i) => i as i64,
        None => name.parse::<i64>().map_err(|_| {
            WireError::invalid(
                format!("{path}.{key}"),
                format!("unknown enum name {name:?}, expected a number or one of {names:?}"),
            )
        })?,
    };
    m.insert(key.to_owned(), Value::from(number));
    Ok(())
}

/// 32-bit counters and flags may come as strings (proto3 JSON allows it; the derive does not).
fn fix_counts(m: &mut Map<String, Value>) {
    for key in [
        "droppedAttributesCount",
        "droppedEventsCount",
        "droppedLinksCount",
        "flags",
    ] {
        if let Some(v) = m.get_mut(key) {
            if let Some(n) = v.as_str().and_then(|s| s.trim().parse::<u32>().ok()) {
                *v = Value::from(n);
            }
        }
    }
}

/// Normalises the `attributes` list of a message.
fn attributes(m: &mut Map<String, Value>) {
    if let Some(Value::Array(kvs)) = m.get_mut("attributes") {
        key_values(kvs);
    }
}

fn key_values(kvs: &mut [Value]) {
    for kv in kvs.iter_mut().filter_map(message) {
        kv.entry("key").or_insert_with(|| Value::from(""));
        if let Some(v) = kv.get_mut("value") {
            any_value(v);
        }
    }
}

fn any_value(v: &mut Value) {
    let Some(m) = message(v) else { return };
    if let Some(d) = m.get_mut("doubleValue") {
        if let Some(n) = d.as_str().and_then(|s| s.trim().parse::<f64>().ok()) {
            if let Some(n) = serde_json::Number::from_f64(n) {
                *d = Value::Number(n);
            }
        }
    }
    if let Some(a) = m.get_mut("arrayValue").and_then(message) {
        if let Value::Array(items) = a.entry("values").or_insert_with(|| Value::Array(vec![])) {
            items.iter_mut().for_each(any_value);
        }
    }
    if let Some(l) = m.get_mut("kvlistValue").and_then(message) {
        if let Value::Array(kvs) = l.entry("values").or_insert_with(|| Value::Array(vec![])) {
            key_values(kvs);
        }
    }
}

/// If `v` is an object: drops its `null` members, renames snake_case keys to lowerCamelCase, and
/// returns it.
fn message(v: &mut Value) -> Option<&mut Map<String, Value>> {
    let m = v.as_object_mut()?;
    m.retain(|_, v| !v.is_null());
    let snake: Vec<String> = m.keys().filter(|k| k.contains('_')).cloned().collect();
    for key in snake {
        let camel = to_camel(&key);
        if !m.contains_key(&camel) {
            if let Some(v) = m.remove(&key) {
                m.insert(camel, v);
            }
        }
    }
    Some(m)
}

fn to_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs `f` on each object of the array `m[key]`, with its path (`{path}[i]`).
fn for_each(
    m: &mut Map<String, Value>,
    key: &str,
    path: &str,
    mut f: impl FnMut(&mut Map<String, Value>, &str) -> Result<(), WireError>,
) -> Result<(), WireError> {
    if let Some(Value::Array(items)) = m.get_mut(key) {
        for (i, item) in items.iter_mut().enumerate() {
            if let Some(obj) = message(item) {
                f(obj, &format!("{path}[{i}]"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::rich_batch;
    use model::{AnyValue, SpanId, SpanKind, StatusCode, TraceId};

    fn decode(s: &str) -> Decoded {
        decode_json(s.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn first_span(d: &Decoded) -> &model::Span {
        &d.batch.resource_spans[0].scope_spans[0].spans[0]
    }

    #[test]
    fn json_round_trips() {
        let batch = rich_batch();
        let bytes = encode_json(&batch);
        let d = decode_json(&bytes).unwrap();
        assert_eq!(d.rejected_spans, 0, "{}", d.error_message);
        assert_eq!(d.batch, batch);
    }

    #[test]
    fn encoded_json_is_clean_otlp() {
        let v = batch_to_json_value(&rich_batch());
        let text = v.to_string();
        assert!(!text.contains("null"), "no nulls: {text}");
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(span["spanId"], "00f067aa0ba902b7");
        assert_eq!(span["parentSpanId"], "");
        assert_eq!(span["kind"], 2);
        assert_eq!(span["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(span["status"]["code"], 2);
        assert_eq!(span["status"]["message"], "upstream failed");
        assert_eq!(span["flags"], 0x301);
        let attrs = span["attributes"].as_array().unwrap();
        let code = attrs
            .iter()
            .find(|a| a["key"] == "http.status_code")
            .unwrap();
        assert_eq!(code["value"], serde_json::json!({"intValue": "500"}));
        let plain = &v["resourceSpans"][1]["scopeSpans"][0]["spans"][0];
        assert!(
            plain.get("status").is_none(),
            "unset status omitted: {plain}"
        );
        assert_eq!(plain["traceId"], "0000000000000000463ac35c9f6413ad");
    }

    #[test]
    fn enums_by_name_and_number_and_int64_as_string_or_number() {
        let d = decode(
            r#"{"resourceSpans":[{"resource":{"attributes":[
                {"key":"service.name","value":{"stringValue":"cart"}}]},
              "scopeSpans":[{"scope":{"name":"lib","version":"1"},"spans":[
                {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
                 "parentSpanId":"EEE19B7EC3C1B173","name":"I'm a server span",
                 "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
                 "kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR","message":"x"},
                 "droppedAttributesCount":"2","flags":"256",
                 "attributes":[{"key":"n","value":{"intValue":42}},
                               {"key":"s","value":{"intValue":"-7"}},
                               {"key":"d","value":{"doubleValue":"2.5"}}]},
                {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175",
                 "kind":3,"status":{"code":1},"startTimeUnixNano":1,"endTimeUnixNano":"2"}
              ]}]}]}"#,
        );
        let spans = &d.batch.resource_spans[0].scope_spans[0].spans;
        assert_eq!(d.batch.resource_spans[0].resource.service_name(), "cart");
        let s = &spans[0];
        assert_eq!(
            s.trace_id,
            "5b8efff798038103d269b633813fc60c"
                .parse::<TraceId>()
                .unwrap()
        );
        assert_eq!(
            s.parent_span_id,
            Some("eee19b7ec3c1b173".parse::<SpanId>().unwrap())
        );
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(s.status.code, StatusCode::Error);
        assert_eq!(s.start_unix_nano, 1_544_712_660_000_000_000);
        assert_eq!(s.end_unix_nano, 1_544_712_661_000_000_000);
        assert_eq!(s.dropped_attributes_count, 2);
        assert_eq!(s.flags, 256);
        assert_eq!(s.attribute("n"), Some(&AnyValue::Int(42)));
        assert_eq!(s.attribute("s"), Some(&AnyValue::Int(-7)));
        assert_eq!(s.attribute("d"), Some(&AnyValue::Double(2.5)));
        assert_eq!(spans[1].kind, SpanKind::Client);
        assert_eq!(spans[1].status.code, StatusCode::Ok);
        assert_eq!((spans[1].start_unix_nano, spans[1].end_unix_nano), (1, 2));
    }

    #[test]
    fn nulls_missing_fields_unknown_fields_and_snake_case_are_accepted() {
        let d = decode(
            r#"{"resourceSpans":[{"resource":null,"futureField":{"a":1},"scopeSpans":[
                {"scope":null,"spans":[{"trace_id":"0102030405060708090a0b0c0d0e0f10",
                  "span_id":"0102030405060708","status":null,"events":null,"unknown":[1,2],
                  "attributes":[{"key":"empty","value":{}},{"key":"novalue"},
                    {"value":{"stringValue":"keyless"}},
                    {"key":"arr","value":{"arrayValue":{}}},
                    {"key":"kv","value":{"kvlistValue":{"values":[
                        {"key":"x","value":{"boolValue":true,"mystery":3}}]}}},
                    {"key":"b","value":{"bytesValue":"AAH/"}}]}]},
                {"spans":[]},{}]},{"scopeSpans":null},{}]}"#,
        );
        assert_eq!(d.batch.span_count(), 1);
        assert_eq!(d.batch.resource_spans.len(), 3);
        let s = first_span(&d);
        assert_eq!(s.status, model::Status::default());
        assert_eq!(s.attribute("empty"), Some(&AnyValue::String(String::new())));
        assert_eq!(
            s.attribute("novalue"),
            Some(&AnyValue::String(String::new()))
        );
        assert_eq!(s.attribute(""), Some(&AnyValue::String("keyless".into())));
        assert_eq!(s.attribute("arr"), Some(&AnyValue::Array(vec![])));
        assert_eq!(
            s.attribute("kv"),
            Some(&AnyValue::KvList(vec![model::KeyValue::new("x", true)]))
        );
        assert_eq!(s.attribute("b"), Some(&AnyValue::Bytes(vec![0, 1, 255])));
        assert!(decode("{}").batch.is_empty());
        assert!(decode(r#"{"resourceSpans":[]}"#).batch.is_empty());
    }

    #[test]
    fn invalid_ids_are_partial_success() {
        let d = decode(
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
                {"traceId":"0102","spanId":"0102030405060708"},
                {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"}]}]}]}"#,
        );
        assert_eq!(d.rejected_spans, 1);
        assert_eq!(d.batch.span_count(), 1);
        assert!(
            d.error_message.contains(
                "resourceSpans[0].scopeSpans[0].spans[0].traceId: trace id must be 16 bytes, got 2"
            ),
            "{}",
            d.error_message
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = decode_json(b"{\"resourceSpans\": [\n  {\"scopeSpans\": [}\n]}").unwrap_err();
        match &err {
            WireError::Json { line, column, .. } => {
                assert_eq!(*line, 2);
                assert!(*column > 0);
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.starts_with("malformed OTLP JSON at line 2, column "),
            "{msg}"
        );
        assert!(matches!(decode_json(b""), Err(WireError::Json { .. })));
        assert!(matches!(
            decode_json(b"\xff\xfe"),
            Err(WireError::Json { .. })
        ));
    }

    #[test]
    fn shape_errors_name_the_path() {
        let cases = [
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{},{"kind":"SPAN_KIND_BOGUS"}]}]}]}"#,
                "resourceSpans[0].scopeSpans[0].spans[1].kind: unknown enum name",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"status":{"code":"ERROR"}}]}]}]}"#,
                "resourceSpans[0].scopeSpans[0].spans[0].status.code: unknown enum name",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
                "resourceSpans[0].scopeSpans[0].spans[0].traceId: ",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":7}]}]}]}"#,
                "resourceSpans[0].scopeSpans[0].spans[0].name: invalid type",
            ),
            (
                r#"{"resourceSpans":{"a":1}}"#,
                "resourceSpans: invalid type: map",
            ),
            (r#"[1,2]"#, "(root): expected a JSON object"),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"soon"}]}]}]}"#,
                "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano: ",
            ),
        ];
        for (input, want) in cases {
            let err = decode_json(input.as_bytes()).unwrap_err();
            assert!(matches!(err, WireError::Invalid { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(want),
                "input {input}\n got {msg}\nwant {want}"
            );
        }
    }

    #[test]
    fn wrong_shapes_never_panic() {
        let shapes = [
            "null", "1", "\"x\"", "true", "[]", "{\"resourceSpans\":[1,\"a\",null,[]]}",
            "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[1]}]}]}",
            "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"attributes\":[1,{\"key\":1}]}]}]}]}",
            "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"attributes\":[{\"key\":\"a\",\"value\":{\"arrayValue\":{\"values\":7}}}]}]}]}]}",
            "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"events\":[{\"attributes\":{}}]}]}]}]}",
        ];
        for s in shapes {
            let _ = decode_json(s.as_bytes());
        }
        let full = encode_json(&rich_batch());
        for cut in 0..full.len() {
            assert!(decode_json(&full[..cut]).is_err(), "prefix {cut} must fail");
        }
    }
}
