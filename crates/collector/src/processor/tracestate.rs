//! The W3C `tracestate` header and OpenTelemetry's `ot=` entry in it (`th` rejection threshold,
//! `rv` randomness), as consistent probability sampling reads and writes them.

/// 2^56: thresholds and randomness are 56-bit values; this threshold never samples.
pub const NEVER: u64 = 1 << 56;
/// The largest randomness value, used when none is known (sampled by every threshold but NEVER).
pub const MAX_RANDOMNESS: u64 = NEVER - 1;

#[derive(Debug, PartialEq, Eq)]
pub struct TraceStateError(pub String);

/// A parsed tracestate: the `ot` entry's parts, and every other vendor entry kept verbatim.
#[derive(Debug, Default, PartialEq)]
pub struct TraceState {
    pub threshold: Option<u64>,
    pub randomness: Option<u64>,
    /// `ot` sub-keys other than th/rv, kept in order.
    ot_extra: Vec<String>,
    others: Vec<String>,
}

impl TraceState {
    pub fn parse(raw: &str) -> Result<Self, TraceStateError> {
        let mut ts = TraceState::default();
        let mut seen_ot = false;
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| TraceStateError(format!("tracestate entry {entry:?} has no '='")))?;
            if key.is_empty() || key.len() > 256 || value.len() > 256 {
                return Err(TraceStateError(format!(
                    "tracestate entry {entry:?} is malformed"
                )));
            }
            if key != "ot" {
                ts.others.push(entry.to_owned());
                continue;
            }
            if seen_ot {
                return Err(TraceStateError("tracestate has two ot entries".into()));
            }
            seen_ot = true;
            for part in value.split(';').filter(|p| !p.is_empty()) {
                let (k, v) = part
                    .split_once(':')
                    .ok_or_else(|| TraceStateError(format!("ot value part {part:?} has no ':'")))?;
                match k {
                    "th" => ts.threshold = Some(parse_threshold(v)?),
                    "rv" => ts.randomness = Some(parse_randomness(v)?),
                    _ => ts.ot_extra.push(part.to_owned()),
                }
            }
        }
        Ok(ts)
    }

    /// Writes the tracestate back, the `ot` entry first (W3C: a modified entry moves left).
    pub fn serialize(&self) -> String {
        let mut ot = Vec::new();
        if let Some(rv) = self.randomness {
            ot.push(format!("rv:{rv:014x}"));
        }
        if let Some(th) = self.threshold.and_then(tvalue) {
            ot.push(format!("th:{th}"));
        }
        ot.extend(self.ot_extra.iter().cloned());
        let mut entries = Vec::new();
        if !ot.is_empty() {
            entries.push(format!("ot={}", ot.join(";")));
        }
        entries.extend(self.others.iter().cloned());
        entries.join(",")
    }
}

/// `th` value: 1 to 14 hex digits, the rest of the 14 implied zeros.
fn parse_threshold(v: &str) -> Result<u64, TraceStateError> {
    if v.is_empty() || v.len() > 14 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TraceStateError(format!("th:{v} is not 1-14 hex digits")));
    }
    let n = u64::from_str_radix(v, 16).map_err(|e| TraceStateError(e.to_string()))?;
    Ok(n << (4 * (14 - v.len())))
}

/// `rv` value: exactly 14 hex digits.
fn parse_randomness(v: &str) -> Result<u64, TraceStateError> {
    if v.len() != 14 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TraceStateError(format!("rv:{v} is not 14 hex digits")));
    }
    u64::from_str_radix(v, 16).map_err(|e| TraceStateError(e.to_string()))
}

/// The `th` text of a threshold: 14 hex digits without trailing zeros ("0" for always);
/// `None` for [`NEVER`], which has no encoding.
pub fn tvalue(threshold: u64) -> Option<String> {
    if threshold >= NEVER {
        return None;
    }
    let s = format!("{threshold:014x}");
    let t = s.trim_end_matches('0');
    Some(if t.is_empty() {
        "0".into()
    } else {
        t.to_owned()
    })
}

/// Sampling probability to rejection threshold, rounded to `precision` significant hex digits
/// (after the obligatory leading zeros), as the OTel Collector's sampling package does.
/// `None` when the probability is out of [2^-56, 1].
pub fn probability_to_threshold(prob: f64, precision: u8) -> Option<u64> {
    let max = NEVER as f64;
    if !(prob >= 1.0 / max && prob <= 1.0) {
        return None;
    }
    let scaled = (prob * max).round() as u64;
    let reject = NEVER - scaled.min(NEVER);
    if precision == 0 || prob == 1.0 {
        return Some(reject);
    }
    let mut prec = u32::from(precision);
    let mut r = 1.0 - prob;
    while r * 16.0 < 1.0 {
        r *= 16.0;
        prec += 1;
    }
    if prec > 14 {
        return None;
    }
    let shift = 4 * (14 - prec);
    if shift == 0 {
        return Some(reject);
    }
    let half = 1u64 << (shift - 1);
    Some(((reject + half) >> shift) << shift)
}

/// The sampling probability a threshold stands for.
pub fn threshold_probability(threshold: u64) -> f64 {
    (NEVER - threshold.min(NEVER)) as f64 / NEVER as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ot_entries_round_trip() {
        let ts = TraceState::parse("vendor=x,ot=th:8;rv:0123456789abcd;xx:1").unwrap();
        assert_eq!(ts.threshold, Some(1 << 55));
        assert_eq!(ts.randomness, Some(0x0123456789abcd));
        assert_eq!(ts.serialize(), "ot=rv:0123456789abcd;th:8;xx:1,vendor=x");
        assert!(TraceState::parse("ot=th:xyz").is_err());
        assert!(TraceState::parse("ot=rv:12").is_err());
        assert!(TraceState::parse("novalue").is_err());
        assert_eq!(TraceState::parse("").unwrap().serialize(), "");
    }

    #[test]
    fn thresholds_as_the_spec_writes_them() {
        // Spec examples: 50% → th:8, 1% → th:fd70a4 (precision 6), 100% → th:0.
        assert_eq!(
            tvalue(probability_to_threshold(0.5, 4).unwrap()).unwrap(),
            "8"
        );
        assert_eq!(
            tvalue(probability_to_threshold(1.0, 4).unwrap()).unwrap(),
            "0"
        );
        assert_eq!(
            tvalue(probability_to_threshold(0.01, 4).unwrap()).unwrap(),
            "fd71"
        );
        assert_eq!(
            tvalue(probability_to_threshold(0.01, 6).unwrap()).unwrap(),
            "fd70a4"
        );
        assert_eq!(
            tvalue(probability_to_threshold(0.25, 4).unwrap()).unwrap(),
            "c"
        );
        assert_eq!(
            tvalue(probability_to_threshold(1.0 / 3.0, 4).unwrap()).unwrap(),
            "aaab"
        );
        assert_eq!(tvalue(NEVER), None);
        assert_eq!(probability_to_threshold(0.0, 4), None);
        assert!((threshold_probability(1 << 55) - 0.5).abs() < 1e-12);
    }
}
