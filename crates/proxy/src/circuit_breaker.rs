//! A cluster's circuit breaker (Envoy's `circuit_breakers` `max_requests`): at most so many
//! requests in flight to the cluster at once, counted across the workers; one more is answered
//! 503 at once (response flag `UO`, `x-envoy-overloaded: true`) rather than queued behind an
//! upstream that is already slow, so that overload fails fast instead of spreading.
//!
//! A request is in flight from when it is forwarded until its response has been sent to the end
//! (or the client left); its retries stay within its one place.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Deserialize;

/// A cluster's (or a listener's single upstream's) `circuit_breakers`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakers {
    /// Envoy's default 1024.
    #[serde(default = "default_max_requests")]
    pub max_requests: usize,
    /// Retries in flight at most a share of the requests in flight (instead of a retry
    /// policy's `max_active_retries`), as Envoy's and Linkerd's budgets.
    #[serde(default)]
    pub retry_budget: Option<RetryBudget>,
}

fn default_max_requests() -> usize {
    1024
}

/// Envoy's `retry_budget`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Percent of the requests in flight that may be retries (Envoy's default 20).
    #[serde(default)]
    pub budget_percent: Option<crate::balance::Percent>,
    /// Retries allowed in flight whatever the share (Envoy's default 3).
    #[serde(default = "default_min_retry_concurrency")]
    pub min_retry_concurrency: usize,
}

fn default_min_retry_concurrency() -> usize {
    3
}

impl RetryBudget {
    pub fn percent(&self) -> f64 {
        self.budget_percent.map_or(20.0, |p| p.value)
    }
}

impl CircuitBreakers {
    pub fn check(&self) -> Result<(), String> {
        if self.max_requests == 0 {
            return Err("max_requests 0 would let no request through".to_owned());
        }
        if let Some(b) = &self.retry_budget {
            let p = b.percent();
            if !(0.0..=100.0).contains(&p) {
                return Err(format!(
                    "retry_budget.budget_percent {p} is not a percentage"
                ));
            }
        }
        Ok(())
    }
}

/// The count of a cluster's requests in flight, shared by the workers.
#[derive(Debug)]
pub struct Gate {
    in_flight: Arc<AtomicUsize>,
    max: usize,
}

/// A place taken in the gate, given back when dropped.
#[derive(Debug)]
pub struct Inside(Arc<AtomicUsize>);

impl Inside {
    /// Counts one more in `count` until dropped (a request in flight to an endpoint, for
    /// `LEAST_REQUEST` balancing).
    pub fn count(count: &Arc<AtomicUsize>) -> Inside {
        count.fetch_add(1, Ordering::Relaxed);
        Inside(count.clone())
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    pub fn new(c: &CircuitBreakers) -> Self {
        Gate {
            in_flight: Arc::default(),
            max: c.max_requests,
        }
    }

    /// A place, unless `max_requests` are in flight already.
    pub fn enter(&self) -> Option<Inside> {
        let mut n = self.in_flight.load(Ordering::Relaxed);
        loop {
            if n >= self.max {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                n,
                n + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Inside(self.in_flight.clone())),
                Err(now) => n = now,
            }
        }
    }

    /// The most requests in flight at once.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_max_requests_are_inside_and_leaving_makes_room() {
        let g = Gate::new(&CircuitBreakers {
            max_requests: 2,
            retry_budget: None,
        });
        let a = g.enter().unwrap();
        let b = g.enter().unwrap();
        assert!(g.enter().is_none());
        assert_eq!(g.in_flight(), 2);
        drop(a);
        let c = g.enter();
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(g.in_flight(), 0);
        assert!(CircuitBreakers {
            max_requests: 0,
            retry_budget: None
        }
        .check()
        .is_err());
    }
}
