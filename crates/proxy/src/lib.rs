//! The tracing HTTP proxy: edge, inbound and outbound sidecar that starts, propagates and reports traces. (being built).
