//! The span model every meshtrace stage shares.
//!
//! The shape is OTLP's: a [`TraceBatch`] holds [`ResourceSpans`] (who emitted), each holding
//! [`ScopeSpans`] (which instrumentation), each holding [`Span`]s. Receivers convert wire formats
//! (OTLP, Zipkin) into this model; the store and the query API read it. Ids are fixed-size values,
//! so an invalid id cannot exist past the wire layer.
//!
//! What this crate must not do: know any wire format, storage layout or network protocol.
//! It depends on nothing of meshtrace's own.

mod batch;
mod ids;
mod record;
mod span;
mod value;

pub use batch::{ResourceSpans, ScopeSpans, TraceBatch};
pub use ids::{IdError, SpanId, TraceId};
pub use record::{SpanRecord, Trace};
pub use span::{Event, Link, Resource, Scope, Span, SpanKind, Status, StatusCode};
pub use value::{AnyValue, KeyValue};

/// The resource attribute naming the emitting service (OpenTelemetry semantic conventions).
pub const SERVICE_NAME: &str = "service.name";

/// The service name used when a resource carries none, as the OpenTelemetry SDKs do.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
