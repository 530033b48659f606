//! OTTL statements, as the `transform` processor takes them: an editor call, optionally
//! `where` a condition. Editors built: `set`, `delete_key`, `delete_matching_keys`,
//! `keep_keys`, `replace_pattern`, `replace_all_patterns`, `truncate_all` and `limit`; values
//! are literals, paths and converters (`set(attributes["op"], ToLowerCase(name))`). A value that
//! fails on an item (a converter given the wrong type) fails the statement, which follows the
//! processor's `error_mode`.

use model::{AnyValue, KeyValue, Resource, Scope, Span, SpanKind, StatusCode};
use regex::Regex;

use super::{lex, Condition, Context, Operand, Parser, Path, SpanContext, Token, Value};

/// A parsed statement.
#[derive(Debug)]
pub struct Statement {
    edit: Edit,
    when: Option<Condition>,
}

/// Which attributes an editor works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Map {
    Span,
    Resource,
}

#[derive(Debug)]
enum Edit {
    Set(Target, Operand),
    DeleteKey(Map, String),
    DeleteMatchingKeys(Map, Regex),
    KeepKeys(Map, Vec<String>),
    ReplacePattern(Target, Regex, String),
    ReplaceAllPatterns(Map, bool, Regex, String),
    TruncateAll(Map, usize),
    Limit(Map, usize, Vec<String>),
}

/// What `set` and `replace_pattern` write.
#[derive(Debug)]
enum Target {
    Name,
    Kind,
    StatusCode,
    StatusMessage,
    Attribute(Map, String),
}

impl Statement {
    /// Parses one statement of `context`; the error names what could not be read.
    pub fn parse(text: &str, context: Context) -> Result<Statement, String> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            at: 0,
            context,
        };
        let edit = p.edit()?;
        let when = if p.keyword("where") {
            Some(p.or()?)
        } else {
            None
        };
        match p.peek() {
            None => Ok(Statement { edit, when }),
            Some(t) => Err(format!("unexpected {} after the statement", t.describe())),
        }
    }

    /// Runs the statement on a span (span context) or on a resource (`span` None).
    pub fn apply(
        &self,
        resource: &mut Resource,
        scope: &Scope,
        mut span: Option<&mut Span>,
    ) -> Result<(), String> {
        let cx = SpanContext {
            resource: &*resource,
            scope,
            span: span.as_deref(),
        };
        if let Some(c) = &self.when {
            if !c.eval(&cx)? {
                return Ok(());
            }
        }
        // Values are read before anything is written.
        let value = match &self.edit {
            Edit::Set(_, v) => Some(v.value(&cx)?),
            _ => None,
        };
        match &self.edit {
            Edit::Set(target, _) => {
                let value = value.unwrap_or(Value::Nil);
                if value == Value::Nil {
                    return Ok(()); // OTTL: setting nil does nothing
                }
                set(target, value, resource, span.as_deref_mut())
            }
            Edit::ReplacePattern(target, re, with) => {
                let current = match target {
                    Target::Name => span.as_deref().map(|s| s.name.clone()),
                    Target::StatusMessage => span.as_deref().map(|s| s.status.message.clone()),
                    Target::Attribute(map, key) => {
                        match attributes(*map, resource, span.as_deref_mut())
                            .and_then(|a| a.iter().find(|kv| &kv.key == key))
                            .map(|kv| &kv.value)
                        {
                            Some(AnyValue::String(s)) => Some(s.clone()),
                            _ => None,
                        }
                    }
                    Target::Kind | Target::StatusCode => None,
                };
                match current {
                    Some(text) if re.is_match(&text) => {
                        let replaced = re.replace_all(&text, with.as_str()).into_owned();
                        set(target, Value::Str(replaced), resource, span.as_deref_mut())
                    }
                    _ => Ok(()),
                }
            }
            Edit::DeleteKey(map, key) => {
                if let Some(a) = attributes(*map, resource, span.as_deref_mut()) {
                    a.retain(|kv| &kv.key != key);
                }
                Ok(())
            }
            Edit::DeleteMatchingKeys(map, re) => {
                if let Some(a) = attributes(*map, resource, span.as_deref_mut()) {
                    a.retain(|kv| !re.is_match(&kv.key));
                }
                Ok(())
            }
            Edit::KeepKeys(map, keys) => {
                if let Some(a) = attributes(*map, resource, span.as_deref_mut()) {
                    a.retain(|kv| keys.contains(&kv.key));
                }
                Ok(())
            }
            Edit::ReplaceAllPatterns(map, keys, re, with) => {
                if let Some(a) = attributes(*map, resource, span.as_deref_mut()) {
                    for kv in a.iter_mut() {
                        if *keys {
                            if re.is_match(&kv.key) {
                                kv.key = re.replace_all(&kv.key, with.as_str()).into_owned();
                            }
                        } else if let AnyValue::String(v) = &mut kv.value {
                            if re.is_match(v) {
                                *v = re.replace_all(v, with.as_str()).into_owned();
                            }
                        }
                    }
                }
                Ok(())
            }
            Edit::TruncateAll(map, limit) => {
                if let Some(a) = attributes(*map, resource, span.as_deref_mut()) {
                    for kv in a.iter_mut() {
                        if let AnyValue::String(v) = &mut kv.value {
                            truncate(v, *limit);
                        }
                    }
                }
                Ok(())
            }
            Edit::Limit(map, limit, priority) => {
                if let Some(a) = attributes(*map, resource, span) {
                    if a.len() > *limit {
                        // Priority keys first, then the rest in order, up to the limit.
                        let mut kept = 0;
                        let mut keep = vec![false; a.len()];
                        for (i, kv) in a.iter().enumerate() {
                            if kept < *limit && priority.contains(&kv.key) {
                                keep[i] = true;
                                kept += 1;
                            }
                        }
                        for k in keep.iter_mut() {
                            if kept < *limit && !*k {
                                *k = true;
                                kept += 1;
                            }
                        }
                        let mut i = 0;
                        a.retain(|_| {
                            i += 1;
                            keep[i - 1]
                        });
                    }
                }
                Ok(())
            }
        }
    }
}

fn attributes<'a>(
    map: Map,
    resource: &'a mut Resource,
    span: Option<&'a mut Span>,
) -> Option<&'a mut Vec<KeyValue>> {
    match map {
        Map::Resource => Some(&mut resource.attributes),
        Map::Span => span.map(|s| &mut s.attributes),
    }
}

/// At most `limit` bytes, cut on a character boundary.
fn truncate(s: &mut String, limit: usize) {
    if s.len() > limit {
        let mut at = limit;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}

fn set(
    target: &Target,
    value: Value,
    resource: &mut Resource,
    span: Option<&mut Span>,
) -> Result<(), String> {
    match target {
        Target::Attribute(map, key) => {
            let value = match value {
                Value::Str(s) => AnyValue::String(s),
                Value::Int(i) => AnyValue::Int(i),
                Value::Float(f) => AnyValue::Double(f),
                Value::Bool(b) => AnyValue::Bool(b),
                Value::Other(v) => v,
                Value::Nil => return Ok(()),
            };
            if let Some(a) = attributes(*map, resource, span) {
                match a.iter_mut().find(|kv| &kv.key == key) {
                    Some(kv) => kv.value = value,
                    None => a.push(KeyValue::new(key.clone(), value)),
                }
            }
            Ok(())
        }
        Target::Name => match (value, span) {
            (Value::Str(s), Some(span)) => {
                span.name = s;
                Ok(())
            }
            (v, _) => Err(format!("name takes a string, not {v:?}")),
        },
        Target::StatusMessage => match (value, span) {
            (Value::Str(s), Some(span)) => {
                span.status.message = s;
                Ok(())
            }
            (v, _) => Err(format!("status.message takes a string, not {v:?}")),
        },
        Target::StatusCode => match (value, span) {
            (Value::Int(i @ 0..=2), Some(span)) => {
                span.status.code = StatusCode::from_i32(i as i32);
                Ok(())
            }
            (v, _) => Err(format!(
                "status.code takes STATUS_CODE_UNSET, _OK or _ERROR, not {v:?}"
            )),
        },
        Target::Kind => match (value, span) {
            (Value::Int(i @ 0..=5), Some(span)) => {
                span.kind = SpanKind::from_i32(i as i32);
                Ok(())
            }
            (v, _) => Err(format!("kind takes a SPAN_KIND_ value, not {v:?}")),
        },
    }
}

impl Parser {
    fn edit(&mut self) -> Result<Edit, String> {
        let name = match self.next() {
            Some(Token::Ident(n)) => n,
            Some(t) => {
                return Err(format!(
                    "a statement starts with an editor, not {}",
                    t.describe()
                ))
            }
            None => return Err("the statement is empty".into()),
        };
        self.expect(Token::LParen)?;
        let edit = match name.as_str() {
            "set" => {
                let target = self.target()?;
                self.expect(Token::Comma)?;
                let value = self.operand()?;
                Edit::Set(target, value)
            }
            "delete_key" => {
                let map = self.map()?;
                self.expect(Token::Comma)?;
                Edit::DeleteKey(map, self.string("the key")?)
            }
            "delete_matching_keys" => {
                let map = self.map()?;
                self.expect(Token::Comma)?;
                Edit::DeleteMatchingKeys(map, self.pattern()?)
            }
            "keep_keys" => {
                let map = self.map()?;
                self.expect(Token::Comma)?;
                Edit::KeepKeys(map, self.strings()?)
            }
            "replace_pattern" => {
                let target = self.target()?;
                self.expect(Token::Comma)?;
                let re = self.pattern()?;
                self.expect(Token::Comma)?;
                Edit::ReplacePattern(target, re, self.string("the replacement")?)
            }
            "replace_all_patterns" => {
                let map = self.map()?;
                self.expect(Token::Comma)?;
                let keys = match self.string("the mode")?.as_str() {
                    "key" => true,
                    "value" => false,
                    other => {
                        return Err(format!(
                            "replace_all_patterns mode {other:?}: use \"key\" or \"value\""
                        ))
                    }
                };
                self.expect(Token::Comma)?;
                let re = self.pattern()?;
                self.expect(Token::Comma)?;
                Edit::ReplaceAllPatterns(map, keys, re, self.string("the replacement")?)
            }
            "truncate_all" => {
                let map = self.map()?;
                self.expect(Token::Comma)?;
                Edit::TruncateAll(map, self.count()?)
            }
            "limit" => {
                let map = self.map()?;
                self.expect(Token::Comma)?;
                let n = self.count()?;
                let priority = if self.peek() == Some(&Token::Comma) {
                    self.at += 1;
                    self.strings()?
                } else {
                    Vec::new()
                };
                Edit::Limit(map, n, priority)
            }
            other => {
                return Err(format!(
                    "the editor {other} is not built (set, delete_key, delete_matching_keys, \
                     keep_keys, replace_pattern, replace_all_patterns, truncate_all and limit are)"
                ))
            }
        };
        self.expect(Token::RParen)?;
        Ok(edit)
    }

    /// `attributes` (the context's), `span.attributes` or `resource.attributes`.
    fn map(&mut self) -> Result<Map, String> {
        let mut words = Vec::new();
        while let Some(Token::Ident(w)) = self.peek().cloned() {
            self.at += 1;
            words.push(w);
            if self.peek() == Some(&Token::Dot) {
                self.at += 1;
            } else {
                break;
            }
        }
        match (words.join(".").as_str(), self.context) {
            ("attributes" | "span.attributes", Context::Span) => Ok(Map::Span),
            ("attributes" | "resource.attributes", Context::Resource) => Ok(Map::Resource),
            ("resource.attributes", Context::Span) => Err(
                "resource attributes are edited in the resource context (context: resource)".into(),
            ),
            (other, _) => Err(format!("expected attributes, found `{other}`")),
        }
    }

    fn target(&mut self) -> Result<Target, String> {
        let Some(Token::Ident(first)) = self.next() else {
            return Err("expected a path to write".into());
        };
        let path = self.path(first)?;
        Ok(match (path, self.context) {
            (Path::Attribute(k), _) => Target::Attribute(Map::Span, k),
            (Path::ResourceAttribute(k), Context::Resource) => Target::Attribute(Map::Resource, k),
            (Path::ResourceAttribute(_), Context::Span) => {
                return Err(
                    "resource attributes are written in the resource context (context: resource)"
                        .into(),
                )
            }
            (Path::Name, _) => Target::Name,
            (Path::Kind, _) => Target::Kind,
            (Path::StatusCode, _) => Target::StatusCode,
            (Path::StatusMessage, _) => Target::StatusMessage,
            (other, _) => return Err(format!("{other:?} cannot be written")),
        })
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Token::Str(s)) => Ok(s),
            Some(t) => Err(format!("{what} must be a string, found {}", t.describe())),
            None => Err(format!("{what} is missing")),
        }
    }

    fn pattern(&mut self) -> Result<Regex, String> {
        let p = self.string("the pattern")?;
        Regex::new(&p).map_err(|e| format!("pattern {p:?}: {e}"))
    }

    fn count(&mut self) -> Result<usize, String> {
        match self.next() {
            Some(Token::Int(n)) if n >= 0 => Ok(n as usize),
            Some(t) => Err(format!("expected a count, found {}", t.describe())),
            None => Err("a count is missing".into()),
        }
    }

    fn strings(&mut self) -> Result<Vec<String>, String> {
        self.expect(Token::LBracket)?;
        let mut out = Vec::new();
        if self.peek() == Some(&Token::RBracket) {
            self.at += 1;
            return Ok(out);
        }
        loop {
            out.push(self.string("a key")?);
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::RBracket) => return Ok(out),
                Some(t) => return Err(format!("expected `,` or `]`, found {}", t.describe())),
                None => return Err("the list is not closed".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> (Resource, Scope, Span) {
        let resource = Resource {
            attributes: vec![
                KeyValue::new("service.name", "checkout"),
                KeyValue::new("k8s.pod.uid", "1234"),
            ],
            ..Default::default()
        };
        let span = Span {
            name: "GET /users/123".into(),
            attributes: vec![
                KeyValue::new("http.target", "/login?token=s3cret&x=1"),
                KeyValue::new("http.route", "/users/{id}"),
                KeyValue::new("password", "hunter2"),
                KeyValue::new("db.statement", "SELECT * FROM a_very_long_table"),
                KeyValue::new("n", AnyValue::Int(7)),
            ],
            ..Default::default()
        };
        (resource, Scope::default(), span)
    }

    fn run(statements: &[&str]) -> (Resource, Span) {
        let (mut resource, scope, mut span) = span();
        for s in statements {
            let st = Statement::parse(s, Context::Span).unwrap_or_else(|e| panic!("{s}: {e}"));
            st.apply(&mut resource, &scope, Some(&mut span))
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        (resource, span)
    }

    fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
        span.attribute(key)
    }

    #[test]
    fn set_takes_converters_and_a_failing_one_fails_the_statement() {
        let (r, s) = run(&[
            r#"set(attributes["op"], ToUpperCase(name))"#,
            r#"set(attributes["id"], Concat([resource.attributes["service.name"], attributes["n"]], ":"))"#,
            r#"set(attributes["n.text"], String(attributes["n"]))"#,
            r#"set(attributes["route"], Split(attributes["http.route"], "/"))"#,
            r#"set(attributes["nothing"], Int("seven"))"#,
            r#"set(attributes["root"], true) where IsRootSpan() and HasPrefix(name, "GET")"#,
        ]);
        assert_eq!(
            attr(&s, "op"),
            Some(&AnyValue::String("GET /USERS/123".into()))
        );
        assert_eq!(attr(&s, "id"), Some(&AnyValue::String("checkout:7".into())));
        assert_eq!(attr(&s, "n.text"), Some(&AnyValue::String("7".into())));
        assert_eq!(
            attr(&s, "route"),
            Some(&AnyValue::Array(vec![
                AnyValue::String("".into()),
                AnyValue::String("users".into()),
                AnyValue::String("{id}".into()),
            ]))
        );
        assert_eq!(attr(&s, "nothing"), None, "Int of no number is nil");
        assert_eq!(attr(&s, "root"), Some(&AnyValue::Bool(true)));
        assert_eq!(r.attributes.len(), 2);

        let (mut resource, scope, mut span) = span();
        let st = Statement::parse(
            r#"set(attributes["x"], Len(attributes["n"]))"#,
            Context::Span,
        )
        .unwrap();
        let err = st
            .apply(&mut resource, &scope, Some(&mut span))
            .unwrap_err();
        assert!(
            err.contains("Len takes a string, list or map, not an int"),
            "{err}"
        );
        assert_eq!(attr(&span, "x"), None);
    }

    #[test]
    fn editors_change_the_span_as_ottl_does() {
        let (_, s) = run(&[
            r#"set(name, attributes["http.route"]) where IsMatch(name, "^GET /users/")"#,
            r#"set(attributes["team"], "payments")"#,
            r#"set(attributes["copied"], attributes["n"])"#,
            r#"set(attributes["nothing"], attributes["missing"])"#,
            r#"set(status.code, STATUS_CODE_ERROR) where attributes["n"] > 5"#,
            r#"set(kind, SPAN_KIND_SERVER)"#,
            r#"replace_pattern(attributes["http.target"], "token=[^&]*", "token=***")"#,
            r#"delete_key(attributes, "password")"#,
            r#"truncate_all(attributes, 10)"#,
        ]);
        assert_eq!(s.name, "/users/{id}");
        assert_eq!(attr(&s, "team"), Some(&AnyValue::String("payments".into())));
        assert_eq!(attr(&s, "copied"), Some(&AnyValue::Int(7)));
        assert_eq!(attr(&s, "nothing"), None, "setting nil does nothing");
        assert_eq!(s.status.code, StatusCode::Error);
        assert_eq!(s.kind, SpanKind::Server);
        assert_eq!(attr(&s, "password"), None);
        assert_eq!(
            attr(&s, "http.target"),
            Some(&AnyValue::String("/login?tok".into()))
        );
        assert_eq!(
            attr(&s, "db.statement"),
            Some(&AnyValue::String("SELECT * F".into()))
        );

        let (_, s) = run(&[r#"set(name, "never") where attributes["n"] < 5"#]);
        assert_eq!(s.name, "GET /users/123", "the where clause was false");

        let (_, s) = run(&[r#"keep_keys(attributes, ["n", "http.route"])"#]);
        assert_eq!(s.attributes.len(), 2);
        let (_, s) = run(&[r#"delete_matching_keys(attributes, "^(http|db)\\.")"#]);
        assert_eq!(s.attributes.len(), 2);
        let (_, s) = run(&[r#"limit(attributes, 2, ["n"])"#]);
        let keys: Vec<&str> = s.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["http.target", "n"]);
        let (_, s) = run(&[r#"replace_all_patterns(attributes, "value", "\\d+", "N")"#]);
        assert_eq!(
            attr(&s, "http.target"),
            Some(&AnyValue::String("/login?token=sNcret&x=N".into()))
        );
        assert_eq!(
            attr(&s, "n"),
            Some(&AnyValue::Int(7)),
            "only strings are rewritten"
        );
        let (_, s) = run(&[
            r#"replace_pattern(attributes["http.target"], "token=([^&]*)", "token=***($1)")"#,
        ]);
        assert_eq!(
            attr(&s, "http.target"),
            Some(&AnyValue::String("/login?token=***(s3cret)&x=1".into()))
        );
        let (_, s) = run(&[r#"replace_all_patterns(attributes, "key", "^http\\.", "h.")"#]);
        assert!(attr(&s, "h.route").is_some());
    }

    #[test]
    fn truncation_cuts_on_a_character_boundary() {
        let (mut resource, scope, mut span) = span();
        span.attributes = vec![KeyValue::new("k", "välue")];
        Statement::parse("truncate_all(attributes, 2)", Context::Span)
            .unwrap()
            .apply(&mut resource, &scope, Some(&mut span))
            .unwrap();
        assert_eq!(attr(&span, "k"), Some(&AnyValue::String("v".into())));
    }

    #[test]
    fn the_resource_context_edits_the_resource() {
        let (mut resource, scope, _) = span();
        for s in [
            r#"delete_key(attributes, "k8s.pod.uid")"#,
            r#"set(attributes["env"], "prod") where attributes["service.name"] == "checkout""#,
        ] {
            Statement::parse(s, Context::Resource)
                .unwrap()
                .apply(&mut resource, &scope, None)
                .unwrap();
        }
        assert_eq!(
            resource.attributes,
            vec![
                KeyValue::new("service.name", "checkout"),
                KeyValue::new("env", "prod")
            ]
        );
    }

    #[test]
    fn what_is_not_built_is_named() {
        for (text, context, named) in [
            (
                r#"set(name, Base64Decode(name))"#,
                Context::Span,
                "converter Base64Decode is not built",
            ),
            (
                r#"merge_maps(attributes, cache, "upsert")"#,
                Context::Span,
                "editor merge_maps is not built",
            ),
            (
                r#"set(name, "x") where"#,
                Context::Span,
                "expected a value or a path",
            ),
            (
                r#"set(resource.attributes["a"], "b")"#,
                Context::Span,
                "resource context",
            ),
            (
                r#"set(name, "x")"#,
                Context::Resource,
                "not built in the resource context",
            ),
            (
                r#"delete_key(attributes, 3)"#,
                Context::Span,
                "the key must be a string",
            ),
            (
                r#"replace_all_patterns(attributes, "both", "a", "b")"#,
                Context::Span,
                "use \"key\" or \"value\"",
            ),
            (
                r#"set(name, "x") extra"#,
                Context::Span,
                "after the statement",
            ),
        ] {
            let e = Statement::parse(text, context)
                .err()
                .unwrap_or_else(|| panic!("{text} parsed"));
            assert!(e.contains(named), "{text}: {e}");
        }
        // A type the target cannot take is an error when it runs.
        let (mut resource, scope, mut span) = span();
        let e = Statement::parse(r#"set(name, 3)"#, Context::Span)
            .unwrap()
            .apply(&mut resource, &scope, Some(&mut span))
            .unwrap_err();
        assert!(e.contains("name takes a string"), "{e}");
    }
}
