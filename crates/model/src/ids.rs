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

/// Parses 1..=2*N hex digits, left-padding with zeros (Jaeger accepts ids without leading zeros).
fn parse_hex<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], IdError> {
    if s.is_empty() || s.len() > 2 * N {
        return Err(IdError::HexLength {
            what,
            max: 2 * N,
            got: s.len(),
        });
    }
    let mut padded = [b'0'; 64];
    let text = &mut padded[..2 * N];
    text[2 * N - s.len()..].copy_from_slice(s.as_bytes());
    let mut out = [0u8; N];
    hex::decode_to_slice(&*text, &mut out).map_err(|_| IdError::NotHex {
        what,
        text: s.to_owned(),
    })?;
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

    #[test]
    fn span_ids_round_trip() {
        let id: SpanId = "00f067aa0ba902b7".parse().unwrap();
        assert_eq!(id.to_string(), "00f067aa0ba902b7");
        assert_eq!(SpanId::from_u64(id.to_u64()), id);
        let short: SpanId = "f067aa0ba902b7".parse().unwrap();
        assert_eq!(short, id);
    }
}
