//! Receiver self-telemetry, named after the OpenTelemetry Collector's
//! `otelcol_receiver_accepted_spans` / `otelcol_receiver_refused_spans`.

/// Which receiver and transport a count belongs to.
#[derive(Clone, Copy)]
pub(crate) struct Origin {
    pub receiver: &'static str,
    pub transport: &'static str,
}

pub(crate) const OTLP_GRPC: Origin = Origin {
    receiver: "otlp",
    transport: "grpc",
};
pub(crate) const OTLP_HTTP: Origin = Origin {
    receiver: "otlp",
    transport: "http",
};
pub(crate) const ZIPKIN_HTTP: Origin = Origin {
    receiver: "zipkin",
    transport: "http",
};

impl Origin {
    pub fn accepted(self, spans: u64) {
        metrics::counter!("meshtrace_receiver_accepted_spans_total",
            "receiver" => self.receiver, "transport" => self.transport)
        .increment(spans);
    }

    pub fn refused(self, spans: u64) {
        metrics::counter!("meshtrace_receiver_refused_spans_total",
            "receiver" => self.receiver, "transport" => self.transport)
        .increment(spans);
    }

    /// A request refused before its spans could be counted (unreadable, too large, ...).
    pub fn bad_request(self) {
        metrics::counter!("meshtrace_receiver_bad_requests_total",
            "receiver" => self.receiver, "transport" => self.transport)
        .increment(1);
    }
}
