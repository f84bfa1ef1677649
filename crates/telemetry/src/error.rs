//! The crate's error type.

use std::net::SocketAddr;

/// What can go wrong while setting up telemetry or serving its HTTP endpoints.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// `RUST_LOG` is set but is not a valid `tracing` filter directive.
    #[error("invalid RUST_LOG filter: {0}")]
    InvalidFilter(String),

    /// The OTLP span exporter could not be built from the `OTEL_*` configuration.
    #[error("cannot build the OTLP span exporter: {0}")]
    Exporter(String),

    /// The health/metrics HTTP listener could not bind its address.
    #[error("cannot bind the telemetry HTTP listener on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },

    /// The health/metrics HTTP server failed while serving.
    #[error("telemetry HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}
