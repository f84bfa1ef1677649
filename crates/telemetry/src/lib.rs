//! Sigil's observability plumbing, shared by every service.
//!
//! - [`init`] installs the process-wide `tracing` subscriber: a compact log formatter
//!   filtered by `RUST_LOG`, and an OpenTelemetry layer so every span has a real trace
//!   id. When `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//!   set, spans are exported over OTLP (HTTP/protobuf), honouring the standard `OTEL_*`
//!   variables.
//! - [`current_traceparent`] and [`set_parent_from_traceparent`] carry a trace across
//!   process boundaries as a W3C `traceparent` (in NATS headers and the CloudEvents
//!   `traceparent` extension), so one issuance is one trace across services.
//! - [`Metrics`] holds the Prometheus registry with the `sigil_*` metric families.
//! - [`Health`] tracks per-component readiness.
//! - [`serve_http`] exposes `GET /healthz`, `GET /readyz` and `GET /metrics`.
//!
//! One process (for example `sigil up`, which runs every service) calls [`init`] once and
//! shares one [`Metrics`] and one [`Health`] among its services.
#![forbid(unsafe_code)]

mod error;
mod health;
mod http;
mod metrics;
mod trace;

pub use error::TelemetryError;
pub use health::{Health, HealthReport};
pub use http::{METRICS_CONTENT_TYPE, bind_http, router, serve_http, serve_listener};
pub use metrics::{ConsumeOutcome, Metrics};
pub use trace::{TelemetryGuard, current_traceparent, init, set_parent_from_traceparent};
