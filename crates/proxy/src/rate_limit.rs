//! Local rate limiting (Envoy's `local_ratelimit` filter), per listener or per route: a token
//! bucket shared by the listener's workers; a request that finds it empty is answered 429 at
//! once (`local_rate_limited`, response flag `RL`) instead of reaching the app. With
//! `enable_x_ratelimit_headers: DRAFT_VERSION_03`, every answer says how much is left
//! (`x-ratelimit-limit`, `-remaining`, `-reset` in seconds), as Envoy's do.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};
use serde::Deserialize;

/// A listener's or route's `local_rate_limit` block.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalRateLimitConfig {
    pub token_bucket: TokenBucketConfig,
    /// `DRAFT_VERSION_03` adds the `x-ratelimit-*` headers to answers; `OFF` (default) does not.
    #[serde(default)]
    pub enable_x_ratelimit_headers: XRateLimitHeaders,
}

#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucketConfig {
    /// The most tokens the bucket holds (and starts with).
    pub max_tokens: u32,
    /// Tokens added every `fill_interval` (default 1).
    #[serde(default = "one")]
    pub tokens_per_fill: u32,
    #[serde(with = "crate::config::dur")]
    pub fill_interval: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum XRateLimitHeaders {
    #[default]
    #[serde(rename = "OFF")]
    Off,
    #[serde(rename = "DRAFT_VERSION_03")]
    DraftVersion03,
}

fn one() -> u32 {
    1
}

impl LocalRateLimitConfig {
    pub fn check(&self) -> Result<(), String> {
        let b = &self.token_bucket;
        if b.max_tokens == 0 {
            return Err("token_bucket.max_tokens must be at least 1".to_owned());
        }
        if b.tokens_per_fill == 0 {
            return Err("token_bucket.tokens_per_fill must be at least 1".to_owned());
        }
        // Envoy's lower bound: finer fills cost more than they are worth.
        if b.fill_interval < Duration::from_millis(50) {
            return Err("token_bucket.fill_interval must be at least 50ms".to_owned());
        }
        Ok(())
    }
}

/// A token bucket, filled as time passes (counted when asked, no timer).
#[derive(Debug)]
pub struct TokenBucket {
    max: u32,
    per_fill: u32,
    every: Duration,
    headers: XRateLimitHeaders,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: u32,
    /// When the last fill counted happened.
    filled: Instant,
}

/// A request's share of the bucket.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Tokens left, and how long until the next fill.
    remaining: u32,
    reset: Duration,
}

impl TokenBucket {
    pub fn new(c: &LocalRateLimitConfig) -> Self {
        TokenBucket {
            max: c.token_bucket.max_tokens,
            per_fill: c.token_bucket.tokens_per_fill,
            every: c.token_bucket.fill_interval,
            headers: c.enable_x_ratelimit_headers,
            state: Mutex::new(State {
                tokens: c.token_bucket.max_tokens,
                filled: Instant::now(),
            }),
        }
    }

    /// Takes a token if there is one, as of `now`.
    pub fn take(&self, now: Instant) -> Verdict {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let since = now.saturating_duration_since(s.filled);
        let fills = (since.as_nanos() / self.every.as_nanos().max(1)) as u64;
        if fills > 0 {
            let added = fills.saturating_mul(u64::from(self.per_fill));
            s.tokens = (u64::from(s.tokens) + added).min(u64::from(self.max)) as u32;
            s.filled += self
                .every
                .saturating_mul(fills.min(u64::from(u32::MAX)) as u32);
        }
        let allowed = s.tokens > 0;
        if allowed {
            s.tokens -= 1;
        }
        Verdict {
            allowed,
            remaining: s.tokens,
            reset: self
                .every
                .saturating_sub(now.saturating_duration_since(s.filled)),
        }
    }

    /// Adds the `x-ratelimit-*` headers to an answer, when enabled.
    pub fn tell(&self, v: &Verdict, headers: &mut HeaderMap) {
        if self.headers == XRateLimitHeaders::Off {
            return;
        }
        let secs = v.reset.as_secs() + u64::from(v.reset.subsec_nanos() > 0);
        for (name, n) in [
            ("x-ratelimit-limit", u64::from(self.max)),
            ("x-ratelimit-remaining", u64::from(v.remaining)),
            ("x-ratelimit-reset", secs),
        ] {
            headers.insert(name, HeaderValue::from(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(yaml: &str) -> TokenBucket {
        let c: LocalRateLimitConfig = serde_yaml::from_str(yaml).unwrap();
        c.check().unwrap();
        TokenBucket::new(&c)
    }

    #[test]
    fn a_bucket_spends_its_tokens_then_refills_by_the_interval_up_to_its_size() {
        let b =
            bucket("{ token_bucket: { max_tokens: 3, tokens_per_fill: 2, fill_interval: 1s } }");
        let t0 = b.state.lock().unwrap().filled;
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let allowed = |ms: u64| b.take(at(ms)).allowed;
        assert!(allowed(0) && allowed(1) && allowed(2));
        assert!(!allowed(3), "empty");
        assert!(!allowed(999), "not yet a second");
        assert!(allowed(1000) && allowed(1001));
        assert!(!allowed(1002), "two per fill");
        // Ten seconds later: full (3), not twenty.
        assert!(allowed(11_000) && allowed(11_001) && allowed(11_002));
        assert!(!allowed(11_003));
    }

    #[test]
    fn the_headers_say_the_limit_what_is_left_and_when_it_fills() {
        let b = bucket("{ token_bucket: { max_tokens: 5, fill_interval: 10s }, enable_x_ratelimit_headers: DRAFT_VERSION_03 }");
        let t0 = b.state.lock().unwrap().filled;
        let v = b.take(t0 + Duration::from_millis(2500));
        let mut h = HeaderMap::new();
        b.tell(&v, &mut h);
        let get = |n: &str| h.get(n).unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            (
                get("x-ratelimit-limit"),
                get("x-ratelimit-remaining"),
                get("x-ratelimit-reset")
            ),
            ("5".to_owned(), "4".to_owned(), "8".to_owned())
        );
        let off = bucket("{ token_bucket: { max_tokens: 5, fill_interval: 10s } }");
        let mut h = HeaderMap::new();
        off.tell(&off.take(Instant::now()), &mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        for (yaml, want) in [
            (
                "{ token_bucket: { max_tokens: 0, fill_interval: 1s } }",
                "max_tokens must be at least 1",
            ),
            (
                "{ token_bucket: { max_tokens: 1, fill_interval: 10ms } }",
                "at least 50ms",
            ),
        ] {
            let c: LocalRateLimitConfig = serde_yaml::from_str(yaml).unwrap();
            assert!(c.check().unwrap_err().contains(want), "{yaml}");
        }
        for (yaml, want) in [
            ("{ token_bucket: { max_tokens: 1 } }", "fill_interval"),
            ("{ token_bucket: { max_tokens: 1, fill_interval: 1s }, enable_x_ratelimit_headers: ON }", "ON"),
            ("{ token_bucket: { max_tokens: 1, fill_interval: 1s }, filter_enforced: 100 }", "filter_enforced"),
        ] {
            let e = serde_yaml::from_str::<LocalRateLimitConfig>(yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
