//! The sampling decision for a request without one, with Envoy's three knobs.
//!
//! With `hash_seed` set, the random knob is the OpenTelemetry Collector's `probabilistic_sampler`
//! hash-seed rule, so the proxy keeps exactly the traces a collector with the same seed keeps:
//! FNV-1a 32 over the seed (4 bytes little-endian) then the 16 trace-id bytes; sampled iff
//! `(hash & 0x3FFF) < uint32(float32(pct) * float32(16384/100))`.

use model::TraceId;

use crate::config::Sampling;

/// FNV-1a 32 over `seed` (little-endian) then `trace_id`'s bytes.
pub fn hash_seed_fnv(seed: u32, trace_id: &TraceId) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in seed.to_le_bytes().iter().chain(trace_id.as_bytes()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The collector's hash-seed keep rule.
pub fn hash_seed_keeps(seed: u32, pct: f64, trace_id: &TraceId) -> bool {
    let scaled = (pct as f32 * (16384.0f32 / 100.0)) as u32;
    (hash_seed_fnv(seed, trace_id) & 0x3FFF) < scaled
}

fn chance(pct: f64) -> bool {
    pct >= 100.0 || (pct > 0.0 && fastrand::f64() * 100.0 < pct)
}

/// Why a request without a decision may be traced besides chance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    /// It has `x-client-trace-id` (traced per the `client` knob).
    pub client_trace_id: bool,
    /// It has `x-envoy-force-trace` (an internal request: edges strip it): traced.
    pub forced: bool,
}

/// Decides for a request that carries no decision, as Envoy does: forced, else the `client`
/// knob for a client trace id, else `random`; then `overall` over all of them.
pub fn decide(s: &Sampling, trace_id: &TraceId, asked: Asked) -> bool {
    let wanted = asked.forced
        || (asked.client_trace_id && chance(s.client))
        || match s.hash_seed {
            Some(seed) => hash_seed_keeps(seed, s.random, trace_id),
            None => chance(s.random),
        };
    wanted && chance(s.overall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_vectors() {
        // FNV-1a32(seed 0, 16 zero bytes) & 0x3FFF = 0x2455.
        assert_eq!(
            hash_seed_fnv(0, &TraceId::from_bytes([0; 16])) & 0x3FFF,
            0x2455
        );
        let t: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        assert_eq!(hash_seed_fnv(0, &t), 0x3420_408d);
        assert!(hash_seed_keeps(0, 1.0, &t)); // bucket 141 < 163
        assert!(!hash_seed_keeps(0, 0.5, &t)); // 141 >= 81
    }

    #[test]
    fn knobs() {
        let t: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        let mut s = Sampling::default();
        let none = Asked::default();
        let client = Asked {
            client_trace_id: true,
            forced: false,
        };
        let forced = Asked {
            client_trace_id: false,
            forced: true,
        };
        assert!(decide(&s, &t, none));
        s.random = 0.0;
        assert!(!decide(&s, &t, none));
        assert!(decide(&s, &t, client));
        s.client = 0.0;
        assert!(!decide(&s, &t, client));
        assert!(
            decide(&s, &t, forced),
            "forced whatever random and client say"
        );
        s.overall = 0.0;
        assert!(!decide(&s, &t, forced), "overall has the last word");
    }
}
