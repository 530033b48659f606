//! Go duration strings (`1.5ms`, `1h30m`, `250us`), as Jaeger's `minDuration`/`maxDuration` and
//! api_v3's `query.duration_min` take them.
//!
//! Jaeger parses these with Go's `time.ParseDuration`, so the UI and Grafana send exactly that
//! syntax: an optional sign, then one or more `<decimal><unit>` terms with units `ns`, `us`
//! (`µs`, `μs`), `ms`, `s`, `m`, `h`; a bare `0` is allowed. This module accepts the same
//! language and refuses negative results, which make no sense as a span duration bound.

use std::time::Duration;

/// Why a duration string was refused. Messages follow Go's wording so users recognise them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {text:?}")]
    UnknownUnit { unit: String, text: String },
    #[error("negative duration {0:?} is not allowed")]
    Negative(String),
}

/// Nanoseconds per unit, longest names first so `ms` is not read as `m`.
const UNITS: [(&str, u128); 9] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µ MICRO SIGN
    ("\u{3bc}s", 1_000), // μ GREEK SMALL LETTER MU
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("", 0),
];

/// Parses a Go duration string into a non-negative [`Duration`].
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.to_owned());
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    // Go caps durations at i64::MAX nanoseconds; so do we.
    let max = i64::MAX as u128;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // Integer part.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        // Optional fraction.
        let (frac_digits, after_frac) = match after_int.strip_prefix('.') {
            Some(tail) => {
                let n = tail.bytes().take_while(u8::is_ascii_digit).count();
                tail.split_at(n)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        // Unit: everything up to the next digit or '.'.
        let unit_len = after_frac
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after_frac.len(), |(i, _)| i);
        let (unit, tail) = after_frac.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(text.to_owned()));
        }
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, ns)| *ns)
            .filter(|ns| *ns > 0)
            .ok_or_else(|| DurationError::UnknownUnit {
                unit: unit.to_owned(),
                text: text.to_owned(),
            })?;
        let int_value = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse::<u128>().map_err(|_| invalid())?
        };
        let mut term = int_value.checked_mul(scale).ok_or_else(invalid)?;
        if !frac_digits.is_empty() {
            // Digits beyond nanosecond precision of an hour (13) cannot change the result.
            let kept = &frac_digits[..frac_digits.len().min(18)];
            let numerator: u128 = kept.parse().map_err(|_| invalid())?;
            let denominator = 10u128.pow(kept.len() as u32);
            term += numerator * scale / denominator;
        }
        total = total.checked_add(term).ok_or_else(invalid)?;
        if total > max {
            return Err(invalid());
        }
        rest = tail;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(text.to_owned()));
    }
    let nanos = u64::try_from(total).map_err(|_| invalid())?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(text: &str) -> u128 {
        parse_go_duration(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .as_nanos()
    }

    #[test]
    fn every_unit_parses() {
        assert_eq!(ns("7ns"), 7);
        assert_eq!(ns("7us"), 7_000);
        assert_eq!(ns("7µs"), 7_000);
        assert_eq!(ns("7μs"), 7_000);
        assert_eq!(ns("7ms"), 7_000_000);
        assert_eq!(ns("7s"), 7_000_000_000);
        assert_eq!(ns("7m"), 420_000_000_000);
        assert_eq!(ns("7h"), 25_200_000_000_000);
    }

    #[test]
    fn decimals_combinations_and_signs() {
        assert_eq!(ns("1.2ms"), 1_200_000);
        assert_eq!(ns("1h30m"), 5_400_000_000_000);
        assert_eq!(ns("1h30m15.5s"), 5_415_500_000_000);
        assert_eq!(ns(".5s"), 500_000_000);
        assert_eq!(ns("1.s"), 1_000_000_000);
        assert_eq!(ns("+2s"), 2_000_000_000);
        assert_eq!(ns("0"), 0);
        assert_eq!(ns("-0"), 0);
        assert_eq!(ns("0.000000001s"), 1);
        assert_eq!(ns("1.0000000000000000000009s"), 1_000_000_000);
        assert_eq!(ns("2562047h47m16.854775807s"), i64::MAX as u128);
    }

    #[test]
    fn bad_input_is_refused_with_go_wording() {
        assert_eq!(
            parse_go_duration(""),
            Err(DurationError::Invalid(String::new()))
        );
        assert_eq!(
            parse_go_duration("5"),
            Err(DurationError::MissingUnit("5".into()))
        );
        assert_eq!(
            parse_go_duration("5x"),
            Err(DurationError::UnknownUnit {
                unit: "x".into(),
                text: "5x".into()
            })
        );
        assert!(matches!(
            parse_go_duration("."),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("ms"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("-1s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_go_duration("2562048h"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::Invalid(_))
        ));
        assert!(matches!(
            parse_go_duration("1s 2s"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert_eq!(
            parse_go_duration("5x").unwrap_err().to_string(),
            r#"time: unknown unit "x" in duration "5x""#
        );
    }
}
