//! meshtrace's agent/gateway: an OpenTelemetry-Collector-compatible trace pipeline.
//!
//! A user's OTel Collector YAML ([`config`]) becomes a running graph ([`pipeline`]): the
//! `receiver` crate's servers feed a sink per receiver, which fans out to the pipelines using it;
//! each pipeline runs its processors in order ([`processor`]: probabilistic and tail sampling,
//! batching, attributes, memory limiting) and fans out to its exporters ([`exporter`]: OTLP
//! gRPC/HTTP, Zipkin, debug, trace-id load balancing), each behind a sending queue (in memory or
//! on disk) with retries, or to connectors ([`connector`]: `forward`, `routing`) that feed other
//! pipelines. Everything a stage shares is the [`consumer::Consumer`] interface.
//!
//! What this crate must not do: decode or encode wire formats itself (that is `wire`), run its
//! own network receivers (that is `receiver`), or store spans (that is `store`).

pub mod auth;
pub mod config;
pub mod connector;
pub mod consumer;
pub mod exporter;
pub mod payload;
pub mod pipeline;
pub mod processor;
mod server_tls;
