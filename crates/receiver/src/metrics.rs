//! Receiver self-telemetry, named after the OpenTelemetry Collector's
//! `otelcol_receiver_accepted_spans` / `otelcol_receiver_refused_spans`.

use metrics::SharedString;

use crate::Sink;

/// Which receiver and transport a count belongs to.
#[derive(Clone)]
pub(crate) struct Origin {
    pub receiver: SharedString,
    pub transport: &'static str,
}

pub(crate) const OTLP_GRPC: Origin = Origin {
    receiver: SharedString::const_str("otlp"),
    transport: "grpc",
};
pub(crate) const OTLP_HTTP: Origin = Origin {
    receiver: SharedString::const_str("otlp"),
    transport: "http",
};
pub(crate) const ZIPKIN_HTTP: Origin = Origin {
    receiver: SharedString::const_str("zipkin"),
    transport: "http",
};

impl Origin {
    /// Counted under `sink`'s component id when it has one, else under the receiver's type.
    pub fn of<S: Sink + ?Sized>(&self, sink: &S) -> Origin {
        match sink.component_id() {
            Some(id) => Origin {
                receiver: SharedString::from(id),
                transport: self.transport,
            },
            None => self.clone(),
        }
    }

    pub fn accepted(&self, spans: u64) {
        metrics::counter!("meshtrace_receiver_accepted_spans_total",
            "receiver" => self.receiver.clone(), "transport" => self.transport)
        .increment(spans);
    }

    pub fn refused(&self, spans: u64) {
        metrics::counter!("meshtrace_receiver_refused_spans_total",
            "receiver" => self.receiver.clone(), "transport" => self.transport)
        .increment(spans);
    }

    /// A request refused because its credentials were missing or wrong.
    pub fn unauthenticated(&self) {
        metrics::counter!("meshtrace_receiver_unauthenticated_requests_total",
            "receiver" => self.receiver.clone(), "transport" => self.transport)
        .increment(1);
    }

    /// A request refused before its spans could be counted (unreadable, too large, ...).
    pub fn bad_request(&self) {
        metrics::counter!("meshtrace_receiver_bad_requests_total",
            "receiver" => self.receiver.clone(), "transport" => self.transport)
        .increment(1);
    }
}
