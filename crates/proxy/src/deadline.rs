//! Request timeouts (`timeouts.request`, answered 504) without a tokio timer per request.
//!
//! A `tokio::time::timeout` per request registers a timer, and when no other timer is due sooner
//! (an idle moment between requests, most of the time at a moderate rate) registering it wakes
//! the runtime's event loop through its eventfd: a `write` syscall and an extra `epoll_wait` turn
//! on about three requests in four (measured with `perf`, see BENCHMARKS.md). Instead, each worker
//! keeps its requests' deadlines in a table, and one sweeper task per worker checks them every
//! tick (a tenth of the timeout, at most 100 ms) while requests are in flight: a request then
//! times out between its timeout and its timeout plus one tick. When the worker has no requests
//! the sweeper waits without a timer, so an idle proxy does not wake up.
//!
//! A worker's table is used from its own thread only; the mutex is there to keep the futures
//! `Send` (hyper spawns HTTP/2 streams as tasks) and is never contended.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What "never" is when a configured timeout overflows the clock (30 years, as tokio does).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The deadlines of one worker's requests, all with the same timeout.
pub struct Deadlines {
    timeout: Duration,
    tick: Duration,
    table: Mutex<Table>,
    /// Wakes the sweeper when the first request arrives at an idle worker.
    busy: Notify,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Slots in use.
    live: usize,
    /// Set by every registration; the sweeper goes idle only after a tick without any.
    registered: bool,
}

enum Slot {
    Free,
    Waiting {
        deadline: Instant,
        waker: Option<Waker>,
    },
    Expired,
}

impl Deadlines {
    /// The listener's request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Deadlines {
            timeout,
            tick: (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(100)),
            table: Mutex::new(Table::default()),
            busy: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the clock of one request: the returned future completes when its timeout has
    /// passed (give or take a tick); dropping it forgets the request.
    pub fn start(self: &Arc<Self>) -> Expiry {
        let now = Instant::now();
        // A timeout too long to add (configured as years) is as good as none.
        let deadline = now
            .checked_add(self.timeout)
            .unwrap_or_else(|| now + FAR_FUTURE);
        let mut t = self.lock();
        let waiting = Slot::Waiting {
            deadline,
            waker: None,
        };
        let slot = match t.free.pop() {
            Some(i) => {
                t.slots[i] = waiting;
                i
            }
            None => {
                t.slots.push(waiting);
                t.slots.len() - 1
            }
        };
        t.live += 1;
        let first = !t.registered && t.live == 1;
        t.registered = true;
        drop(t);
        if first {
            self.busy.notify_one();
        }
        Expiry {
            deadlines: self.clone(),
            slot,
        }
    }

    /// Expires what is due and wakes those requests.
    fn sweep(&self, now: Instant) {
        let mut due = Vec::new();
        {
            let mut t = self.lock();
            for slot in &mut t.slots {
                if let Slot::Waiting { deadline, waker } = slot {
                    if *deadline <= now {
                        due.extend(waker.take());
                        *slot = Slot::Expired;
                    }
                }
            }
        }
        for w in due {
            w.wake();
        }
    }

    /// Runs for as long as the worker does: sweeps every tick while requests come, waits for the
    /// next one (without a timer) once a whole tick has passed without any.
    pub async fn sweeper(self: Arc<Self>) {
        loop {
            self.busy.notified().await;
            let mut tick = tokio::time::interval(self.tick);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                self.sweep(Instant::now());
                let mut t = self.lock();
                if t.live == 0 && !t.registered {
                    break;
                }
                t.registered = false;
            }
        }
    }
}

/// A request's time limit: the listener's (from its deadline table), one of its own (asked for
/// with `x-envoy-upstream-rq-timeout-ms`, or its route's `timeout`, on a timer of its own), or
/// none.
pub enum Limit {
    Listener(Expiry),
    Own(Pin<Box<tokio::time::Sleep>>),
    None,
}

impl Limit {
    /// The listener's limit, or the request's own (zero: none).
    pub fn of(deadlines: &Arc<Deadlines>, own: Option<Duration>) -> Limit {
        match own {
            None => Limit::Listener(deadlines.start()),
            Some(Duration::ZERO) => Limit::None,
            Some(d) => Limit::Own(Box::pin(tokio::time::sleep(d))),
        }
    }
}

impl Future for Limit {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            Limit::Listener(e) => Pin::new(e).poll(cx),
            Limit::Own(s) => s.as_mut().poll(cx),
            Limit::None => Poll::Pending,
        }
    }
}

/// One request's timeout; see [`Deadlines::start`].
pub struct Expiry {
    deadlines: Arc<Deadlines>,
    slot: usize,
}

impl Future for Expiry {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut t = self.deadlines.lock();
        match t.slots.get_mut(self.slot) {
            Some(Slot::Waiting { waker, .. }) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}

impl Drop for Expiry {
    fn drop(&mut self) {
        let mut t = self.deadlines.lock();
        if let Some(slot) = t.slots.get_mut(self.slot) {
            *slot = Slot::Free;
            t.free.push(self.slot);
            t.live -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_after_the_timeout_within_a_tick_and_forgets_dropped_requests() {
        let d = Deadlines::new(Duration::from_millis(500));
        tokio::spawn(d.clone().sweeper());
        let started = tokio::time::Instant::now();
        let a = d.start();
        let b = d.start();
        drop(b);
        a.await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took <= Duration::from_millis(600),
            "{took:?}"
        );
        assert_eq!(d.lock().live, 0);
        assert_eq!(d.lock().free.len(), 2, "both slots are reused");

        // The sweeper goes idle, and a new request wakes it again.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = tokio::time::Instant::now();
        d.start().await;
        assert!(started.elapsed() <= Duration::from_millis(600));
        assert_eq!(d.lock().slots.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_of_years_does_not_overflow() {
        let d = Deadlines::new(Duration::MAX);
        tokio::spawn(d.clone().sweeper());
        let e = d.start();
        let later = tokio::time::sleep(Duration::from_secs(3600));
        tokio::select! {
            _ = e => panic!("expired"),
            _ = later => {}
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_finishes_in_time_is_not_expired() {
        let d = Deadlines::new(Duration::from_millis(200));
        tokio::spawn(d.clone().sweeper());
        let e = d.start();
        let quick = tokio::time::sleep(Duration::from_millis(100));
        tokio::select! {
            _ = e => panic!("expired early"),
            _ = quick => {}
        }
        assert_eq!(d.lock().live, 0);
    }
}
