//! RFC 3339 timestamps (`2024-05-01T12:00:00.5+02:00`), as api_v3's `query.start_time_min`,
//! `query.start_time_max`, `start_time` and `end_time` take them.
//!
//! Jaeger parses these with Go's `time.RFC3339Nano` layout, which accepts any UTC offset and an
//! optional fraction of up to nine digits. `humantime` only reads the `Z` form, so this small
//! parser exists to accept what Jaeger clients send.

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an RFC 3339 timestamp ({reason})")]
pub struct TimestampError {
    pub text: String,
    pub reason: &'static str,
}

/// Parses an RFC 3339 timestamp into Unix nanoseconds. Times before 1970 are refused.
pub fn parse_rfc3339_nanos(text: &str) -> Result<u64, TimestampError> {
    let err = |reason| TimestampError {
        text: text.to_owned(),
        reason,
    };
    let b = text.as_bytes();
    if b.len() < 20 {
        return Err(err("too short"));
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (Some(year), Some(month), Some(day)) = (num(0..4), num(5..7), num(8..10)) else {
        return Err(err("bad date"));
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(err("bad date separators"));
    }
    let (Some(hour), Some(minute), Some(second)) = (num(11..13), num(14..16), num(17..19)) else {
        return Err(err("bad time"));
    };
    if b[13] != b':' || b[16] != b':' {
        return Err(err("bad time separators"));
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(err("field out of range"));
    }
    let mut pos = 19;
    let mut nanos: i64 = 0;
    if b.get(pos) == Some(&b'.') {
        let digits = b[pos + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 || digits > 9 {
            return Err(err("fraction must have 1 to 9 digits"));
        }
        let frac = num(pos + 1..pos + 1 + digits).ok_or_else(|| err("bad fraction"))?;
        nanos = frac * 10i64.pow(9 - digits as u32);
        pos += 1 + digits;
    }
    let offset_secs = match &text[pos..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && zone.as_bytes()[3] == b':' =>
        {
            let (Some(h), Some(m)) = (num(pos + 1..pos + 3), num(pos + 4..pos + 6)) else {
                return Err(err("bad offset"));
            };
            if h > 23 || m > 59 {
                return Err(err("offset out of range"));
            }
            let secs = h * 3600 + m * 60;
            if zone.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
        _ => return Err(err("missing or bad zone")),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    if secs < 0 {
        return Err(err("before 1970"));
    }
    u64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(1_000_000_000))
        .and_then(|n| n.checked_add(nanos as u64))
        .ok_or_else(|| err("out of range"))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_nanos("2024-05-01T12:00:00Z"),
            Ok(1_714_564_800_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-05-01T14:00:00.5+02:00"),
            Ok(1_714_564_800_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-05-01T11:30:00.000000001-00:30"),
            Ok(1_714_564_800_000_000_001)
        );
        assert_eq!(
            parse_rfc3339_nanos("2000-02-29T00:00:00z"),
            Ok(951_782_400_000_000_000)
        );
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-13-01T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00.1234567891Z",
            "2024-05-01T12:00:00+2:00",
            "1969-12-31T23:59:59Z",
            "2024-05-01T12:00:00+25:00",
            "２０２４-05-01T12:00:00Z",
            "2024/05/01T12:00:00Z",
        ] {
            assert!(parse_rfc3339_nanos(bad).is_err(), "{bad:?} accepted");
        }
    }
}
