//! What a query handler can fail with, and how each API family writes failures.
//!
//! One error type ([`ApiError`]) carries the HTTP status; two wrappers render it the way each
//! API's clients expect: [`V1Error`] as Jaeger's `structuredResponse` envelope
//! (`{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":400,"msg":"..."}]}`), and
//! [`V3Error`] as Jaeger's api_v3 grpc-gateway error (`{"error":{"httpCode":400,"message":"..."}}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::params::ParamError;

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    BadParam(#[from] ParamError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl ApiError {
    /// The message Jaeger uses when a trace id is unknown.
    pub fn trace_not_found() -> Self {
        ApiError::NotFound("trace not found".to_owned())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParam(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn log(&self) {
        if let ApiError::Store(e) = self {
            tracing::error!(error = %e, "query failed in the store");
        }
    }
}

/// `From` conversions into a wrapper for every error a handler meets, so `?` works.
macro_rules! wrap_api_error {
    ($wrapper:ident) => {
        impl From<ApiError> for $wrapper {
            fn from(e: ApiError) -> Self {
                $wrapper(e)
            }
        }
        impl From<ParamError> for $wrapper {
            fn from(e: ParamError) -> Self {
                $wrapper(e.into())
            }
        }
        impl From<store::StoreError> for $wrapper {
            fn from(e: store::StoreError) -> Self {
                $wrapper(e.into())
            }
        }
    };
}

/// An [`ApiError`] written as Jaeger's v1 envelope.
#[derive(Debug)]
pub struct V1Error(pub ApiError);

wrap_api_error!(V1Error);

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        let body = json!({
            "data": null,
            "total": 0,
            "limit": 0,
            "offset": 0,
            "errors": [{ "code": status.as_u16(), "msg": self.0.to_string() }],
        });
        (status, Json(body)).into_response()
    }
}

/// An [`ApiError`] written as Jaeger's api_v3 (grpc-gateway) error.
#[derive(Debug)]
pub struct V3Error(pub ApiError);

wrap_api_error!(V3Error);

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        let body = json!({
            "error": { "httpCode": status.as_u16(), "message": self.0.to_string() },
        });
        (status, Json(body)).into_response()
    }
}
