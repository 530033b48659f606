//! How a cluster picks the endpoint of a request (Envoy's `lb_policy`): `ROUND_ROBIN` (the
//! default), `RANDOM`, `LEAST_REQUEST` (of `choice_count` endpoints drawn at random, the one
//! with the fewest requests in flight, counted across the workers) and `RING_HASH` (a
//! consistent hash of the request, from the route's `hash_policy`: the same user, session or
//! key reaches the same endpoint, from every proxy that has the same endpoints, and only about
//! 1/n of the keys move when an endpoint comes or goes) and `MAGLEV` (the same promise from a
//! lookup table, Google's Maglev: an even spread and one memory read per request).
//!
//! Endpoints may have a `load_balancing_weight` (1 by default): round-robin then goes in
//! smooth weighted turns (a weight-3 endpoint takes three requests of every four beside a
//! weight-1 one, interleaved), random draws by weight, least request compares requests in flight
//! per unit of weight, and the ring gives each endpoint points in proportion.
//!
//! Every policy passes over the endpoints outlier detection ejected and those failing their
//! health checks, unless fewer than `healthy_panic_threshold` percent of them are left (Envoy's
//! default 50%): then it picks among all of them (panic routing), since a cluster half down is
//! more likely mis-checked than unable to serve. With a threshold of 0 there is no panic, and a
//! cluster with no endpoint left has none to give (503, flag `UH`).
//!
//! The ring follows Envoy's documented construction (each endpoint hashed at
//! `ceil(minimum_ring_size / n)` points, `address_i` under xxHash64, the request's hash placed
//! at the first point at or after it); a key whose endpoint is out walks on along the ring, so
//! the keys of the endpoints left do not move.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;

/// Envoy's `lb_policy` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
    Maglev,
}

/// `maglev_lb_config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaglevConfig {
    /// The lookup table's size: a prime (Envoy's default 65537).
    pub table_size: u64,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        MaglevConfig { table_size: 65537 }
    }
}

/// `least_request_lb_config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeastRequestConfig {
    /// Endpoints drawn at random per request (Envoy's default 2: the power of two choices).
    pub choice_count: u32,
}

impl Default for LeastRequestConfig {
    fn default() -> Self {
        LeastRequestConfig { choice_count: 2 }
    }
}

/// `ring_hash_lb_config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RingHashConfig {
    pub minimum_ring_size: u64,
    pub maximum_ring_size: u64,
    pub hash_function: RingHashFunction,
}

impl Default for RingHashConfig {
    fn default() -> Self {
        RingHashConfig {
            minimum_ring_size: 1024,
            maximum_ring_size: 8 * 1024 * 1024,
            hash_function: RingHashFunction::XxHash,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RingHashFunction {
    XxHash,
    /// Refused by the check: not built.
    MurmurHash2,
}

/// `common_lb_config`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonLbConfig {
    #[serde(default)]
    pub healthy_panic_threshold: Option<Percent>,
}

/// Envoy's `type.v3.Percent`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    pub value: f64,
}

/// A cluster's balancing settings, as the configuration gives them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BalanceConfig {
    pub lb_policy: LbPolicy,
    pub least_request: LeastRequestConfig,
    pub ring_hash: RingHashConfig,
    pub maglev: MaglevConfig,
    pub common: CommonLbConfig,
}

impl BalanceConfig {
    pub fn check(&self) -> Result<(), String> {
        let size = self.maglev.table_size;
        let prime = (2..)
            .take_while(|d| d * d <= size)
            .all(|d| !size.is_multiple_of(d));
        if !(2..=5_000_011).contains(&size) || !prime {
            return Err(format!(
                "maglev_lb_config.table_size {size} is not a prime up to 5000011 (Envoy's default is 65537)"
            ));
        }
        if self.least_request.choice_count < 2 {
            return Err(format!(
                "least_request_lb_config.choice_count must be at least 2, got {}",
                self.least_request.choice_count
            ));
        }
        let r = &self.ring_hash;
        if r.hash_function != RingHashFunction::XxHash {
            return Err("ring_hash_lb_config.hash_function: only XX_HASH is built".to_owned());
        }
        if r.minimum_ring_size == 0 || r.minimum_ring_size > r.maximum_ring_size {
            return Err(format!(
                "ring_hash_lb_config: minimum_ring_size {} must be 1 to maximum_ring_size {}",
                r.minimum_ring_size, r.maximum_ring_size
            ));
        }
        if r.maximum_ring_size > 8 * 1024 * 1024 {
            return Err(format!(
                "ring_hash_lb_config.maximum_ring_size {} is over Envoy's limit of 8388608",
                r.maximum_ring_size
            ));
        }
        if let Some(p) = self.common.healthy_panic_threshold {
            if !(0.0..=100.0).contains(&p.value) {
                return Err(format!(
                    "common_lb_config.healthy_panic_threshold {} is not a percentage",
                    p.value
                ));
            }
        }
        Ok(())
    }
}

/// One of a route's `hash_policy` entries (Envoy's `RouteAction.HashPolicy`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashPolicyConfig {
    #[serde(default)]
    pub header: Option<HeaderHash>,
    #[serde(default)]
    pub cookie: Option<CookieHash>,
    #[serde(default)]
    pub query_parameter: Option<QueryHash>,
    #[serde(default)]
    pub connection_properties: Option<ConnectionHash>,
    /// When this one gives a hash, the ones after it are not looked at.
    #[serde(default)]
    pub terminal: bool,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderHash {
    pub header_name: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieHash {
    pub name: String,
    /// Refused by the check: making the cookie when it is missing is not built.
    #[serde(default)]
    pub ttl: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryHash {
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionHash {
    pub source_ip: bool,
}

/// What a request is hashed by.
#[derive(Clone, Debug)]
pub struct HashPolicy {
    source: Source,
    terminal: bool,
}

#[derive(Clone, Debug)]
enum Source {
    Header(http::HeaderName),
    Cookie(String),
    Query(String),
    CallerIp,
}

impl HashPolicyConfig {
    pub fn compile(&self) -> Result<HashPolicy, String> {
        let given = [
            self.header.is_some(),
            self.cookie.is_some(),
            self.query_parameter.is_some(),
            self.connection_properties.is_some(),
        ];
        if given.iter().filter(|&&g| g).count() != 1 {
            return Err(
                "hash_policy: each entry needs exactly one of header, cookie, query_parameter and connection_properties"
                    .to_owned(),
            );
        }
        let source = if let Some(h) = &self.header {
            Source::Header(
                http::HeaderName::try_from(h.header_name.as_str()).map_err(|_| {
                    format!("hash_policy: {:?} is not a header name", h.header_name)
                })?,
            )
        } else if let Some(c) = &self.cookie {
            if c.ttl.is_some() {
                return Err(format!(
                    "hash_policy: cookie {:?}: ttl (making the cookie when it is missing) is not built; the cookie is hashed when the request has it",
                    c.name
                ));
            }
            Source::Cookie(c.name.clone())
        } else if let Some(q) = &self.query_parameter {
            Source::Query(q.name.clone())
        } else {
            match self.connection_properties {
                Some(ConnectionHash { source_ip: true }) => Source::CallerIp,
                _ => {
                    return Err(
                        "hash_policy: connection_properties needs source_ip: true".to_owned()
                    )
                }
            }
        };
        Ok(HashPolicy {
            source,
            terminal: self.terminal,
        })
    }
}

/// What of a request its hash may be made from.
pub struct Hashed<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub peer: std::net::IpAddr,
}

fn xxhash(bytes: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, bytes)
}

/// The request's hash under `policies` (Envoy's combination: each new hash is XORed into the
/// one so far rotated left by one bit), `None` when none of them found its value.
pub fn hash(policies: &[HashPolicy], r: &Hashed<'_>) -> Option<u64> {
    let mut acc: Option<u64> = None;
    for p in policies {
        let h = match &p.source {
            Source::Header(name) => r.headers.get(name).map(|v| xxhash(v.as_bytes())),
            Source::Cookie(name) => cookie(r.headers, name).map(|v| xxhash(v.as_bytes())),
            Source::Query(name) => query_value(r.query, name).map(|v| xxhash(v.as_bytes())),
            Source::CallerIp => Some(xxhash(r.peer.to_string().as_bytes())),
        };
        if let Some(h) = h {
            acc = Some(match acc {
                Some(a) => a.rotate_left(1) ^ h,
                None => h,
            });
            if p.terminal {
                break;
            }
        }
    }
    acc
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
}

fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if pair == name => Some(""),
            _ => None,
        })
}

/// A cluster's balancer (one per worker; what it counts is shared).
pub struct Balancer {
    kind: Kind,
    /// Percent of endpoints that must be left for the others to be passed over.
    panic_threshold: f64,
    /// The endpoints' weights, when they are not all the same.
    weights: Option<Weights>,
}

struct Weights {
    of: Vec<u64>,
    /// Running totals, for a draw by weight.
    cum: Vec<u64>,
    /// Smooth weighted round-robin's current values (this worker's own).
    current: std::sync::Mutex<Vec<i64>>,
}

impl Weights {
    fn new(weights: &[u32], n: usize) -> Option<Self> {
        let of: Vec<u64> = (0..n)
            .map(|i| u64::from(weights.get(i).copied().unwrap_or(1).max(1)))
            .collect();
        if of.windows(2).all(|w| w[0] == w[1]) {
            return None;
        }
        let cum = of
            .iter()
            .scan(0u64, |t, w| {
                *t += w;
                Some(*t)
            })
            .collect();
        Some(Weights {
            current: std::sync::Mutex::new(vec![0; n]),
            of,
            cum,
        })
    }

    /// A draw by weight among those `eligible` says yes to.
    fn draw(&self, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let total = *self.cum.last()?;
        for _ in 0..2 {
            let r = fastrand::u64(..total);
            let i = self.cum.partition_point(|&c| c <= r);
            if eligible(i) {
                return Some(i);
            }
        }
        let left: u64 = (0..self.of.len())
            .filter(|&i| eligible(i))
            .map(|i| self.of[i])
            .sum();
        if left == 0 {
            return None;
        }
        let mut r = fastrand::u64(..left);
        for (i, &w) in self.of.iter().enumerate() {
            if eligible(i) {
                if r < w {
                    return Some(i);
                }
                r -= w;
            }
        }
        None
    }

    /// Smooth weighted round-robin (nginx's): each turn every eligible endpoint gains its
    /// weight, the one ahead is picked and loses the total.
    fn next(&self, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..self.of.len() {
            if !eligible(i) {
                continue;
            }
            let w = i64::try_from(self.of[i]).unwrap_or(i64::MAX);
            current[i] = current[i].saturating_add(w);
            total = total.saturating_add(w);
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] = current[b].saturating_sub(total);
        Some(b)
    }
}

enum Kind {
    RoundRobin(AtomicUsize),
    Random,
    LeastRequest {
        choices: u32,
        /// Requests in flight per endpoint, shared by the workers.
        active: Arc<[Arc<AtomicUsize>]>,
    },
    Ring(Ring),
    Maglev(Maglev),
}

impl Balancer {
    /// `active`: the cluster's shared counts of requests in flight (for `LEAST_REQUEST`).
    /// `weights`: the endpoints' `load_balancing_weight`s (missing ones are 1).
    pub fn new(
        c: &BalanceConfig,
        endpoints: &[Arc<str>],
        weights: &[u32],
        active: Option<Arc<[Arc<AtomicUsize>]>>,
    ) -> Self {
        let kind = match c.lb_policy {
            LbPolicy::RoundRobin => Kind::RoundRobin(AtomicUsize::new(0)),
            LbPolicy::Maglev => Kind::Maglev(Maglev::new(endpoints, c.maglev.table_size)),
            LbPolicy::Random => Kind::Random,
            LbPolicy::LeastRequest => Kind::LeastRequest {
                choices: c.least_request.choice_count,
                active: active.unwrap_or_else(|| counters(endpoints.len())),
            },
            LbPolicy::RingHash => Kind::Ring(Ring::new(endpoints, weights, &c.ring_hash)),
        };
        Balancer {
            kind,
            panic_threshold: c.common.healthy_panic_threshold.map_or(50.0, |p| p.value),
            weights: Weights::new(weights, endpoints.len()),
        }
    }

    /// Whether requests are hashed (then [`Balancer::pick`] wants their hash).
    pub fn hashes(&self) -> bool {
        matches!(self.kind, Kind::Ring(_) | Kind::Maglev(_))
    }

    /// The count of requests in flight to endpoint `i`, when this balancer counts them.
    pub fn active(&self, i: usize) -> Option<&Arc<AtomicUsize>> {
        match &self.kind {
            Kind::LeastRequest { active, .. } => active.get(i),
            _ => None,
        }
    }

    /// The endpoint (of `n`) for a request with `hash` (ring hash only), among those
    /// `available` says may take requests (`None`: all may) unless too few are left; and
    /// other than `not` when another one may be had (a retry's next endpoint). `None`: none
    /// is left and panic routing is off.
    pub fn pick(
        &self,
        n: usize,
        hash: Option<u64>,
        available: Option<&dyn Fn(usize) -> bool>,
        not: Option<usize>,
    ) -> Option<usize> {
        if n == 0 {
            return None;
        }
        let ok = |i: usize| available.is_none_or(|a| a(i));
        let left = match available {
            None => n,
            Some(a) => (0..n).filter(|&i| a(i)).count(),
        };
        // Panic routing: too few left to trust the checks, so every endpoint is a candidate.
        let panic = left < n && (left as f64) * 100.0 < self.panic_threshold * n as f64;
        if left == 0 && !panic {
            return None;
        }
        let candidate = |i: usize| panic || ok(i);
        let others = |i: usize| candidate(i) && Some(i) != not;
        let total = if panic { n } else { left };
        // A retry goes elsewhere when there is elsewhere to go.
        let eligible: &dyn Fn(usize) -> bool = if not.is_some() && total > 1 {
            &others
        } else {
            &candidate
        };
        let random = |eligible: &dyn Fn(usize) -> bool| match &self.weights {
            Some(w) => w.draw(eligible),
            None => random_of(n, eligible),
        };
        match &self.kind {
            Kind::RoundRobin(_) if self.weights.is_some() => {
                self.weights.as_ref().and_then(|w| w.next(eligible))
            }
            Kind::RoundRobin(next) => {
                let i = next.fetch_add(1, Ordering::Relaxed) % n;
                if eligible(i) {
                    return Some(i);
                }
                let up = (1..n).map(|k| (i + k) % n).find(|&j| eligible(j))?;
                // Skipped over: the counter moves on past it.
                next.fetch_add((up + n - i) % n, Ordering::Relaxed);
                Some(up)
            }
            Kind::Random => random(eligible),
            Kind::LeastRequest { choices, active } => {
                let mut best: Option<usize> = None;
                // Requests in flight per unit of weight, compared without division.
                let load = |j: usize| {
                    active
                        .get(j)
                        .map_or(0, |a| a.load(Ordering::Relaxed) as u64)
                        .saturating_add(1)
                };
                let weight = |j: usize| self.weights.as_ref().map_or(1, |w| w.of[j]);
                for _ in 0..*choices {
                    let i = random(eligible)?;
                    let lighter = |b: usize| {
                        load(i).saturating_mul(weight(b)) < load(b).saturating_mul(weight(i))
                    };
                    if best.is_none_or(lighter) {
                        best = Some(i);
                    }
                }
                best
            }
            Kind::Ring(ring) => match hash {
                // The same endpoint for the same key; a retry walks on to the next one.
                Some(h) => ring.walk(h, eligible),
                None => random(eligible),
            },
            Kind::Maglev(m) => match hash {
                Some(h) => m.lookup(h, eligible),
                None => random(eligible),
            },
        }
    }
}

/// Fresh counts of requests in flight for `n` endpoints.
pub fn counters(n: usize) -> Arc<[Arc<AtomicUsize>]> {
    (0..n).map(|_| Arc::new(AtomicUsize::new(0))).collect()
}

/// A random one of the endpoints `eligible` says yes to.
fn random_of(n: usize, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
    // Mostly every endpoint is eligible: a draw or two finds one without counting.
    for _ in 0..2 {
        let i = fastrand::usize(..n);
        if eligible(i) {
            return Some(i);
        }
    }
    let k = (0..n).filter(|&i| eligible(i)).count();
    if k == 0 {
        return None;
    }
    let r = fastrand::usize(..k);
    (0..n).filter(|&i| eligible(i)).nth(r)
}

/// A Maglev lookup table: every slot names an endpoint, each endpoint filling slots in the
/// order of its own permutation of the table in turn, so that they hold equal shares. A key
/// whose endpoint is out (or is the one a retry leaves) goes to the next slot's, so the keys of
/// the endpoints left do not move, and the out one's spread over the others (its slots are
/// scattered through the table).
struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    fn new(endpoints: &[Arc<str>], size: u64) -> Self {
        let perms: Vec<(u64, u64)> = endpoints
            .iter()
            .map(|a| {
                let offset = twox_hash::XxHash64::oneshot(0, a.as_bytes()) % size;
                let skip = twox_hash::XxHash64::oneshot(1, a.as_bytes()) % (size - 1) + 1;
                (offset, skip)
            })
            .collect();
        let size = usize::try_from(size).unwrap_or(65537);
        let mut table = vec![u32::MAX; size];
        if !perms.is_empty() {
            let mut next = vec![0u64; perms.len()];
            let mut filled = 0;
            'fill: loop {
                for (i, &(offset, skip)) in perms.iter().enumerate() {
                    loop {
                        let slot = ((offset + next[i] * skip) % size as u64) as usize;
                        next[i] += 1;
                        if table[slot] == u32::MAX {
                            table[slot] = i as u32;
                            filled += 1;
                            break;
                        }
                    }
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        Maglev { table }
    }

    /// The endpoint of key `h`: its slot's, else the next slot's that is eligible.
    fn lookup(&self, h: u64, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let size = self.table.len();
        let start = (h % size as u64) as usize;
        (0..size)
            .map(|k| self.table[(start + k) % size] as usize)
            .find(|&i| eligible(i))
    }
}

/// A hash ring: points sorted by hash, each naming an endpoint.
struct Ring {
    points: Vec<(u64, usize)>,
}

impl Ring {
    fn new(endpoints: &[Arc<str>], weights: &[u32], c: &RingHashConfig) -> Self {
        let weight = |i: usize| u64::from(weights.get(i).copied().unwrap_or(1).max(1));
        let total: u64 = (0..endpoints.len()).map(weight).sum::<u64>().max(1);
        // Points in proportion to weight, the ring scaled as Envoy's: so that the lightest
        // endpoint's share of the minimum size is a whole number of points, within the maximum.
        let lightest = (0..endpoints.len()).map(weight).min().unwrap_or(1);
        let min_share = lightest as f64 / total as f64;
        let scale = ((min_share * c.minimum_ring_size as f64).ceil() / min_share)
            .min(c.maximum_ring_size as f64);
        let mut points = Vec::new();
        let mut key = String::new();
        for (i, address) in endpoints.iter().enumerate() {
            let per = ((scale * weight(i) as f64 / total as f64).ceil() as u64).max(1);
            for k in 0..per {
                key.clear();
                key.push_str(address);
                key.push('_');
                key.push_str(itoa::Buffer::new().format(k));
                points.push((xxhash(key.as_bytes()), i));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The first eligible endpoint at or after `h` on the ring.
    fn walk(&self, h: u64, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let start = self.points.partition_point(|&(p, _)| p < h);
        let len = self.points.len();
        (0..len)
            .map(|k| self.points[(start + k) % len].1)
            .find(|&i| eligible(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Vec<Arc<str>> {
        (0..n).map(|i| format!("10.0.0.{i}:8080").into()).collect()
    }

    fn balancer(yaml_policy: LbPolicy, n: usize) -> Balancer {
        let c = BalanceConfig {
            lb_policy: yaml_policy,
            ..BalanceConfig::default()
        };
        Balancer::new(&c, &endpoints(n), &[], None)
    }

    #[test]
    fn ring_hash_is_stable_across_balancers_and_moves_few_keys_when_an_endpoint_goes() {
        let c = BalanceConfig {
            lb_policy: LbPolicy::RingHash,
            ..BalanceConfig::default()
        };
        let a = Balancer::new(&c, &endpoints(5), &[], None);
        let b = Balancer::new(&c, &endpoints(5), &[], None);
        let mut per = [0usize; 5];
        for k in 0..10_000u64 {
            let h = xxhash(format!("user-{k}").as_bytes());
            let x = a.pick(5, Some(h), None, None).unwrap();
            assert_eq!(
                Some(x),
                b.pick(5, Some(h), None, None),
                "another proxy agrees"
            );
            assert_eq!(
                Some(x),
                a.pick(5, Some(h), None, None),
                "and so does the next request"
            );
            per[x] += 1;
        }
        // Every endpoint takes a share (1024 points: each within a loose ±50% of 2,000).
        assert!(per.iter().all(|&p| (1_000..3_000).contains(&p)), "{per:?}");
        // Endpoint 2 out: its keys move, nobody else's.
        let out = |i: usize| i != 2;
        let mut moved = 0;
        for k in 0..10_000u64 {
            let h = xxhash(format!("user-{k}").as_bytes());
            let before = a.pick(5, Some(h), None, None).unwrap();
            let after = a.pick(5, Some(h), Some(&out), None).unwrap();
            assert_ne!(after, 2);
            if before != 2 {
                assert_eq!(before, after, "a key of an endpoint left stays");
            } else {
                moved += 1;
            }
        }
        assert_eq!(moved, per[2]);
        // A retry walks on to another endpoint.
        let h = xxhash(b"user-1");
        let first = a.pick(5, Some(h), None, None).unwrap();
        let retry = a.pick(5, Some(h), None, Some(first)).unwrap();
        assert_ne!(first, retry);
    }

    #[test]
    fn weights_shape_every_policy() {
        let with = |policy: LbPolicy, weights: &[u32], active: Option<Arc<[Arc<AtomicUsize>]>>| {
            let c = BalanceConfig {
                lb_policy: policy,
                least_request: LeastRequestConfig { choice_count: 20 },
                ..BalanceConfig::default()
            };
            Balancer::new(&c, &endpoints(weights.len()), weights, active)
        };
        // Smooth weighted round-robin: 3:1, interleaved.
        let rr = with(LbPolicy::RoundRobin, &[3, 1], None);
        let turns: Vec<usize> = (0..8)
            .map(|_| rr.pick(2, None, None, None).unwrap())
            .collect();
        assert_eq!(turns, [0, 0, 1, 0, 0, 0, 1, 0]);
        // An endpoint out is passed over; the others keep their proportions.
        let rr = with(LbPolicy::RoundRobin, &[1, 2, 1], None);
        let no_middle = |i: usize| i != 1;
        let turns: Vec<usize> = (0..4)
            .map(|_| rr.pick(3, None, Some(&no_middle), None).unwrap())
            .collect();
        assert_eq!(turns.iter().filter(|&&i| i == 0).count(), 2, "{turns:?}");
        assert_eq!(turns.iter().filter(|&&i| i == 2).count(), 2, "{turns:?}");
        // Random by weight: 1:3.
        let random = with(LbPolicy::Random, &[1, 3], None);
        let heavy = (0..10_000)
            .filter(|_| random.pick(2, None, None, None) == Some(1))
            .count();
        assert!((7_000..8_000).contains(&heavy), "{heavy}");
        // The ring gives points in proportion: about 3 keys in 4 to the heavy endpoint.
        let ring = with(LbPolicy::RingHash, &[1, 3], None);
        let heavy = (0..10_000u64)
            .filter(|k| ring.pick(2, Some(xxhash(&k.to_le_bytes())), None, None) == Some(1))
            .count();
        assert!((6_500..8_500).contains(&heavy), "{heavy}");
        // Least request per unit of weight: 2 in flight on weight 3 is lighter than 1 on 1.
        let active = counters(2);
        active[0].store(1, Ordering::Relaxed);
        active[1].store(2, Ordering::Relaxed);
        let lr = with(LbPolicy::LeastRequest, &[1, 3], Some(active));
        let to_heavy = (0..100)
            .filter(|_| lr.pick(2, None, None, None) == Some(1))
            .count();
        assert!(to_heavy > 95, "{to_heavy}");
    }

    #[test]
    fn maglev_spreads_evenly_agrees_across_balancers_and_moves_only_the_keys_of_an_endpoint_out() {
        let c = BalanceConfig {
            lb_policy: LbPolicy::Maglev,
            ..BalanceConfig::default()
        };
        let a = Balancer::new(&c, &endpoints(5), &[], None);
        let b = Balancer::new(&c, &endpoints(5), &[], None);
        let Kind::Maglev(m) = &a.kind else {
            unreachable!()
        };
        // Every slot filled, each endpoint within one slot of a fifth.
        let mut slots = [0usize; 5];
        for &i in &m.table {
            slots[i as usize] += 1;
        }
        assert!(
            slots.iter().all(|&n| (13_107..=13_108).contains(&n)),
            "{slots:?}"
        );
        let mut per = [0usize; 5];
        for k in 0..10_000u64 {
            let h = xxhash(format!("user-{k}").as_bytes());
            let x = a.pick(5, Some(h), None, None).unwrap();
            assert_eq!(Some(x), b.pick(5, Some(h), None, None));
            per[x] += 1;
            let out = |i: usize| i != 2;
            let after = a.pick(5, Some(h), Some(&out), None).unwrap();
            if x != 2 {
                assert_eq!(after, x, "a key of an endpoint left stays");
            } else {
                assert_ne!(after, 2);
            }
            let retry = a.pick(5, Some(h), None, Some(x)).unwrap();
            assert_ne!(retry, x, "a retry goes elsewhere");
        }
        assert!(per.iter().all(|&p| (1_700..2_300).contains(&p)), "{per:?}");
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let active = counters(2);
        let c = BalanceConfig {
            lb_policy: LbPolicy::LeastRequest,
            least_request: LeastRequestConfig { choice_count: 4 },
            ..BalanceConfig::default()
        };
        let b = Balancer::new(&c, &endpoints(2), &[], Some(active.clone()));
        active[0].store(10, Ordering::Relaxed);
        let to_idle = (0..1000)
            .filter(|_| b.pick(2, None, None, None) == Some(1))
            .count();
        // Four draws from two: all four land on the busy one with chance 1/16.
        assert!(to_idle > 850, "{to_idle}");
        assert!(Arc::ptr_eq(b.active(1).unwrap(), &active[1]));
    }

    #[test]
    fn random_and_round_robin_pass_over_endpoints_out_unless_too_many_are() {
        for policy in [
            LbPolicy::Random,
            LbPolicy::RoundRobin,
            LbPolicy::LeastRequest,
        ] {
            let b = balancer(policy, 4);
            // One of four out: never picked.
            let out = |i: usize| i != 3;
            for _ in 0..200 {
                assert_ne!(b.pick(4, None, Some(&out), None), Some(3), "{policy:?}");
            }
            // Three of four out (25% left, under the 50% default): panic, all are picked.
            let mostly_out = |i: usize| i == 0;
            let mut seen = [false; 4];
            for _ in 0..400 {
                seen[b.pick(4, None, Some(&mostly_out), None).unwrap()] = true;
            }
            assert_eq!(seen, [true; 4], "{policy:?}");
            // Two of four out (50% left): not panic.
            let half = |i: usize| i < 2;
            for _ in 0..200 {
                assert!(
                    b.pick(4, None, Some(&half), None).unwrap() < 2,
                    "{policy:?}"
                );
            }
        }
        // Round-robin goes in turn.
        let b = balancer(LbPolicy::RoundRobin, 3);
        let turns: Vec<_> = (0..6)
            .map(|_| b.pick(3, None, None, None).unwrap())
            .collect();
        assert_eq!(turns, [0, 1, 2, 0, 1, 2]);
        // A retry goes elsewhere.
        for _ in 0..50 {
            let b = balancer(LbPolicy::Random, 2);
            assert_eq!(b.pick(2, None, None, Some(0)), Some(1));
        }
    }

    #[test]
    fn threshold_zero_means_no_panic_and_none_left_is_none() {
        let c = BalanceConfig {
            common: CommonLbConfig {
                healthy_panic_threshold: Some(Percent { value: 0.0 }),
            },
            ..BalanceConfig::default()
        };
        let b = Balancer::new(&c, &endpoints(3), &[], None);
        let one = |i: usize| i == 1;
        for _ in 0..10 {
            assert_eq!(b.pick(3, None, Some(&one), None), Some(1));
        }
        let none = |_: usize| false;
        assert_eq!(b.pick(3, None, Some(&none), None), None);
        // With the default, none left is panic: one of all.
        let b = balancer(LbPolicy::RoundRobin, 3);
        assert!(b.pick(3, None, Some(&none), None).is_some());
        // At 100, anything out is panic.
        let c = BalanceConfig {
            common: CommonLbConfig {
                healthy_panic_threshold: Some(Percent { value: 100.0 }),
            },
            ..BalanceConfig::default()
        };
        let b = Balancer::new(&c, &endpoints(3), &[], None);
        let mut seen = [false; 3];
        let two = |i: usize| i != 0;
        for _ in 0..30 {
            seen[b.pick(3, None, Some(&two), None).unwrap()] = true;
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn request_hashes_follow_the_policies() {
        let policies = |yaml: &str| -> Vec<HashPolicy> {
            let c: Vec<HashPolicyConfig> = serde_yaml::from_str(yaml).unwrap();
            c.iter().map(|p| p.compile().unwrap()).collect()
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "alice".parse().unwrap());
        headers.insert("cookie", "a=1; session=\"s-42\"; b=2".parse().unwrap());
        let r = Hashed {
            headers: &headers,
            query: Some("k=v&shard=7&flag"),
            peer: "10.1.2.3".parse().unwrap(),
        };
        let h = |yaml: &str| hash(&policies(yaml), &r);
        assert_eq!(
            h("[{ header: { header_name: x-user } }]"),
            Some(xxhash(b"alice"))
        );
        assert_eq!(h("[{ cookie: { name: session } }]"), Some(xxhash(b"s-42")));
        assert_eq!(
            h("[{ query_parameter: { name: shard } }]"),
            Some(xxhash(b"7"))
        );
        assert_eq!(
            h("[{ query_parameter: { name: flag } }]"),
            Some(xxhash(b""))
        );
        assert_eq!(
            h("[{ connection_properties: { source_ip: true } }]"),
            Some(xxhash(b"10.1.2.3"))
        );
        // Missing values give nothing; the next policy still may.
        assert_eq!(h("[{ header: { header_name: x-none } }]"), None);
        assert_eq!(
            h("[{ header: { header_name: x-none } }, { cookie: { name: session } }]"),
            Some(xxhash(b"s-42"))
        );
        // Two combine; a terminal one that found its value ends the list.
        assert_eq!(
            h("[{ header: { header_name: x-user } }, { query_parameter: { name: shard } }]"),
            Some(xxhash(b"alice").rotate_left(1) ^ xxhash(b"7"))
        );
        assert_eq!(
            h("[{ header: { header_name: x-user }, terminal: true }, { query_parameter: { name: shard } }]"),
            Some(xxhash(b"alice"))
        );
    }

    #[test]
    fn mistakes_are_named() {
        let compile = |yaml: &str| {
            serde_yaml::from_str::<HashPolicyConfig>(yaml)
                .unwrap()
                .compile()
                .unwrap_err()
        };
        assert!(compile("{}").contains("exactly one of"));
        assert!(compile("{ header: { header_name: 'a b' } }").contains("not a header name"));
        assert!(compile("{ cookie: { name: s, ttl: 1h } }").contains("ttl"));
        assert!(compile("{ connection_properties: { source_ip: false } }").contains("source_ip"));
        let check = |c: BalanceConfig| c.check().unwrap_err();
        for size in [0, 1, 65536, 65535, 5_000_012] {
            assert!(
                check(BalanceConfig {
                    maglev: MaglevConfig { table_size: size },
                    ..BalanceConfig::default()
                })
                .contains("is not a prime"),
                "{size}"
            );
        }
        assert!(BalanceConfig {
            maglev: MaglevConfig { table_size: 251 },
            ..BalanceConfig::default()
        }
        .check()
        .is_ok());
        assert!(check(BalanceConfig {
            least_request: LeastRequestConfig { choice_count: 1 },
            ..BalanceConfig::default()
        })
        .contains("choice_count"));
        assert!(check(BalanceConfig {
            common: CommonLbConfig {
                healthy_panic_threshold: Some(Percent { value: 150.0 })
            },
            ..BalanceConfig::default()
        })
        .contains("not a percentage"));
        assert!(check(BalanceConfig {
            ring_hash: RingHashConfig {
                minimum_ring_size: 10,
                maximum_ring_size: 5,
                hash_function: RingHashFunction::XxHash
            },
            ..BalanceConfig::default()
        })
        .contains("minimum_ring_size"));
    }
}
