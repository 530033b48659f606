//! The traffic generator: `GET /checkout` through the edge at a steady rate, counting answers.
//!
//! Requests are paced by a timer, not by answers, so a slow mesh does not slow the offered load
//! (an open-loop generator, like wrk2's). In-flight requests are capped; a request that would
//! exceed the cap is counted as skipped rather than queued.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use crate::topology::ENTRY_PATH;

/// Requests in flight at most.
const MAX_IN_FLIGHT: usize = 512;
/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Counters shared with the progress line.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    /// Answered 2xx.
    pub ok: AtomicU64,
    /// Answered 5xx, not answered, or timed out.
    pub errors: AtomicU64,
    /// Not sent because `MAX_IN_FLIGHT` requests were waiting.
    pub skipped: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// Sends requests to `edge` at `rate` per second until `stop` completes, then waits (bounded by
/// the request timeout) for the ones in flight.
pub async fn run(
    edge: SocketAddr,
    rate: f64,
    counters: Arc<Counters>,
    stop: impl std::future::Future<Output = ()>,
) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build({
            let mut c = HttpConnector::new();
            c.set_nodelay(true);
            c
        });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let url = format!("http://{edge}{ENTRY_PATH}");
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {}
        }
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            counters.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        counters.sent.fetch_add(1, Ordering::Relaxed);
        let (client, counters, url) = (client.clone(), Arc::clone(&counters), url.clone());
        tokio::spawn(async move {
            let ok = matches!(
                tokio::time::timeout(REQUEST_TIMEOUT, get(&client, &url)).await,
                Ok(Ok(true))
            );
            let counter = if ok { &counters.ok } else { &counters.errors };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    // Let the requests in flight finish: their traces should be whole.
    let _ = tokio::time::timeout(
        REQUEST_TIMEOUT,
        in_flight.acquire_many(u32::try_from(MAX_IN_FLIGHT).unwrap_or(u32::MAX)),
    )
    .await;
}

/// One request; `Ok(true)` for a 2xx answer read to its end.
async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let request = hyper::Request::get(url)
        .header(hyper::header::USER_AGENT, "meshtrace-demo-traffic")
        .body(Empty::new())?;
    let response = client.request(request).await?;
    let ok = response.status().is_success();
    response.into_body().collect().await?;
    Ok(ok)
}
