//! Go's `fmt.Sprintf`, as OTTL's `Format` converter calls it, for OTTL's values: the verbs
//! `%v %s %d %f %F %e %E %g %G %x %X %o %b %c %q %t %%` with the flags `+ - 0 space`, width
//! and precision, and Go's way of saying what went wrong inside the result rather than failing:
//! `%!d(string=abc)` for a value the verb does not take, `%!d(MISSING)` for a missing
//! argument, `%!(EXTRA int64=2)` for arguments left over, `%!(NOVERB)` for a lone `%` at the end.

use std::fmt::Write as _;

use model::AnyValue;

use super::Value;

#[derive(Default)]
struct Spec {
    plus: bool,
    minus: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// `format` with `args`, as Go's `fmt.Sprintf` writes them.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '+' => spec.plus = true,
                '-' => spec.minus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                _ => break,
            }
            chars.next();
        }
        spec.width = number(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.precision = Some(number(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        match one(verb, &spec, arg) {
            Some(text) => pad(&mut out, &text, &spec, numeric(verb, arg)),
            None => {
                let _ = write!(out, "%!{verb}({})", typed(arg));
            }
        }
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..].iter().map(typed).collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn number(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
        chars.next();
    }
    n
}

/// Whether zero padding goes after the sign (numbers) rather than being spaces.
fn numeric(verb: char, v: &Value) -> bool {
    matches!(v, Value::Int(_) | Value::Float(_)) && !matches!(verb, 'c' | 'q' | 's' | 'v' | 't')
        || matches!((verb, v), ('v', Value::Int(_) | Value::Float(_)))
}

fn pad(out: &mut String, text: &str, spec: &Spec, numeric: bool) {
    let len = text.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        out.push_str(text);
    } else if spec.minus {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', width - len));
    } else if spec.zero && numeric {
        let (sign, digits) = match text.chars().next() {
            Some(s @ ('-' | '+' | ' ')) => (Some(s), &text[1..]),
            _ => (None, text),
        };
        out.extend(sign);
        out.extend(std::iter::repeat_n('0', width - len));
        out.push_str(digits);
    } else {
        out.extend(std::iter::repeat_n(' ', width - len));
        out.push_str(text);
    }
}

/// The text for one verb and argument (unpadded); `None` when the verb does not take it.
fn one(verb: char, spec: &Spec, arg: &Value) -> Option<String> {
    Some(match (verb, arg) {
        ('v', Value::Float(f)) => float(*f, 'g', spec),
        ('v', Value::Int(i)) => int(*i, 10, spec),
        ('v', other) => truncate(plain(other), spec),
        ('s', Value::Str(s)) => truncate(s.clone(), spec),
        ('s', Value::Other(AnyValue::Bytes(b))) => {
            truncate(String::from_utf8_lossy(b).into(), spec)
        }
        ('d', Value::Int(i)) => int(*i, 10, spec),
        ('b', Value::Int(i)) => int(*i, 2, spec),
        ('o', Value::Int(i)) => int(*i, 8, spec),
        ('x', Value::Int(i)) => int(*i, 16, spec),
        ('X', Value::Int(i)) => int(*i, 16, spec).to_uppercase(),
        ('x', Value::Str(s)) => hex::encode(s.as_bytes()),
        ('X', Value::Str(s)) => hex::encode_upper(s.as_bytes()),
        ('x', Value::Other(AnyValue::Bytes(b))) => hex::encode(b),
        ('X', Value::Other(AnyValue::Bytes(b))) => hex::encode_upper(b),
        ('c', Value::Int(i)) => u32::try_from(*i)
            .ok()
            .and_then(char::from_u32)
            .unwrap_or('\u{fffd}')
            .to_string(),
        ('q', Value::Str(s)) => quote(s),
        ('q', Value::Int(i)) => {
            let c = u32::try_from(*i).ok().and_then(char::from_u32);
            format!("'{}'", c.unwrap_or('\u{fffd}'))
        }
        ('t', Value::Bool(b)) => b.to_string(),
        ('e' | 'E' | 'f' | 'F' | 'g' | 'G', Value::Float(f)) => {
            let text = float(*f, verb.to_ascii_lowercase(), spec);
            if verb.is_ascii_uppercase() {
                text.to_uppercase()
            } else {
                text
            }
        }
        _ => return None,
    })
}

/// `%v` of a value that is not a number.
fn plain(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".to_owned(),
        Value::Str(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float(*f, 'g', &Spec::default()),
        Value::Other(AnyValue::Bytes(b)) => format!("{b:?}"),
        Value::Other(v) => v.to_string(),
    }
}

fn truncate(s: String, spec: &Spec) -> String {
    match spec.precision {
        Some(p) => s.chars().take(p).collect(),
        None => s,
    }
}

/// Go's `%!verb(type=value)` description of an argument.
fn typed(v: &Value) -> String {
    match v {
        Value::Nil => "<nil>".to_owned(),
        Value::Str(s) => format!("string={s}"),
        Value::Int(i) => format!("int64={i}"),
        Value::Float(f) => format!("float64={}", float(*f, 'g', &Spec::default())),
        Value::Bool(b) => format!("bool={b}"),
        Value::Other(AnyValue::Array(_)) => format!("pcommon.Slice={}", plain(v)),
        Value::Other(AnyValue::KvList(_)) => format!("pcommon.Map={}", plain(v)),
        Value::Other(_) => format!("[]uint8={}", plain(v)),
    }
}

fn int(i: i64, radix: u32, spec: &Spec) -> String {
    let digits = match radix {
        2 => format!("{:b}", i.unsigned_abs()),
        8 => format!("{:o}", i.unsigned_abs()),
        16 => format!("{:x}", i.unsigned_abs()),
        _ => i.unsigned_abs().to_string(),
    };
    let digits = match spec.precision {
        Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
        _ => digits,
    };
    format!("{}{digits}", sign(i < 0, spec))
}

fn sign(negative: bool, spec: &Spec) -> &'static str {
    if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

/// `%e`, `%f` and `%g` of `f` (`%g` without a precision: the shortest form, as `%v` writes).
fn float(f: f64, verb: char, spec: &Spec) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-Inf" } else { "+Inf" }.to_owned();
    }
    let body = match verb {
        'e' => exponent(&format!("{:.*e}", spec.precision.unwrap_or(6), f.abs())),
        'f' => format!("{:.*}", spec.precision.unwrap_or(6), f.abs()),
        _ => general(f.abs(), spec.precision),
    };
    format!("{}{body}", sign(f.is_sign_negative() && f != 0.0, spec))
}

/// Rust's `1.5e3` as Go writes it: `1.5e+03` (two exponent digits at least).
fn exponent(rust: &str) -> String {
    let Some((mantissa, exp)) = rust.split_once('e') else {
        return rust.to_owned();
    };
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// `%g`: scientific when the exponent is below -4 or at least the precision (6 for the
/// shortest form), else decimal; trailing zeros removed.
fn general(f: f64, precision: Option<usize>) -> String {
    let (scientific, limit) = match precision {
        None => (format!("{f:e}"), 6),
        Some(p) => {
            let p = p.max(1);
            (format!("{:.*e}", p - 1, f), p as i32)
        }
    };
    let Some((mantissa, exp)) = scientific.split_once('e') else {
        return scientific;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if exp < -4 || exp >= limit {
        exponent(&format!("{}e{exp}", trim(mantissa)))
    } else {
        match precision {
            None => format!("{f}"),
            Some(p) => {
                let decimals = (p.max(1) as i32 - 1 - exp).max(0) as usize;
                trim(&format!("{f:.decimals$}"))
            }
        }
    }
}

/// Go's `strconv.Quote`: double quotes, with `"` and `\` escaped and what does not print as
/// `\n`, `\t`, `\xNN` or `\uNNNN`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.to_owned())
    }

    #[test]
    fn verbs_flags_width_and_precision_as_go_writes_them() {
        for (format, args, want) in [
            ("%02d", vec![Value::Int(5)], "05"),
            ("%s-%d", vec![s("a"), Value::Int(7)], "a-7"),
            (
                "%5.2f|%-5s|%x|%X|%t|%%",
                vec![
                    Value::Float(3.14259),
                    s("ab"),
                    Value::Int(255),
                    s("hi"),
                    Value::Bool(true),
                ],
                " 3.14|ab   |ff|6869|true|%",
            ),
            ("%q", vec![s("a\"b\n")], "\"a\\\"b\\n\""),
            (
                "%+d|% d|%08.3f|%-4d|",
                vec![
                    Value::Int(5),
                    Value::Int(5),
                    Value::Float(-3.14259),
                    Value::Int(-2),
                ],
                "+5| 5|-003.143|-2  |",
            ),
            (
                "%v %v %v %v %v",
                vec![
                    Value::Float(0.25),
                    Value::Float(1e6),
                    Value::Float(123456.0),
                    Value::Float(0.00001),
                    Value::Nil,
                ],
                "0.25 1e+06 123456 1e-05 <nil>",
            ),
            (
                "%e|%E|%.2e",
                vec![
                    Value::Float(1234.5678),
                    Value::Float(0.5),
                    Value::Float(-1e-10),
                ],
                "1.234568e+03|5.000000E-01|-1.00e-10",
            ),
            (
                "%g|%.3g|%.3g",
                vec![
                    Value::Float(100000000.0),
                    Value::Float(3.14259),
                    Value::Float(1234.5),
                ],
                "1e+08|3.14|1.23e+03",
            ),
            (
                "%b %o %c %.3d %5.1s|",
                vec![
                    Value::Int(5),
                    Value::Int(8),
                    Value::Int(65),
                    Value::Int(7),
                    s("xyz"),
                ],
                "101 10 A 007     x|",
            ),
            (
                "%v %v",
                vec![Value::Bool(false), Value::Int(-12)],
                "false -12",
            ),
        ] {
            assert_eq!(sprintf(format, &args), want, "{format}");
        }
    }

    #[test]
    fn what_goes_wrong_is_written_into_the_result_as_go_does() {
        assert_eq!(sprintf("%d", &[s("x")]), "%!d(string=x)");
        assert_eq!(sprintf("%s", &[Value::Int(5)]), "%!s(int64=5)");
        assert_eq!(sprintf("%d", &[Value::Float(0.25)]), "%!d(float64=0.25)");
        assert_eq!(sprintf("%d %d", &[Value::Int(1)]), "1 %!d(MISSING)");
        assert_eq!(
            sprintf("%d", &[Value::Int(1), Value::Int(2), s("a")]),
            "1%!(EXTRA int64=2, string=a)"
        );
        assert_eq!(sprintf("%z", &[Value::Int(1)]), "%!z(int64=1)");
        assert_eq!(sprintf("100%", &[]), "100%!(NOVERB)");
        assert_eq!(sprintf("%t", &[Value::Nil]), "%!t(<nil>)");
    }
}
