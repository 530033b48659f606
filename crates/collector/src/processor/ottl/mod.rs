//! The part of OTTL (the OpenTelemetry Transformation Language) that span conditions use, as
//! the `filter` processor takes them: `attributes["http.target"] == "/healthz"`,
//! `IsMatch(name, "^GET /internal/.*") and kind == SPAN_KIND_SERVER`.
//!
//! Read when the config is: paths of the span context (`name`, `kind`, `status.code`,
//! `status.message`, `attributes["k"]`, `resource.attributes["k"]`,
//! `instrumentation_scope.name`/`.version` (or `scope.`), `trace_id.string`, `span_id.string`,
//! `parent_span_id.string`, `trace_state`, `start_time_unix_nano`, `end_time_unix_nano`; each
//! also with OTTL's newer `span.` prefix), string, int, float, bool and `nil` literals, the
//! span kind and status code enums, `==`, `!=`, `<`, `<=`, `>`, `>=`, `and`, `or`, `not`,
//! parentheses, list literals, `IsMatch` and the converters of [`converter`] (a boolean one
//! may stand alone: `HasPrefix(name, "GET ")`). Anything else is an error naming it, so a
//! condition is never silently read as something it does not say. A converter that fails on
//! an item (`Len` of an int) fails the condition, which then follows the processor's
//! `error_mode` ([`ErrorMode`]).
//!
//! Comparisons follow OTTL's rules: numbers compare as numbers (an int with a float too),
//! strings lexically, booleans only for (in)equality, `nil` (a missing attribute) equals only
//! `nil`; values of different types are unequal, and ordering them is false.

mod converter;
mod go_fmt;
mod statement;

use std::cmp::Ordering;

use model::{AnyValue, KeyValue, Resource, Scope, Span};

use converter::Call;
pub use statement::Statement;

/// What a processor does with a condition or statement that fails on an item (OTTL's
/// `error_mode`): `propagate` fails the batch, `ignore` logs and goes on, `silent` goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorMode {
    Propagate,
    Ignore,
    Silent,
}

impl ErrorMode {
    pub fn parse(mode: Option<&str>) -> Result<Self, String> {
        match mode {
            None | Some("propagate") => Ok(ErrorMode::Propagate),
            Some("ignore") => Ok(ErrorMode::Ignore),
            Some("silent") => Ok(ErrorMode::Silent),
            Some(other) => Err(format!(
                "error_mode {other:?}: use propagate, ignore or silent"
            )),
        }
    }

    /// `Err` only under `propagate`; processor `name` names what was skipped in the log.
    pub fn handle<T>(self, name: &str, done: Result<T, String>) -> Result<Option<T>, String> {
        match (done, self) {
            (Ok(v), _) => Ok(Some(v)),
            (Err(e), ErrorMode::Propagate) => Err(e),
            (Err(e), ErrorMode::Ignore) => {
                tracing::debug!("processors.{name}: skipped on an item: {e}");
                Ok(None)
            }
            (Err(_), ErrorMode::Silent) => Ok(None),
        }
    }
}

/// Whether any of `conditions` holds, as OTTL's condition sequences decide: one failing on
/// the item fails the whole under `propagate`, and is passed over (logged under `ignore`)
/// otherwise. `name` names the processor in the log.
pub fn any_holds(
    conditions: &[Condition],
    cx: &SpanContext<'_>,
    mode: ErrorMode,
    name: &str,
) -> Result<bool, String> {
    for c in conditions {
        if mode.handle(name, c.eval(cx))? == Some(true) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A parsed condition.
#[derive(Debug)]
pub enum Condition {
    Or(Box<Condition>, Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
    Compare(Operand, Op, Operand),
    IsMatch(Operand, regex::Regex),
    /// A boolean converter standing alone.
    Holds(Operand),
    Literal(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug)]
pub enum Operand {
    Path(Path),
    Value(Value),
    Call(Box<Call>),
    /// `[a, "b", 1]`: Concat's values.
    List(Vec<Operand>),
}

#[derive(Debug)]
pub enum Path {
    Name,
    Kind,
    StatusCode,
    StatusMessage,
    Attribute(String),
    ResourceAttribute(String),
    ScopeName,
    ScopeVersion,
    TraceId,
    SpanId,
    ParentSpanId,
    TraceState,
    Start,
    End,
}

/// A value a condition compares.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Bytes, lists and maps: equal only to themselves, never ordered.
    Other(AnyValue),
}

/// What a condition is evaluated against: a span with its resource and scope, or (the
/// resource context) a resource alone.
pub struct SpanContext<'a> {
    pub resource: &'a Resource,
    pub scope: &'a Scope,
    pub span: Option<&'a Span>,
}

/// Which telemetry a condition or statement reads: OTTL's `span` or `resource` context. In the
/// resource context `attributes` are the resource's and span paths do not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Span,
    Resource,
}

impl Condition {
    /// Parses one condition of the span context; the error names what could not be read.
    pub fn parse(text: &str) -> Result<Condition, String> {
        Self::parse_in(text, Context::Span)
    }

    /// Parses one condition of `context`.
    pub fn parse_in(text: &str, context: Context) -> Result<Condition, String> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            at: 0,
            context,
        };
        let c = p.or()?;
        match p.tokens.get(p.at) {
            None => Ok(c),
            Some(t) => Err(format!(
                "unexpected {} after a whole condition",
                t.describe()
            )),
        }
    }

    /// Whether the condition holds; `Err` when a converter in it failed on this item.
    pub fn eval(&self, cx: &SpanContext<'_>) -> Result<bool, String> {
        Ok(match self {
            Condition::Or(a, b) => a.eval(cx)? || b.eval(cx)?,
            Condition::And(a, b) => a.eval(cx)? && b.eval(cx)?,
            Condition::Not(c) => !c.eval(cx)?,
            Condition::Literal(b) => *b,
            Condition::Compare(a, op, b) => compare(&a.value(cx)?, *op, &b.value(cx)?),
            Condition::Holds(call) => call.value(cx)? == Value::Bool(true),
            Condition::IsMatch(target, re) => match target.value(cx)? {
                Value::Str(s) => re.is_match(&s),
                Value::Int(i) => re.is_match(&i.to_string()),
                Value::Float(f) => re.is_match(&f.to_string()),
                Value::Bool(b) => re.is_match(if b { "true" } else { "false" }),
                Value::Nil | Value::Other(_) => false,
            },
        })
    }
}

impl Operand {
    fn value(&self, cx: &SpanContext<'_>) -> Result<Value, String> {
        Ok(match self {
            Operand::Value(v) => v.clone(),
            Operand::Path(p) => p.value(cx),
            Operand::Call(c) => c.eval(cx)?,
            Operand::List(items) => {
                let mut list = Vec::with_capacity(items.len());
                for item in items {
                    match item.value(cx)? {
                        Value::Nil => {}
                        Value::Str(s) => list.push(AnyValue::String(s)),
                        Value::Int(i) => list.push(AnyValue::Int(i)),
                        Value::Float(f) => list.push(AnyValue::Double(f)),
                        Value::Bool(b) => list.push(AnyValue::Bool(b)),
                        Value::Other(v) => list.push(v),
                    }
                }
                Value::Other(AnyValue::Array(list))
            }
        })
    }
}

impl Path {
    fn value(&self, cx: &SpanContext<'_>) -> Value {
        match self {
            Path::ResourceAttribute(k) => return attribute(&cx.resource.attributes, k),
            Path::ScopeName => return Value::Str(cx.scope.name.clone()),
            Path::ScopeVersion => return Value::Str(cx.scope.version.clone()),
            _ => {}
        }
        // The span paths exist only in the span context (the parser sees to it).
        let Some(s) = cx.span else {
            return Value::Nil;
        };
        match self {
            Path::Name => Value::Str(s.name.clone()),
            Path::Kind => Value::Int(s.kind as i64),
            Path::StatusCode => Value::Int(s.status.code as i64),
            Path::StatusMessage => Value::Str(s.status.message.clone()),
            Path::Attribute(k) => attribute(&s.attributes, k),
            Path::ResourceAttribute(_) | Path::ScopeName | Path::ScopeVersion => Value::Nil,
            Path::TraceId => Value::Str(s.trace_id.to_string()),
            Path::SpanId => Value::Str(s.span_id.to_string()),
            Path::ParentSpanId => {
                Value::Str(s.parent_span_id.map(|p| p.to_string()).unwrap_or_default())
            }
            Path::TraceState => Value::Str(s.trace_state.clone()),
            Path::Start => Value::Int(i64::try_from(s.start_unix_nano).unwrap_or(i64::MAX)),
            Path::End => Value::Int(i64::try_from(s.end_unix_nano).unwrap_or(i64::MAX)),
        }
    }
}

fn attribute(attrs: &[KeyValue], key: &str) -> Value {
    match attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value) {
        None => Value::Nil,
        Some(AnyValue::String(s)) => Value::Str(s.clone()),
        Some(AnyValue::Int(i)) => Value::Int(*i),
        Some(AnyValue::Double(d)) => Value::Float(*d),
        Some(AnyValue::Bool(b)) => Value::Bool(*b),
        Some(other) => Value::Other(other.clone()),
    }
}

fn compare(a: &Value, op: Op, b: &Value) -> bool {
    let order = match (a, b) {
        (Value::Nil, Value::Nil) => Some(Ordering::Equal),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Bool(x), Value::Bool(y)) => {
            return match op {
                Op::Eq => x == y,
                Op::Ne => x != y,
                _ => false,
            }
        }
        (Value::Other(x), Value::Other(y)) => {
            return match op {
                Op::Eq => x == y,
                Op::Ne => x != y,
                _ => false,
            }
        }
        _ => None,
    };
    match (order, op) {
        (Some(o), Op::Eq) => o == Ordering::Equal,
        (Some(o), Op::Ne) => o != Ordering::Equal,
        (Some(o), Op::Lt) => o == Ordering::Less,
        (Some(o), Op::Le) => o != Ordering::Greater,
        (Some(o), Op::Gt) => o == Ordering::Greater,
        (Some(o), Op::Ge) => o != Ordering::Less,
        // Different types (or NaN): unequal, and not ordered.
        (None, Op::Ne) => true,
        (None, _) => false,
    }
}

// ---------------------------------------------------------------- lexing

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => format!("`{s}`"),
            Token::Str(s) => format!("string {s:?}"),
            Token::Int(i) => format!("number {i}"),
            Token::Float(f) => format!("number {f}"),
            Token::Op(op) => format!("operator {op:?}"),
            Token::LParen => "`(`".into(),
            Token::RParen => "`)`".into(),
            Token::LBracket => "`[`".into(),
            Token::RBracket => "`]`".into(),
            Token::Comma => "`,`".into(),
            Token::Dot => "`.`".into(),
        }
    }
}

fn lex(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' | ',' | '.' => {
                chars.next();
                out.push(match c {
                    '(' => Token::LParen,
                    ')' => Token::RParen,
                    '[' => Token::LBracket,
                    ']' => Token::RBracket,
                    ',' => Token::Comma,
                    _ => Token::Dot,
                });
            }
            '=' | '!' | '<' | '>' => {
                chars.next();
                let eq = chars.next_if(|&(_, n)| n == '=').is_some();
                out.push(Token::Op(match (c, eq) {
                    ('=', true) => Op::Eq,
                    ('!', true) => Op::Ne,
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    ('>', true) => Op::Ge,
                    _ => return Err(format!("`{c}` at {i} is not an operator (== != < <= > >=)")),
                }));
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("the string starting at {i} is not closed")),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, e @ ('"' | '\\'))) => s.push(e),
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((j, e)) => return Err(format!("unknown escape `\\{e}` at {j}")),
                            None => {
                                return Err(format!("the string starting at {i} is not closed"))
                            }
                        },
                        Some((_, ch)) => s.push(ch),
                    }
                }
                out.push(Token::Str(s));
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let mut s = String::new();
                while let Some((_, d)) = chars.next_if(|&(_, d)| {
                    d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E' | '-' | '+')
                }) {
                    s.push(d);
                }
                out.push(if let Ok(n) = s.parse::<i64>() {
                    Token::Int(n)
                } else if let Ok(f) = s.parse::<f64>() {
                    Token::Float(f)
                } else {
                    return Err(format!("`{s}` at {i} is not a number"));
                });
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut s = String::new();
                while let Some((_, d)) = chars.next_if(|&(_, d)| d.is_alphanumeric() || d == '_') {
                    s.push(d);
                }
                out.push(Token::Ident(s));
            }
            other => return Err(format!("unexpected `{other}` at {i}")),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- parsing

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    context: Context,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, want: Token) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            Some(t) => Err(format!(
                "expected {}, found {}",
                want.describe(),
                t.describe()
            )),
            None => Err(format!("expected {} at the end", want.describe())),
        }
    }

    fn or(&mut self) -> Result<Condition, String> {
        let mut c = self.and()?;
        while self.keyword("or") {
            c = Condition::Or(Box::new(c), Box::new(self.and()?));
        }
        Ok(c)
    }

    fn and(&mut self) -> Result<Condition, String> {
        let mut c = self.not()?;
        while self.keyword("and") {
            c = Condition::And(Box::new(c), Box::new(self.not()?));
        }
        Ok(c)
    }

    fn not(&mut self) -> Result<Condition, String> {
        if self.keyword("not") {
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.term()
    }

    fn term(&mut self) -> Result<Condition, String> {
        if self.peek() == Some(&Token::LParen) {
            self.at += 1;
            let c = self.or()?;
            self.expect(Token::RParen)?;
            return Ok(c);
        }
        if matches!(self.peek(), Some(Token::Ident(f)) if f == "IsMatch")
            && self.tokens.get(self.at + 1) == Some(&Token::LParen)
        {
            return self.is_match();
        }
        let left = self.operand()?;
        match self.peek() {
            Some(Token::Op(op)) => {
                let op = *op;
                self.at += 1;
                let right = self.operand()?;
                Ok(Condition::Compare(left, op, right))
            }
            _ => match left {
                Operand::Value(Value::Bool(b)) => Ok(Condition::Literal(b)),
                Operand::Call(c) if c.is_predicate() => Ok(Condition::Holds(Operand::Call(c))),
                _ => Err(
                    "a condition needs a comparison (==, !=, <, <=, >, >=), IsMatch, a boolean converter, true or false"
                        .into(),
                ),
            },
        }
    }

    fn is_match(&mut self) -> Result<Condition, String> {
        self.at += 1; // IsMatch
        self.expect(Token::LParen)?;
        let target = self.operand()?;
        self.expect(Token::Comma)?;
        let pattern = match self.next() {
            Some(Token::Str(p)) => p,
            Some(t) => {
                return Err(format!(
                    "IsMatch's pattern must be a string, found {}",
                    t.describe()
                ))
            }
            None => return Err("IsMatch needs a pattern".into()),
        };
        let re =
            regex::Regex::new(&pattern).map_err(|e| format!("IsMatch pattern {pattern:?}: {e}"))?;
        self.expect(Token::RParen)?;
        Ok(Condition::IsMatch(target, re))
    }

    /// A converter's call, its name already read: `(` arguments `)`.
    fn call(&mut self, name: &str) -> Result<Operand, String> {
        if name == "IsMatch" {
            return Err("IsMatch is a condition of its own here, not a value".into());
        }
        self.expect(Token::LParen)?;
        let mut args = Vec::new();
        if self.peek() == Some(&Token::RParen) {
            self.at += 1;
        } else {
            loop {
                args.push(self.operand()?);
                match self.next() {
                    Some(Token::Comma) => {}
                    Some(Token::RParen) => break,
                    Some(t) => {
                        return Err(format!(
                            "expected `,` or `)` in {name}(...), found {}",
                            t.describe()
                        ))
                    }
                    None => return Err(format!("{name}( is not closed")),
                }
            }
        }
        Call::new(name, args, self.context == Context::Span).map(|c| Operand::Call(Box::new(c)))
    }

    /// A list literal, its `[` already read.
    fn list(&mut self) -> Result<Operand, String> {
        let mut items = Vec::new();
        if self.peek() == Some(&Token::RBracket) {
            self.at += 1;
            return Ok(Operand::List(items));
        }
        loop {
            items.push(self.operand()?);
            match self.next() {
                Some(Token::Comma) => {}
                Some(Token::RBracket) => return Ok(Operand::List(items)),
                Some(t) => {
                    return Err(format!(
                        "expected `,` or `]` in a list, found {}",
                        t.describe()
                    ))
                }
                None => return Err("a list `[` is not closed".into()),
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.next() {
            Some(Token::Str(s)) => Ok(Operand::Value(Value::Str(s))),
            Some(Token::Int(i)) => Ok(Operand::Value(Value::Int(i))),
            Some(Token::Float(f)) => Ok(Operand::Value(Value::Float(f))),
            Some(Token::LBracket) => self.list(),
            Some(Token::Ident(word)) if self.peek() == Some(&Token::LParen) => self.call(&word),
            Some(Token::Ident(word)) => match word.as_str() {
                "true" => Ok(Operand::Value(Value::Bool(true))),
                "false" => Ok(Operand::Value(Value::Bool(false))),
                "nil" => Ok(Operand::Value(Value::Nil)),
                w if w.chars().all(|c| c.is_ascii_uppercase() || c == '_') => enum_value(w)
                    .map(|i| Operand::Value(Value::Int(i)))
                    .ok_or_else(|| format!("unknown enum {w}")),
                _ => self.path(word).map(Operand::Path),
            },
            Some(t) => Err(format!(
                "expected a value or a path, found {}",
                t.describe()
            )),
            None => Err("expected a value or a path at the end".into()),
        }
    }

    /// A path, its first word already read.
    fn path(&mut self, first: String) -> Result<Path, String> {
        let mut words = vec![first];
        let mut key = None;
        loop {
            match self.peek() {
                Some(Token::Dot) => {
                    self.at += 1;
                    match self.next() {
                        Some(Token::Ident(w)) => words.push(w),
                        _ => {
                            return Err(format!(
                                "`{}.` must be followed by a name",
                                words.join(".")
                            ))
                        }
                    }
                }
                Some(Token::LBracket) => {
                    self.at += 1;
                    match self.next() {
                        Some(Token::Str(k)) => key = Some(k),
                        _ => return Err(format!("`{}[` takes a string key", words.join("."))),
                    }
                    self.expect(Token::RBracket)?;
                    if self.peek() == Some(&Token::LBracket) {
                        return Err("nested keys (`[\"a\"][\"b\"]`) are not built".into());
                    }
                    break;
                }
                _ => break,
            }
        }
        if words.first().map(String::as_str) == Some("span") && words.len() > 1 {
            if self.context == Context::Resource {
                return Err(format!(
                    "`{}` is a span path, not one of the resource context",
                    words.join(".")
                ));
            }
            words.remove(0);
        }
        let joined = words.join(".");
        if self.context == Context::Resource {
            return match (joined.as_str(), key) {
                ("attributes" | "resource.attributes", Some(k)) => Ok(Path::ResourceAttribute(k)),
                (other, _) => Err(format!(
                    "the path `{other}` is not built in the resource context (attributes[\"k\"] is)"
                )),
            };
        }
        Ok(match (joined.as_str(), key) {
            ("attributes", Some(k)) => Path::Attribute(k),
            ("resource.attributes", Some(k)) => Path::ResourceAttribute(k),
            (_, Some(_)) => return Err(format!("`{joined}` takes no key")),
            ("name", None) => Path::Name,
            ("kind", None) => Path::Kind,
            ("status.code", None) => Path::StatusCode,
            ("status.message", None) => Path::StatusMessage,
            ("instrumentation_scope.name" | "scope.name", None) => Path::ScopeName,
            ("instrumentation_scope.version" | "scope.version", None) => Path::ScopeVersion,
            ("trace_id.string", None) => Path::TraceId,
            ("span_id.string", None) => Path::SpanId,
            ("parent_span_id.string", None) => Path::ParentSpanId,
            ("trace_state", None) => Path::TraceState,
            ("start_time_unix_nano", None) => Path::Start,
            ("end_time_unix_nano", None) => Path::End,
            (other, None) => {
                return Err(format!(
                    "the path `{other}` is not built (span paths: name, kind, status.code, \
                     status.message, attributes[\"k\"], resource.attributes[\"k\"], \
                     instrumentation_scope.name/version, trace_id.string, span_id.string, \
                     parent_span_id.string, trace_state, start_time_unix_nano, \
                     end_time_unix_nano)"
                ))
            }
        })
    }
}

fn enum_value(word: &str) -> Option<i64> {
    Some(match word {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{SpanKind, Status, StatusCode};

    fn span() -> (Resource, Scope, Span) {
        let resource = Resource {
            attributes: vec![KeyValue::new("service.name", "checkout")],
            ..Default::default()
        };
        let scope = Scope {
            name: "io.opentelemetry.http".into(),
            ..Default::default()
        };
        let span = Span {
            name: "GET /healthz".into(),
            kind: SpanKind::Server,
            status: Status {
                code: StatusCode::Error,
                message: "boom".into(),
            },
            attributes: vec![
                KeyValue::new("http.target", "/healthz"),
                KeyValue::new("http.status_code", AnyValue::Int(503)),
                KeyValue::new("ratio", AnyValue::Double(0.5)),
                KeyValue::new("retry", AnyValue::Bool(false)),
            ],
            ..Default::default()
        };
        (resource, scope, span)
    }

    fn eval(text: &str) -> bool {
        let (resource, scope, span) = span();
        let cx = SpanContext {
            resource: &resource,
            scope: &scope,
            span: Some(&span),
        };
        Condition::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .eval(&cx)
            .unwrap_or_else(|e| panic!("{text} failed: {e}"))
    }

    #[test]
    fn conditions_read_the_span_as_ottl_does() {
        for (text, want) in [
            (r#"attributes["http.target"] == "/healthz""#, true),
            (r#"span.attributes["http.target"] != "/healthz""#, false),
            (r#"attributes["missing"] == nil"#, true),
            (r#"attributes["missing"] != nil"#, false),
            (r#"attributes["missing"] == "x""#, false),
            (r#"attributes["missing"] != "x""#, true),
            (r#"attributes["http.status_code"] >= 500"#, true),
            (r#"attributes["http.status_code"] < 503.5"#, true),
            (r#"attributes["http.status_code"] < 502.5"#, false),
            (r#"attributes["http.status_code"] == "503""#, false),
            (r#"attributes["http.status_code"] != "503""#, true),
            (r#"attributes["http.status_code"] > "5""#, false),
            (r#"attributes["ratio"] == 0.5"#, true),
            (r#"attributes["retry"] == false"#, true),
            (r#"attributes["retry"] < true"#, false),
            ("kind == SPAN_KIND_SERVER", true),
            ("kind == 2", true),
            (
                "status.code == STATUS_CODE_ERROR and status.message == \"boom\"",
                true,
            ),
            (r#"resource.attributes["service.name"] == "checkout""#, true),
            (
                r#"instrumentation_scope.name == "io.opentelemetry.http""#,
                true,
            ),
            (r#"name < "H" and name > "A""#, true),
            (r#"IsMatch(name, "^GET /health")"#, true),
            (
                r#"IsMatch(attributes["http.status_code"], "^5\\d\\d$")"#,
                true,
            ),
            (r#"IsMatch(attributes["missing"], ".*")"#, false),
            (r#"not IsMatch(name, "^POST")"#, true),
            (r#"name == "x" or kind == SPAN_KIND_CLIENT"#, false),
            (
                r#"name == "x" or (kind == SPAN_KIND_SERVER and not false)"#,
                true,
            ),
            (r#"name == "x" and kind == SPAN_KIND_SERVER or true"#, true),
            ("true", true),
            ("parent_span_id.string == \"\"", true),
        ] {
            assert_eq!(eval(text), want, "{text}");
        }
    }

    #[test]
    fn converters_compute_as_ottls() {
        for (text, want) in [
            (r#"Len(name) == 12"#, true),
            (r#"Len(Split("a,b,,c", ",")) == 4"#, true),
            (r#"ToLowerCase(name) == "get /healthz""#, true),
            (
                r#"ToUpperCase(attributes["http.target"]) == "/HEALTHZ""#,
                true,
            ),
            (
                r#"Concat([name, kind, attributes["retry"], attributes["ratio"], attributes["missing"], Split("x", ",")], "|") == "GET /healthz|2|false|0.5|<nil>""#,
                true,
            ),
            (r#"Concat([], "-") == "" "#, true),
            (r#"Substring(name, 4, 8) == "/healthz""#, true),
            (r#"Substring("héllo", 0, 2, true) == "h""#, true),
            (r#"Int("12") == 12"#, true),
            (r#"Int(" 7 ") == 7"#, true),
            (r#"Int(attributes["ratio"]) == 0"#, true),
            (r#"Int(-2.9) == -2"#, true),
            (r#"Int("1.5") == nil"#, true),
            (r#"Int(attributes["retry"]) == 0"#, true),
            (r#"Double("2.5") == 2.5"#, true),
            (r#"Double(attributes["http.status_code"]) == 503.0"#, true),
            (r#"Double("x") == nil"#, true),
            (r#"String(attributes["ratio"]) == "0.5""#, true),
            (r#"String(attributes["http.status_code"]) == "503""#, true),
            (r#"String(attributes["missing"]) == nil"#, true),
            (
                r#"SHA1("abc") == "a9993e364706816aba3e25717850c26c9cd0d89d""#,
                true,
            ),
            (
                r#"SHA256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad""#,
                true,
            ),
            (r#"SHA256("") == "" "#, true),
            (r#"HasPrefix(name, "GET ")"#, true),
            (r#"HasSuffix(name, "GET")"#, false),
            (r#"not HasSuffix(name, "x") and IsRootSpan()"#, true),
            (r#"Trim("  a b  ") == "a b""#, true),
            (r#"Trim("!!a!!", "!") == "a""#, true),
            (r#"TrimPrefix(name, "GET ") == "/healthz""#, true),
            (r#"TrimSuffix(name, "nope") == name"#, true),
            (
                r#"IsString(name) and IsInt(attributes["http.status_code"])"#,
                true,
            ),
            (
                r#"IsDouble(attributes["ratio"]) and IsBool(attributes["retry"])"#,
                true,
            ),
            (
                r#"IsString(attributes["missing"]) or IsMap(name) or IsList(name)"#,
                false,
            ),
            (r#"IsList(Split(name, " "))"#, true),
            (r#"IsMatch(ToLowerCase(name), "^get ")"#, true),
            // FNV-1a 64 (Go's hash/fnv), as a signed int64: its published vectors.
            (r#"FNV("a") == -5808556873153909620"#, true),
            (r#"FNV("foobar") == -8821353812377114648"#, true),
            (r#"FNV("") == "" "#, true),
            (
                r#"Format("%s %03d %.2f %v", [name, attributes["http.status_code"], attributes["ratio"], attributes["retry"]]) == "GET /healthz 503 0.50 false""#,
                true,
            ),
            (
                r#"Format("%d", [name]) == "%!d(string=GET /healthz)""#,
                true,
            ),
            (
                r#"IsMap(ParseJSON("{\"a\": 1, \"b\": [true, null, \"x\"], \"c\": null}"))"#,
                true,
            ),
            (r#"Len(ParseJSON("{\"a\": 1, \"c\": null}")) == 1"#, true),
            (r#"IsList(ParseJSON("[1, 2]"))"#, true),
        ] {
            assert_eq!(eval(text), want, "{text}");
        }
    }

    #[test]
    fn a_converter_given_the_wrong_type_fails_the_condition() {
        let (resource, scope, span) = span();
        let cx = SpanContext {
            resource: &resource,
            scope: &scope,
            span: Some(&span),
        };
        for (text, why) in [
            (
                r#"Len(attributes["http.status_code"]) > 0"#,
                "Len takes a string, list or map, not an int",
            ),
            (
                r#"ToLowerCase(attributes["missing"]) == "x""#,
                "ToLowerCase takes a string, not nil",
            ),
            (r#"Substring(name, 10, 5) == "x""#, "run past the end"),
            (r#"Substring(name, -1, 5) == "x""#, "must not be negative"),
            (
                r#"HasPrefix(kind, "x")"#,
                "HasPrefix takes a string, not an int",
            ),
            // `or` does not hide a failure on its left.
            (r#"Len(kind) == 1 or true"#, "Len takes"),
            (r#"IsMap(ParseJSON("{nope"))"#, "ParseJSON: not JSON"),
            (r#"IsMap(ParseJSON("3"))"#, "a JSON object or array"),
            (r#"FNV(kind) == 1"#, "FNV takes a string, not an int"),
        ] {
            let err = Condition::parse(text).unwrap().eval(&cx).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(Condition::parse_in("IsRootSpan()", Context::Resource)
            .unwrap_err()
            .contains("span context only"));
    }

    #[test]
    fn what_is_not_built_or_not_ottl_is_named() {
        for (text, named) in [
            (r#"attributes["a"] = "b""#, "not an operator"),
            (r#"attributes["a"]["b"] == 1"#, "nested keys"),
            (
                r#"Base64Decode(name) == "x""#,
                "converter Base64Decode is not built",
            ),
            (r#"Len(name, 2) > 3"#, "Len takes 1 argument, given 2"),
            (
                r#"Substring(name, 1) == "x""#,
                "Substring takes 3 or 4 arguments, given 2",
            ),
            (r#"Len(name)"#, "needs a comparison"),
            (r#"Concat(name, "-") == "x""#, "Concat takes a list"),
            (
                r#"Format("%s", name) == "x""#,
                "Format takes a list of values second",
            ),
            (r#"Len(name == 3"#, "expected `,` or `)`"),
            (r#"links == nil"#, "path `links` is not built"),
            (r#"name == "open"#, "not closed"),
            (r#"name == SPAN_KIND_SERVR"#, "unknown enum SPAN_KIND_SERVR"),
            (r#"IsMatch(name, "(")"#, "IsMatch pattern"),
            (r#"name"#, "needs a comparison"),
            (r#"name == "a" "b""#, "after a whole condition"),
            (r#"(name == "a""#, "expected `)`"),
            (r#"name["k"] == 1"#, "takes no key"),
        ] {
            let e = Condition::parse(text)
                .err()
                .unwrap_or_else(|| panic!("{text} parsed"));
            assert!(e.contains(named), "{text}: {e}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    /// Config text is outside input: whatever it holds, parsing answers (an error or a
    /// condition), never panics. Pieces of real conditions, cut and spliced at random.
    #[test]
    fn any_text_parses_or_is_refused_without_a_panic() {
        let pieces = [
            "attributes[",
            "\"k\"",
            "]",
            " == ",
            " != ",
            " < ",
            ">=",
            " and ",
            " or ",
            "not ",
            "(",
            ")",
            "IsMatch(",
            ",",
            "name",
            "span.",
            "resource.attributes",
            "kind",
            "SPAN_KIND_SERVER",
            "1",
            "-2.5",
            "1e3",
            "nil",
            "true",
            "\"unterminated",
            "\\",
            "[\"a\"]",
            "set(",
            "delete_key(",
            "limit(",
            " where ",
            "[",
            "\"x\", \"y\"",
            "=",
            "!",
            "é",
            "\u{0}",
            ".",
            "..",
            "-",
            "+",
            "9999999999999999999999",
        ];
        let mut x: u64 = 0x5eed;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let n = (next() % 9) as usize;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            for context in [Context::Span, Context::Resource] {
                // What parses also runs, on a span with text, numbers and a multi-byte name.
                let mut resource = Resource {
                    attributes: vec![KeyValue::new("k", "välue"), KeyValue::new("n", 3i64)],
                    ..Default::default()
                };
                let mut span = Span {
                    name: "é名".into(),
                    attributes: resource.attributes.clone(),
                    ..Default::default()
                };
                let scope = Scope::default();
                if let Ok(c) = Condition::parse_in(&text, context) {
                    let cx = SpanContext {
                        resource: &resource,
                        scope: &scope,
                        span: Some(&span),
                    };
                    let _ = c.eval(&cx);
                }
                if let Ok(st) = Statement::parse(&text, context) {
                    let span = (context == Context::Span).then_some(&mut span);
                    let _ = st.apply(&mut resource, &scope, span);
                }
            }
        }
    }
}
