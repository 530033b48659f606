//! Retrying a failed request upstream (Envoy's `retry_policy`): which failures a policy
//! retries, the jittered back-off between attempts, the cap on retries in flight (a policy's
//! `max_active_retries`, or the cluster's `retry_budget`: retries in flight at most a share of
//! the requests in flight, so that a failing upstream gets a bounded extra load rather than a
//! retry storm), and the copy of the request body a retry sends again.
//!
//! Bodies stream through the proxy, so a retry can only resend a body that was kept: while a
//! request with a policy streams upstream, [`Recording`] keeps its frames (reference-counted
//! `Bytes`, not copies) up to [`BODY_LIMIT`]. A request whose body was larger, or was not read to
//! its end when the attempt failed (an upstream answering before reading it), is not retried:
//! its failure is answered as it is, as Envoy does once its retry buffer overflows.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::config::{RetryOn, RetryPolicyConfig};

/// The most request body kept for a retry (Envoy's default per-request buffer is 1 MiB; a
/// mesh's retriable calls are mostly small).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A cluster's retries in flight, counted across its workers and policies, and its
/// `retry_budget` if it has one.
#[derive(Debug, Default)]
pub struct RetriesInFlight {
    n: AtomicUsize,
    budget: Option<Budget>,
}

/// Envoy's `retry_budget`: at most `percent` of the cluster's requests in flight may be
/// retries, and `min` at any rate.
#[derive(Debug)]
pub struct Budget {
    pub percent: f64,
    pub min: usize,
    /// The cluster's requests in flight (its circuit breaker's count).
    pub requests: Arc<crate::circuit_breaker::Gate>,
}

impl RetriesInFlight {
    pub fn with_budget(budget: Budget) -> Self {
        RetriesInFlight {
            n: AtomicUsize::new(0),
            budget: Some(budget),
        }
    }

    /// How many may be in flight now: the budget's share (replacing `max_active_retries`, as
    /// in Envoy), else `max_active`.
    fn limit(&self, max_active: usize) -> usize {
        match &self.budget {
            Some(b) => {
                let share = (b.percent / 100.0 * b.requests.in_flight() as f64) as usize;
                share.max(b.min)
            }
            None => max_active,
        }
    }
}

/// How an attempt ended, as far as retrying is concerned.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// The upstream answered with these response headers.
    Answered(StatusCode, &'a HeaderMap),
    /// No connection could be made.
    ConnectFailure,
    /// An HTTP/2 upstream refused the stream before processing it.
    RefusedStream,
    /// The connection or stream reset, or closed, before the response headers.
    Reset,
    /// No response headers within `per_try_timeout`.
    PerTryTimeout,
}

/// A route's retry policy, with its cluster's count of retries in flight (shared by the
/// listener's workers).
#[derive(Debug)]
pub struct RetryPolicy {
    on: Vec<RetryOn>,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    status_codes: Vec<u16>,
    base: Duration,
    max: Duration,
    max_active: usize,
    active: Arc<RetriesInFlight>,
}

impl RetryPolicy {
    /// `active`: the cluster's retries in flight, which `max_active_retries` caps.
    pub fn new(c: &RetryPolicyConfig, active: Arc<RetriesInFlight>) -> Self {
        let base = c.retry_back_off.base_interval;
        RetryPolicy {
            on: c.retry_on.clone(),
            num_retries: c.num_retries,
            per_try_timeout: c.per_try_timeout,
            status_codes: c.retriable_status_codes.clone(),
            base,
            max: c.retry_back_off.max_interval.unwrap_or(base * 10),
            max_active: c.max_active_retries,
            active,
        }
    }

    /// The policy a request asked for with its `x-envoy-*` headers (see `envoy_headers`), on
    /// top of the route's `base`: its conditions added, `x-envoy-max-retries` for the number,
    /// its per-try timeout. `None` when it asked for nothing that changes the policy (and when
    /// it asked for a number of retries without any condition and the route has no policy,
    /// which Envoy ignores too). `active`: the cluster's retries in flight.
    pub fn asked(
        base: Option<&RetryPolicy>,
        active: &Arc<RetriesInFlight>,
        asked: &crate::envoy_headers::Asked,
    ) -> Option<RetryPolicy> {
        if asked.retry_on.is_empty()
            && asked.max_retries.is_none()
            && asked.per_try_timeout.is_none()
        {
            return None;
        }
        let mut policy = match base {
            Some(b) => RetryPolicy {
                on: b.on.clone(),
                num_retries: b.num_retries,
                per_try_timeout: b.per_try_timeout,
                status_codes: b.status_codes.clone(),
                base: b.base,
                max: b.max,
                max_active: b.max_active,
                active: b.active.clone(),
            },
            None if asked.retry_on.is_empty() => return None,
            // Envoy's defaults: one retry, 25 ms back-off up to 250 ms, three in flight.
            None => RetryPolicy {
                on: Vec::new(),
                num_retries: 1,
                per_try_timeout: None,
                status_codes: Vec::new(),
                base: Duration::from_millis(25),
                max: Duration::from_millis(250),
                max_active: 3,
                active: active.clone(),
            },
        };
        for on in &asked.retry_on {
            if !policy.on.contains(on) {
                policy.on.push(*on);
            }
        }
        if let Some(n) = asked.max_retries {
            policy.num_retries = n;
        }
        if asked.per_try_timeout.is_some() {
            policy.per_try_timeout = asked.per_try_timeout;
        }
        Some(policy)
    }

    /// Whether this policy retries an attempt that ended so.
    pub fn retries(&self, outcome: Outcome<'_>) -> bool {
        self.on.iter().any(|on| match (on, outcome) {
            (RetryOn::ServerError, Outcome::Answered(s, _)) => s.is_server_error(),
            (RetryOn::GatewayError, Outcome::Answered(s, _)) => matches!(s.as_u16(), 502..=504),
            // No answer: the proxy answers 502 or 504 itself.
            (RetryOn::ServerError | RetryOn::GatewayError, _) => true,
            (RetryOn::Reset, o) => matches!(o, Outcome::Reset | Outcome::PerTryTimeout),
            (RetryOn::ConnectFailure, o) => matches!(o, Outcome::ConnectFailure),
            (RetryOn::RefusedStream, o) => matches!(o, Outcome::RefusedStream),
            (RetryOn::Retriable4xx, Outcome::Answered(s, _)) => s == StatusCode::CONFLICT,
            (RetryOn::RetriableStatusCodes, Outcome::Answered(s, _)) => {
                self.status_codes.contains(&s.as_u16())
            }
            (grpc, Outcome::Answered(_, headers)) => {
                let wanted = match grpc {
                    RetryOn::GrpcCancelled => "1",
                    RetryOn::GrpcDeadlineExceeded => "4",
                    RetryOn::GrpcResourceExhausted => "8",
                    RetryOn::GrpcInternal => "13",
                    RetryOn::GrpcUnavailable => "14",
                    _ => return false,
                };
                // A trailers-only gRPC answer carries its status in the headers.
                headers
                    .get("grpc-status")
                    .is_some_and(|v| v.as_bytes() == wanted.as_bytes())
            }
            _ => false,
        })
    }

    /// The wait before retry `n` (1 for the first): random in [0, base × (2ⁿ − 1)), capped at
    /// the maximum interval.
    pub fn back_off(&self, n: u32) -> Duration {
        let factor = (1u64 << n.min(32)) - 1;
        let ceiling = self
            .base
            .checked_mul(u32::try_from(factor).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..nanos.max(1)))
    }

    /// A place among the retries in flight, or `None` when `max_active_retries` (or the
    /// budget's share) are.
    pub fn admit(&self) -> Option<Admitted<'_>> {
        let limit = self.active.limit(self.max_active);
        let mut n = self.active.n.load(Ordering::Relaxed);
        loop {
            if n >= limit {
                return None;
            }
            match self.active.n.compare_exchange_weak(
                n,
                n + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Admitted(&self.active.n)),
                Err(now) => n = now,
            }
        }
    }
}

/// One retry in flight; its place is given back when dropped.
pub struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a [`Recording`] kept of the body so far.
#[derive(Default)]
struct Kept {
    data: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    bytes: usize,
    ended: bool,
    overflowed: bool,
}

/// The body kept by a [`Recording`], for a retry to send again.
#[derive(Clone, Default)]
pub struct Tape(Arc<Mutex<Kept>>);

impl Tape {
    /// The whole body again, if it was read to its end and within [`BODY_LIMIT`].
    pub fn replay(&self) -> Option<Replay> {
        let kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (kept.ended && !kept.overflowed).then(|| Replay {
            data: kept.data.iter().cloned().collect(),
            trailers: kept.trailers.clone(),
            remaining: kept.bytes as u64,
        })
    }
}

/// A request body streaming upstream while its frames are kept on a [`Tape`].
pub struct Recording<B> {
    inner: B,
    tape: Tape,
}

impl<B: Body<Data = Bytes>> Recording<B> {
    pub fn new(inner: B) -> (Self, Tape) {
        let tape = Tape::default();
        if inner.is_end_stream() {
            tape.0.lock().unwrap_or_else(PoisonError::into_inner).ended = true;
        }
        (
            Recording {
                inner,
                tape: tape.clone(),
            },
            tape,
        )
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Recording<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let mut kept = self.tape.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if !kept.overflowed => {
                if let Some(data) = frame.data_ref() {
                    kept.bytes += data.len();
                    if kept.bytes > BODY_LIMIT {
                        kept.overflowed = true;
                        kept.data = Vec::new();
                    } else {
                        kept.data.push(data.clone());
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    kept.trailers = Some(trailers.clone());
                }
                if self.inner.is_end_stream() {
                    kept.ended = true;
                }
            }
            Poll::Ready(None) => kept.ended = true,
            _ => {}
        }
        drop(kept);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A kept body sent again.
#[derive(Clone)]
pub struct Replay {
    data: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    remaining: u64,
}

impl Replay {
    /// No body at all.
    pub fn empty() -> Self {
        Replay {
            data: VecDeque::new(),
            trailers: None,
            remaining: 0,
        }
    }
}

impl Body for Replay {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.data.pop_front() {
            self.remaining -= data.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryBackOff;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn policy(on: &[RetryOn]) -> RetryPolicy {
        RetryPolicy::new(
            &RetryPolicyConfig {
                retry_on: on.to_vec(),
                num_retries: 2,
                per_try_timeout: None,
                retriable_status_codes: vec![429],
                retry_back_off: RetryBackOff::default(),
                max_active_retries: 2,
            },
            Arc::default(),
        )
    }

    #[test]
    fn conditions_retry_what_envoy_retries() {
        let none = HeaderMap::new();
        let mut unavailable = HeaderMap::new();
        unavailable.insert("grpc-status", http::HeaderValue::from_static("14"));
        let answered = |code: u16, h| Outcome::Answered(StatusCode::from_u16(code).unwrap(), h);
        let cases: &[(RetryOn, Outcome, bool)] = &[
            (RetryOn::ServerError, answered(500, &none), true),
            (RetryOn::ServerError, answered(404, &none), false),
            (RetryOn::ServerError, Outcome::ConnectFailure, true),
            (RetryOn::ServerError, Outcome::PerTryTimeout, true),
            (RetryOn::GatewayError, answered(500, &none), false),
            (RetryOn::GatewayError, answered(503, &none), true),
            (RetryOn::GatewayError, Outcome::Reset, true),
            (RetryOn::Reset, Outcome::Reset, true),
            (RetryOn::Reset, Outcome::PerTryTimeout, true),
            (RetryOn::Reset, Outcome::ConnectFailure, false),
            (RetryOn::Reset, answered(503, &none), false),
            (RetryOn::ConnectFailure, Outcome::ConnectFailure, true),
            (RetryOn::ConnectFailure, Outcome::Reset, false),
            (RetryOn::RefusedStream, Outcome::RefusedStream, true),
            (RetryOn::RefusedStream, Outcome::Reset, false),
            (RetryOn::Retriable4xx, answered(409, &none), true),
            (RetryOn::Retriable4xx, answered(429, &none), false),
            (RetryOn::RetriableStatusCodes, answered(429, &none), true),
            (RetryOn::RetriableStatusCodes, answered(503, &none), false),
            (RetryOn::GrpcUnavailable, answered(200, &unavailable), true),
            (RetryOn::GrpcUnavailable, answered(200, &none), false),
            (RetryOn::GrpcInternal, answered(200, &unavailable), false),
            (RetryOn::GrpcUnavailable, Outcome::Reset, false),
        ];
        for (on, outcome, want) in cases {
            assert_eq!(
                policy(&[*on]).retries(*outcome),
                *want,
                "{on:?} on {outcome:?}"
            );
        }
    }

    #[test]
    fn back_off_is_jittered_exponential_and_capped() {
        let p = policy(&[RetryOn::Reset]); // base 25 ms, max 250 ms
        for _ in 0..200 {
            assert!(p.back_off(1) < Duration::from_millis(25));
            assert!(p.back_off(2) < Duration::from_millis(75));
            assert!(p.back_off(40) < Duration::from_millis(250));
        }
        let longest = (0..200).map(|_| p.back_off(3)).max().unwrap();
        assert!(longest > Duration::from_millis(100), "{longest:?}");
    }

    #[test]
    fn retries_in_flight_are_capped_across_the_policies_of_a_cluster() {
        let p = policy(&[RetryOn::Reset]);
        // Another worker's (or route's) policy for the same cluster shares the count.
        let other = RetryPolicy::new(
            &RetryPolicyConfig {
                retry_on: vec![RetryOn::Reset],
                num_retries: 1,
                per_try_timeout: None,
                retriable_status_codes: Vec::new(),
                retry_back_off: RetryBackOff::default(),
                max_active_retries: 2,
            },
            p.active.clone(),
        );
        let a = p.admit().unwrap();
        let _b = other.admit().unwrap();
        assert!(p.admit().is_none());
        assert!(other.admit().is_none());
        drop(a);
        assert!(other.admit().is_some());
    }

    #[test]
    fn a_retry_budget_lets_a_share_of_the_requests_in_flight_retry() {
        let cb: crate::circuit_breaker::CircuitBreakers = serde_yaml::from_str(
            "{ retry_budget: { budget_percent: { value: 25 }, min_retry_concurrency: 2 } }",
        )
        .unwrap();
        assert_eq!(cb.max_requests, 1024, "Envoy's default");
        let gate = Arc::new(crate::circuit_breaker::Gate::new(&cb));
        let b = cb.retry_budget.unwrap();
        let in_flight = Arc::new(RetriesInFlight::with_budget(Budget {
            percent: b.percent(),
            min: b.min_retry_concurrency,
            requests: gate.clone(),
        }));
        // max_active_retries says 1; the budget replaces it.
        let c = RetryPolicyConfig {
            retry_on: vec![RetryOn::Reset],
            num_retries: 1,
            per_try_timeout: None,
            retriable_status_codes: Vec::new(),
            retry_back_off: RetryBackOff::default(),
            max_active_retries: 1,
        };
        let p = RetryPolicy::new(&c, in_flight);
        // Four requests in flight: 25% is 1, the minimum 2 wins.
        let requests: Vec<_> = (0..4).map(|_| gate.enter().unwrap()).collect();
        let kept: Vec<_> = (0..2).map(|_| p.admit().unwrap()).collect();
        assert!(p.admit().is_none());
        // Twenty in flight: 5 may retry.
        let more: Vec<_> = (0..16).map(|_| gate.enter().unwrap()).collect();
        let three: Vec<_> = (0..3).map(|_| p.admit().unwrap()).collect();
        assert!(p.admit().is_none());
        drop((kept, three, more, requests));
        assert!(p.admit().is_some(), "the minimum again");
        let bad: crate::circuit_breaker::CircuitBreakers =
            serde_yaml::from_str("{ retry_budget: { budget_percent: { value: 120 } } }").unwrap();
        assert!(bad.check().unwrap_err().contains("not a percentage"));
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_replays_whole_with_trailers() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
            Ok(Frame::trailers(trailers)),
        ];
        let (recording, tape) = Recording::new(StreamBody::new(futures::stream::iter(frames)));
        assert!(tape.replay().is_none(), "nothing read yet");
        let first = recording.collect().await.unwrap();
        assert_eq!(first.trailers().unwrap()["grpc-status"], "0");
        let replay = tape.replay().expect("read to its end");
        assert_eq!(replay.size_hint().exact(), Some(4));
        let again = replay.collect().await.unwrap();
        assert_eq!(again.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(again.to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn an_empty_body_replays_at_once_and_a_big_one_never() {
        let (_, tape) = Recording::new(Full::new(Bytes::new()));
        assert!(tape.replay().unwrap().is_end_stream());
        let big = Bytes::from(vec![7u8; BODY_LIMIT + 1]);
        let (recording, tape) = Recording::new(Full::new(big));
        recording.collect().await.unwrap();
        assert!(tape.replay().is_none());
    }
}
