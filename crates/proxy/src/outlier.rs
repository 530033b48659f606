//! Passive health checking of a cluster's endpoints (Envoy's `outlier_detection`, consecutive
//! 5xx): an endpoint that fails `consecutive_5xx` requests in a row is taken out of the
//! round-robin for a while, so that a crashed or overloaded replica stops getting every Nth
//! request (and every retry's first attempt) until it may have recovered.
//!
//! Failures are 5xx answers and the failures the proxy answers 5xx for itself: connect
//! failures, resets, timeouts (Envoy's default, `split_external_local_origin_errors: false`).
//! The n-th ejection in a row lasts n × `base_ejection_time`, at most `max_ejection_time`; an
//! endpoint that answers well after an ejection starts again from one. At most
//! `max_ejection_percent` of the endpoints are out at once (at least one may always be), and
//! should too few endpoints be left, requests go to all of them (Envoy's panic routing, see
//! `balance`) rather than nowhere.
//!
//! The state is shared by the workers of a listener (atomics, no lock): one worker's failures
//! count for all, as Envoy's detector aggregates its workers'.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::OutlierDetection;

/// One cluster's endpoints, as the detector sees them (in the cluster's endpoint order).
#[derive(Debug)]
pub struct Outliers {
    consecutive_5xx: u32,
    base: Duration,
    max: Duration,
    max_percent: u32,
    /// The clock the `ejected_until` values count milliseconds from.
    epoch: Instant,
    endpoints: Vec<Health>,
}

#[derive(Debug, Default)]
struct Health {
    /// Failures in a row.
    failures: AtomicU32,
    /// Milliseconds from `epoch` until which it is out (0: never ejected).
    ejected_until: AtomicU64,
    /// Ejections in a row (no good answer in between): the next one lasts that much longer.
    ejections: AtomicU32,
}

/// What the detector did with a failure.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Counted,
    Ejected(Duration),
}

impl Outliers {
    pub fn new(c: &OutlierDetection, endpoints: usize) -> Self {
        Outliers {
            consecutive_5xx: c.consecutive_5xx,
            base: c.base_ejection_time,
            max: c.max_ejection_time,
            max_percent: c.max_ejection_percent,
            epoch: Instant::now(),
            endpoints: (0..endpoints).map(|_| Health::default()).collect(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether endpoint `i` takes requests now.
    pub fn available(&self, i: usize) -> bool {
        let until = self.endpoints[i].ejected_until.load(Ordering::Relaxed);
        until == 0 || until <= self.now_ms()
    }

    /// A good answer from endpoint `i`.
    pub fn succeeded(&self, i: usize) {
        let h = &self.endpoints[i];
        // Loads first: the common case writes nothing, so workers do not share a dirty line.
        if h.failures.load(Ordering::Relaxed) != 0 {
            h.failures.store(0, Ordering::Relaxed);
        }
        if h.ejections.load(Ordering::Relaxed) != 0 && self.available(i) {
            h.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A failure of endpoint `i`; ejects it when it is the `consecutive_5xx`-th in a row and
    /// the cap on ejected endpoints allows.
    pub fn failed(&self, i: usize) -> Verdict {
        let h = &self.endpoints[i];
        let failures = h.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < self.consecutive_5xx || !self.available(i) {
            return Verdict::Counted;
        }
        let now = self.now_ms();
        let out = self
            .endpoints
            .iter()
            .filter(|e| e.ejected_until.load(Ordering::Relaxed) > now)
            .count();
        let cap = (self.endpoints.len() * self.max_percent as usize / 100).max(1);
        if out >= cap {
            return Verdict::Counted;
        }
        let n = h.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let time = self.base.saturating_mul(n).min(self.max);
        let until = now.saturating_add(u64::try_from(time.as_millis()).unwrap_or(u64::MAX));
        h.ejected_until.store(until.max(1), Ordering::Relaxed);
        h.failures.store(0, Ordering::Relaxed);
        Verdict::Ejected(time)
    }

    /// How many endpoints are out now.
    pub fn ejected(&self) -> usize {
        (0..self.endpoints.len())
            .filter(|&i| !self.available(i))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(endpoints: usize, percent: u32) -> Outliers {
        Outliers::new(
            &OutlierDetection {
                consecutive_5xx: 3,
                base_ejection_time: Duration::from_millis(100),
                max_ejection_time: Duration::from_millis(250),
                max_ejection_percent: percent,
            },
            endpoints,
        )
    }

    #[test]
    fn the_nth_failure_in_a_row_ejects_and_a_success_between_resets_the_count() {
        let o = detector(4, 50);
        assert_eq!(o.failed(0), Verdict::Counted);
        assert_eq!(o.failed(0), Verdict::Counted);
        o.succeeded(0);
        assert_eq!(o.failed(0), Verdict::Counted);
        assert_eq!(o.failed(0), Verdict::Counted);
        assert!(o.available(0));
        assert_eq!(o.failed(0), Verdict::Ejected(Duration::from_millis(100)));
        assert!(!o.available(0));
        assert_eq!(o.ejected(), 1);
    }

    #[test]
    fn ejections_in_a_row_last_longer_up_to_the_maximum_and_reset_after_a_good_answer() {
        let o = detector(2, 50);
        let eject = |o: &Outliers| {
            o.failed(1);
            o.failed(1);
            o.failed(1)
        };
        assert_eq!(eject(&o), Verdict::Ejected(Duration::from_millis(100)));
        std::thread::sleep(Duration::from_millis(120));
        assert!(o.available(1), "back after its time");
        assert_eq!(eject(&o), Verdict::Ejected(Duration::from_millis(200)));
        std::thread::sleep(Duration::from_millis(220));
        assert_eq!(eject(&o), Verdict::Ejected(Duration::from_millis(250)));
        std::thread::sleep(Duration::from_millis(270));
        o.succeeded(1);
        assert_eq!(eject(&o), Verdict::Ejected(Duration::from_millis(100)));
    }

    #[test]
    fn at_most_max_ejection_percent_are_out_but_always_one_may_be() {
        let o = detector(4, 50);
        for i in 0..4 {
            for _ in 0..3 {
                o.failed(i);
            }
        }
        assert_eq!(o.ejected(), 2);
        let one = detector(3, 10);
        for i in 0..3 {
            for _ in 0..3 {
                one.failed(i);
            }
        }
        assert_eq!(
            one.ejected(),
            1,
            "10% of 3 rounds to none; one may go anyway"
        );
    }
}
