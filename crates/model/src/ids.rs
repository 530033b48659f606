//! Trace and span identifiers.
//!
//! A [`TraceId`] is always 16 bytes. A 64-bit id (Zipkin, B3, Envoy) is kept as its value with the
//! high half zero, which is how Jaeger and the OpenTelemetry Collector join 64-bit and 128-bit ids
//! of the same trace; [`TraceId::to_short_hex`] renders such ids back as 16 hex digits.

use std::fmt;
use std::str::FromStr;

/// Why a byte string or hex text is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must be {expected} bytes, got {got}")]
    Length {
        what: &'static str,
        expected: &'static str,
        got: usize,
    },
    #[error("{what} must be 1 to {max} hex digits, got {got} characters")]
    HexLength {
        what: &'static str,
        max: usize,
        got: usize,
    },
    #[error("{what} {text:?} is not hexadecimal")]
    NotHex { what: &'static str, text: String },
    #[error("{what} is all zeros, which means invalid")]
    Zero { what: &'static str },
}

/// A 128-bit trace id. Ordering is the big-endian byte order, which is the order blocks sort rows in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId([u8; 16]);

/// A 64-bit span id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId([u8; 8]);

impl TraceId {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Builds a trace id from its high and low 64-bit halves.
    pub fn from_halves(high: u64, low: u64) -> Self {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&high.to_be_bytes());
        b[8..].copy_from_slice(&low.to_be_bytes());
        Self(b)
    }

    /// Accepts 16 bytes, or 8 bytes (a 64-bit id, kept with the high half zero).
    /// An all-zero id is refused.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        let mut b = [0u8; 16];
        match bytes.len() {
            16 => b.copy_from_slice(bytes),
            8 => b[8..].copy_from_slice(bytes),
            got => {
                return Err(IdError::Length {
                    what: "trace id",
                    expected: "16 (or 8)",
                    got,
                })
            }
        }
        let id = Self(b);
        if id.is_zero() {
            return Err(IdError::Zero { what: "trace id" });
        }
        Ok(id)
    }

    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn high(self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }

    pub fn low(self) -> u64 {
        u64::from_be_bytes(self.0[8..].try_into().expect("8 bytes"))
    }

    pub fn is_zero(self) -> bool {
        self.0 == [0; 16]
    }

    /// True when the high half is zero: the id came from (or fits) a 64-bit system.
    pub fn is_64bit(self) -> bool {
        self.high() == 0
    }

    /// Hex as Jaeger and Zipkin print it: 16 digits when the high half is zero, else 32.
    pub fn to_short_hex(self) -> String {
        if self.is_64bit() {
            hex::encode(&self.0[8..])
        } else {
            hex::encode(self.0)
        }
    }
}

impl SpanId {
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    pub fn from_u64(v: u64) -> Self {
        Self(v.to_be_bytes())
    }

    /// Accepts exactly 8 bytes; an all-zero id is refused.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        let b: [u8; 8] = bytes.try_into().map_err(|_| IdError::Length {
            what: "span id",
            expected: "8",
            got: bytes.len(),
        })?;
        if b == [0; 8] {
            return Err(IdError::Zero { what: "span id" });
        }
        Ok(Self(b))
    }

    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    pub fn to_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    pub fn is_zero(self) -> bool {
        self.0 == [0; 8]
    }
}

/// Each byte's value as a hex digit (either case), or `NOT_HEX`.
const HEX_DIGITS: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

/// Parses 1..=2*N hex digits, left-padding with zeros (Jaeger accepts ids without leading zeros).
/// One table look-up per digit into a big-endian integer (ids are parsed for every span a
/// Zipkin or Jaeger report carries); accepts and refuses exactly what the `hex` crate did.
fn parse_hex<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], IdError> {
    if s.is_empty() || s.len() > 2 * N {
        return Err(IdError::HexLength {
            what,
            max: 2 * N,
            got: s.len(),
        });
    }
    // N is 8 or 16, so the digits fit in a u128; bytes that are not hex digits (including any
    // byte of a multi-byte character) mark `bad`.
    let mut value: u128 = 0;
    let mut bad = 0u8;
    for &b in s.as_bytes() {
        let d = HEX_DIGITS[usize::from(b)];
        bad |= d & 0xf0;
        value = value << 4 | u128::from(d & 0x0f);
    }
    if bad != 0 {
        return Err(IdError::NotHex {
            what,
            text: s.to_owned(),
        });
    }
    let bytes = value.to_be_bytes();
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[16 - N..]);
    Ok(out)
}

impl FromStr for TraceId {
    type Err = IdError;
    /// 1 to 32 hex digits (either case); shorter ids are left-padded, so `"abc"` is a 64-bit id.
    fn from_str(s: &str) -> Result<Self, IdError> {
        let id = Self(parse_hex::<16>("trace id", s)?);
        if id.is_zero() {
            return Err(IdError::Zero { what: "trace id" });
        }
        Ok(id)
    }
}

impl FromStr for SpanId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let id = Self(parse_hex::<8>("span id", s)?);
        if id.is_zero() {
            return Err(IdError::Zero { what: "span id" });
        }
        Ok(id)
    }
}

/// Full 32-digit lowercase hex, as OTLP/JSON and W3C write trace ids.
impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// 16-digit lowercase hex.
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixty_four_bit_ids_join_their_128_bit_form() {
        let short: TraceId = "463ac35c9f6413ad".parse().unwrap();
        let long: TraceId = "0000000000000000463ac35c9f6413ad".parse().unwrap();
        assert_eq!(short, long);
        assert!(short.is_64bit());
        assert_eq!(short.to_short_hex(), "463ac35c9f6413ad");
        assert_eq!(short.to_string(), "0000000000000000463ac35c9f6413ad");
        let from_bytes = TraceId::from_slice(&0x463ac35c9f6413adu64.to_be_bytes()).unwrap();
        assert_eq!(from_bytes, short);
    }

    #[test]
    fn full_ids_round_trip_and_upper_case_is_accepted() {
        let id: TraceId = "4BF92F3577B34DA6A3CE929D0E0E4736".parse().unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(id.to_short_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(id.high(), 0x4bf92f3577b34da6);
        assert_eq!(id.low(), 0xa3ce929d0e0e4736);
        assert_eq!(TraceId::from_halves(id.high(), id.low()), id);
    }

    #[test]
    fn bad_ids_say_what_is_wrong() {
        assert!(matches!(
            "".parse::<TraceId>(),
            Err(IdError::HexLength { .. })
        ));
        assert!(matches!(
            "0".repeat(33).parse::<TraceId>(),
            Err(IdError::HexLength { got: 33, .. })
        ));
        assert!(matches!(
            "zz".parse::<TraceId>(),
            Err(IdError::NotHex { .. })
        ));
        assert!(matches!(
            "0000".parse::<TraceId>(),
            Err(IdError::Zero { .. })
        ));
        assert!(matches!(
            TraceId::from_slice(&[1; 12]),
            Err(IdError::Length { got: 12, .. })
        ));
        assert!(matches!(
            SpanId::from_slice(&[1; 16]),
            Err(IdError::Length { got: 16, .. })
        ));
        assert!(matches!(
            SpanId::from_slice(&[0; 8]),
            Err(IdError::Zero { .. })
        ));
        let msg = "xyz".parse::<SpanId>().unwrap_err().to_string();
        assert!(msg.contains("span id") && msg.contains("xyz"), "{msg}");
    }

    /// The table parser must accept and refuse exactly what the `hex` crate decoding the
    /// zero-padded text did, with the same errors.
    fn hex_crate_parse<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], IdError> {
        if s.is_empty() || s.len() > 2 * N {
            return Err(IdError::HexLength {
                what,
                max: 2 * N,
                got: s.len(),
            });
        }
        let padded = format!("{}{s}", "0".repeat(2 * N - s.len()));
        let mut out = [0u8; N];
        hex::decode_to_slice(padded.as_bytes(), &mut out).map_err(|_| IdError::NotHex {
            what,
            text: s.to_owned(),
        })?;
        Ok(out)
    }

    #[test]
    fn hex_parsing_answers_as_the_hex_crate() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "0".into(),
            "f".into(),
            "F".into(),
            "g".into(),
            "é".into(),
            "0é".into(),
            " 1".into(),
            "1 ".into(),
            "+1".into(),
            "-1".into(),
            "0x1".into(),
            "0".repeat(16),
            "f".repeat(16),
            "f".repeat(17),
            "F".repeat(32),
            "0".repeat(33),
            "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            "4BF92F3577B34DA6a3ce929d0e0e473G".into(),
        ];
        // Every single byte, and generated mixes of digits and near-digits.
        for b in 0..=255u8 {
            cases.push(String::from_utf8_lossy(&[b'1', b]).into_owned());
        }
        let alphabet = b"0123456789abcdefABCDEFgG/:@`xz \x7f";
        let mut x: u32 = 0x2545_f491;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = x as usize % 35;
            let text: String = (0..len)
                .map(|i| {
                    let r = x.rotate_left(i as u32 * 5) as usize;
                    // Mostly hex digits, so the valid and the zero cases are reached.
                    if r.is_multiple_of(8) {
                        alphabet[r / 8 % alphabet.len()] as char
                    } else {
                        alphabet[r % 16] as char
                    }
                })
                .collect();
            cases.push(text);
        }
        for s in &cases {
            assert_eq!(
                parse_hex::<16>("trace id", s),
                hex_crate_parse::<16>("trace id", s),
                "{s:?}"
            );
            assert_eq!(
                parse_hex::<8>("span id", s),
                hex_crate_parse::<8>("span id", s),
                "{s:?}"
            );
        }
    }

    #[test]
    fn span_ids_round_trip() {
        let id: SpanId = "00f067aa0ba902b7".parse().unwrap();
        assert_eq!(id.to_string(), "00f067aa0ba902b7");
        assert_eq!(SpanId::from_u64(id.to_u64()), id);
        let short: SpanId = "f067aa0ba902b7".parse().unwrap();
        assert_eq!(short, id);
    }
}
