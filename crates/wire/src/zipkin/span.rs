//! A Zipkin v2 span with its ids and addresses validated, independent of how it was encoded.
//! The JSON and proto3 readers produce it; [`super::mapping`] turns it into the model and back.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use model::{SpanId, TraceId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Client,
    Server,
    Producer,
    Consumer,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Client => "CLIENT",
            Kind::Server => "SERVER",
            Kind::Producer => "PRODUCER",
            Kind::Consumer => "CONSUMER",
        }
    }

    /// Zipkin's names; anything else (including absent) is "unknown", as in zipkin-go.
    pub(crate) fn parse(s: &str) -> Option<Kind> {
        [Kind::Client, Kind::Server, Kind::Producer, Kind::Consumer]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Endpoint<'a> {
    pub service_name: Cow<'a, str>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// `None` when absent or 0.
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Annotation {
    pub timestamp_us: u64,
    pub value: String,
}

/// A span's tags, sorted by key, each key once. The JSON reader borrows them from the body.
pub(crate) type Tags<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ZipkinSpan<'a> {
    pub trace_id: TraceId,
    pub id: SpanId,
    pub parent_id: Option<SpanId>,
    pub kind: Option<Kind>,
    pub name: Cow<'a, str>,
    /// Epoch microseconds; `None` when absent or 0.
    pub timestamp_us: Option<u64>,
    /// Microseconds; `None` when absent.
    pub duration_us: Option<u64>,
    pub local_endpoint: Option<Endpoint<'a>>,
    pub remote_endpoint: Option<Endpoint<'a>>,
    pub annotations: Vec<Annotation>,
    pub tags: Tags<'a>,
    pub debug: bool,
    pub shared: bool,
}
