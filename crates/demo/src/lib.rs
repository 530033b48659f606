//! `meshtrace demo`: the seed articles' whole mesh on one machine, in one command.
//!
//! It starts, as separate `meshtrace` processes on loopback ports: the backend (`all-in-one`, with
//! the UI), a collector configured like the seed (OTLP + Zipkin in, consistent hash-seed
//! sampling, `datacenter` added, persistent queue), an edge proxy, and three services
//! `service-a → service-b → service-c`, each an OpenTelemetry-SDK-instrumented app behind an
//! inbound sidecar, calling the next through an outbound sidecar. Then it sends traffic through
//! the edge and reports what got stored.
//!
//! - [`topology`] says what runs and how it is wired (the generated configs);
//! - [`process`] starts and stops the child processes;
//! - [`service`] is the demo app itself (`meshtrace demo-service`);
//! - [`traffic`] is the request generator, [`watch`] counts stored traces and checks them.

pub mod process;
pub mod service;
pub mod topology;
pub mod traffic;
pub mod watch;

mod run;

pub use run::{run, Options};
