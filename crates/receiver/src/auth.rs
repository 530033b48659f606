//! Who may send: a check of each request's headers before its body is read (the OTel
//! Collector's `auth: { authenticator: … }` on a receiver).
//!
//! The receiver crate knows no credential schemes: an [`Authenticate`] says yes or no (and why)
//! from the headers, and this module turns a no into the protocol's answer: HTTP 401 with the
//! reason, gRPC `UNAUTHENTICATED`. CORS preflights are answered before the check (a browser
//! sends no credentials with them), as in the OTel Collector, where CORS wraps authentication.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{self, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::SharedString;

use crate::metrics::Origin;

/// Decides whether a request's headers carry credentials this receiver accepts.
pub trait Authenticate: Send + Sync + 'static {
    /// Ok when they do; else a short reason for the client (no secrets in it).
    fn check(&self, headers: &HeaderMap) -> Result<(), String>;

    /// The `WWW-Authenticate` challenge an HTTP 401 carries (e.g. `Basic realm="…"`), if any.
    fn challenge(&self) -> Option<HeaderValue> {
        None
    }
}

/// A shared authenticator, as the receivers take it.
pub type Authenticator = Arc<dyn Authenticate>;

/// `router` (the HTTP receiver `receiver`, as its requests are counted) with every request
/// checked by `auth` first: 401 with the reason when refused.
pub fn require(router: axum::Router, auth: Authenticator, receiver: &str) -> axum::Router {
    let origin = Origin {
        receiver: SharedString::from(receiver.to_owned()),
        transport: "http",
    };
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let (auth, origin) = (Arc::clone(&auth), origin.clone());
            async move {
                match auth.check(req.headers()) {
                    Ok(()) => next.run(req).await,
                    Err(why) => {
                        origin.unauthenticated();
                        refused(&*auth, why)
                    }
                }
            }
        },
    ))
}

fn refused(auth: &dyn Authenticate, why: String) -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        format!("unauthenticated: {why}\n"),
    )
        .into_response();
    if let Some(challenge) = auth.challenge() {
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, challenge);
    }
    response
}
