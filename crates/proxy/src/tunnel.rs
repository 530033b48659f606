//! Protocol upgrades (WebSocket, and any other HTTP/1.1 `Upgrade`): the handshake is proxied as a
//! request, and once the upstream answers `101 Switching Protocols` both connections are handed
//! to a tunnel that copies bytes each way until either side closes.
//!
//! `Upgrade` and `Connection` are hop-by-hop, so a proxy drops them unless it takes part in the
//! upgrade, as Envoy does for the protocols in its `upgrade_configs` (WebSocket by default). Here
//! every protocol a client asks for is passed on except `h2c`: upgrading a cleartext connection to
//! HTTP/2 concerns this hop only, and the proxy already speaks HTTP/2 with prior knowledge.
//!
//! The handshake goes out on a connection of its own, never pooled: after a `101` it belongs to
//! the tunnel. The span covers the whole exchange, handshake to close, as Envoy's does (its
//! stream lasts as long as the upgraded connection): `http.status_code` 101, `request_size` and
//! `response_size` the bytes carried each way.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::forward::Finish;
use crate::stats::Stats;

/// The protocol an HTTP/1.1 request asks to switch to (its `Upgrade` header), when it asks for
/// one this proxy tunnels: `Connection` must list `upgrade`, and `h2c` is not tunnelled.
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !asks {
        return None;
    }
    let protocol = headers.get(header::UPGRADE)?;
    let first = protocol.to_str().ok()?.split(',').next()?.trim();
    if first.is_empty() || first.eq_ignore_ascii_case("h2c") {
        return None;
    }
    Some(protocol.clone())
}

/// Puts back the two headers of an upgrade after the hop-by-hop ones were removed.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// An upgraded connection counted as open while it lives, with its span: finished with the
/// bytes carried when the tunnel closes, or, when the proxy stops first and the tunnel is dropped
/// mid-way, as cut short.
pub struct Open {
    count: Arc<watch::Sender<usize>>,
    stats: Arc<Stats>,
    finish: Option<Finish>,
}

impl Open {
    pub fn new(
        count: &Arc<watch::Sender<usize>>,
        stats: &Arc<Stats>,
        finish: Option<Finish>,
    ) -> Open {
        count.send_modify(|open| *open += 1);
        stats.tunnels_open.fetch_add(1, Ordering::Relaxed);
        Open {
            count: count.clone(),
            stats: stats.clone(),
            finish,
        }
    }

    fn done(mut self, sent: u64, received: u64, failed: Option<String>) {
        if let Some(f) = self.finish.take() {
            f.tunnel_done(sent, received, failed);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            f.tunnel_done(
                0,
                0,
                Some("the proxy stopped with the connection open".into()),
            );
        }
        self.count
            .send_modify(|open| *open = open.saturating_sub(1));
        self.stats.tunnels_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections until
/// both directions are closed (or one fails), then finishes the span with what was carried.
pub async fn run(downstream: OnUpgrade, upstream: OnUpgrade, open: Open) {
    let (down, up) = match tokio::try_join!(downstream, upstream) {
        Ok(both) => both,
        Err(e) => return open.done(0, 0, Some(format!("protocol upgrade failed: {e}"))),
    };
    let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
    match tokio::io::copy_bidirectional(&mut down, &mut up).await {
        Ok((sent, received)) => open.done(sent, received, None),
        Err(e) => open.done(0, 0, Some(format!("upgraded connection failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn websocket_and_other_protocols_are_tunnelled_h2c_and_half_requests_are_not() {
        let ws = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(requested(&ws).unwrap(), "websocket");
        // `upgrade` among other tokens, in another of several Connection headers.
        let listed = headers(&[
            ("connection", "keep-alive"),
            ("connection", "foo, UPGRADE"),
            ("upgrade", "custom/1, websocket"),
        ]);
        assert_eq!(requested(&listed).unwrap(), "custom/1, websocket");
        for refused in [
            headers(&[("connection", "upgrade"), ("upgrade", "h2c")]),
            headers(&[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "H2C"),
            ]),
            headers(&[("upgrade", "websocket")]),
            headers(&[("connection", "upgrade")]),
            headers(&[("connection", "upgrade"), ("upgrade", "")]),
            headers(&[("connection", "keep-alive"), ("upgrade", "websocket")]),
        ] {
            assert_eq!(requested(&refused), None, "{refused:?}");
        }
    }

    #[test]
    fn restore_puts_back_exactly_the_upgrade_headers() {
        let mut h = headers(&[("host", "x")]);
        restore(&mut h, HeaderValue::from_static("websocket"));
        assert_eq!(h.len(), 3);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
    }
}
