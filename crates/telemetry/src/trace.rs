//! Tracing subscriber set-up and W3C trace-context propagation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::TelemetryError;

/// Set by the first successful [`init`]; later calls return an inert guard.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The W3C header that carries the trace and parent span ids.
const TRACEPARENT: &str = "traceparent";

/// Keeps the OpenTelemetry tracer provider alive; flushes and shuts it down on drop.
///
/// Hold it for the life of the process (in `main`). The guard returned by a second
/// [`init`] call owns nothing and does nothing on drop.
#[must_use = "dropping the guard shuts down span export"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether this guard owns the process's tracer provider (false for the inert guard
    /// returned by repeated [`init`] calls).
    pub fn is_active(&self) -> bool {
        self.provider.is_some()
    }

    fn inert() -> Self {
        Self { provider: None }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "shutting down the OpenTelemetry tracer provider failed");
        }
    }
}

/// Installs the process-wide tracing subscriber and OpenTelemetry pipeline.
///
/// - Logs: a compact formatter on stderr, filtered by `RUST_LOG` (default `info`).
/// - Traces: a `tracing-opentelemetry` layer backed by an SDK tracer provider, always, so
///   spans carry real trace ids and [`current_traceparent`] works without an exporter.
///   When `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
///   (and `OTEL_TRACES_EXPORTER` is not `none`), spans are batched and exported over
///   OTLP HTTP/protobuf; the exporter honours the standard `OTEL_EXPORTER_OTLP_*`
///   variables (headers, timeout, compression) and the SDK honours
///   `OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` (which
///   overrides `service_name`).
/// - The W3C `TraceContextPropagator` becomes the global text-map propagator.
///
/// Calling it again (tests, several services in one process) is harmless: it returns an
/// inert guard. If some other code already installed a global subscriber, that one is
/// kept and the guard is inert as well.
///
/// # Errors
///
/// [`TelemetryError::InvalidFilter`] when `RUST_LOG` does not parse,
/// [`TelemetryError::Exporter`] when the OTLP exporter cannot be built.
pub fn init(service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    if INITIALIZED.swap(true, Ordering::SeqCst) {
        return Ok(TelemetryGuard::inert());
    }
    match build_and_install(service_name) {
        Ok(guard) => Ok(guard),
        Err(error) => {
            // Let a later call try again (for example after fixing RUST_LOG).
            INITIALIZED.store(false, Ordering::SeqCst);
            Err(error)
        }
    }
}

fn build_and_install(service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    let filter = env_filter()?;
    let provider = tracer_provider(service_name)?;
    let tracer = provider.tracer("sigil");

    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .compact()
                // Colour only on a terminal: log files and CI output stay plain.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr),
        )
        .with(tracing_opentelemetry::layer().with_tracer(tracer));

    if tracing::subscriber::set_global_default(subscriber).is_err() {
        // Someone else owns the global subscriber; ours would never see a span.
        let _ = provider.shutdown();
        return Ok(TelemetryGuard::inert());
    }
    // Route `log` records (from dependencies that use the log crate) into tracing. It
    // fails only when another logger is already installed, which is fine to keep.
    let _ = tracing_log::LogTracer::init();
    opentelemetry::global::set_tracer_provider(provider.clone());

    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

fn env_filter() -> Result<EnvFilter, TelemetryError> {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .map_err(|error| TelemetryError::InvalidFilter(format!("{directives:?}: {error}"))),
        _ => Ok(EnvFilter::new("info")),
    }
}

fn tracer_provider(service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let mut resource = Resource::builder();
    if env_is_unset("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(service_name.to_owned());
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource.build());

    if otlp_export_requested() {
        // The subscriber is not installed yet, so this goes straight to stderr.
        if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
            && protocol.trim() != "http/protobuf"
        {
            eprintln!(
                "sigil-telemetry: OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported; \
                 exporting with http/protobuf"
            );
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

fn otlp_export_requested() -> bool {
    let exporter_off = std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim() == "none")
        || std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !exporter_off
        && (!env_is_unset("OTEL_EXPORTER_OTLP_ENDPOINT")
            || !env_is_unset("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn env_is_unset(name: &str) -> bool {
    std::env::var(name).map_or(true, |v| v.trim().is_empty())
}

/// The W3C `traceparent` of the current `tracing` span, e.g.
/// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
///
/// `None` when there is no current span or it has no valid OpenTelemetry context (for
/// example when [`init`] was never called).
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    // The W3C propagator is used directly (not the global one) so that the answer is a
    // traceparent whatever propagator an embedding application installed.
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of the remote span described by `traceparent`.
///
/// Call it right after creating the span, before entering it: the parent of a span that
/// has started cannot change. A malformed `traceparent`, or a span that cannot take a
/// parent (disabled, already started, no OpenTelemetry layer), is left as it is and the
/// problem is logged at debug level.
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.trim().to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if !cx.span().span_context().is_valid() {
        tracing::debug!(traceparent, "ignoring malformed traceparent");
        return;
    }
    if let Err(error) = span.set_parent(cx) {
        tracing::debug!(%error, traceparent, "cannot set a remote parent on the span");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    /// Keeps the provider alive for the whole test binary: dropping a guard shuts the
    /// provider down, after which spans get empty contexts.
    fn init_once() {
        static GUARD: OnceLock<TelemetryGuard> = OnceLock::new();
        GUARD.get_or_init(|| init("sigil-telemetry-test").expect("init"));
    }

    /// Splits a traceparent into (trace id, span id) after checking its shape.
    fn parse(traceparent: &str) -> (String, String) {
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01", "sampled flag: {traceparent}");
        for part in &parts[1..3] {
            assert!(
                part.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(
                part.chars().any(|c| c != '0'),
                "all-zero id in {traceparent}"
            );
        }
        (parts[1].to_owned(), parts[2].to_owned())
    }

    #[test]
    fn traceparent_round_trips_to_a_child_span() {
        init_once();
        let upstream = tracing::info_span!("upstream");
        let sent = upstream
            .in_scope(current_traceparent)
            .expect("traceparent in a span");
        let (trace_id, parent_span_id) = parse(&sent);

        // A root span (as a consumer in another process would create) adopts the parent.
        let downstream = tracing::info_span!(parent: None, "downstream");
        set_parent_from_traceparent(&downstream, &sent);
        let received = downstream
            .in_scope(current_traceparent)
            .expect("traceparent in the child span");
        let (child_trace_id, child_span_id) = parse(&received);

        assert_eq!(child_trace_id, trace_id);
        assert_ne!(child_span_id, parent_span_id);
    }

    #[test]
    fn unrelated_spans_get_different_trace_ids() {
        init_once();
        let a = tracing::info_span!(parent: None, "a").in_scope(current_traceparent);
        let b = tracing::info_span!(parent: None, "b").in_scope(current_traceparent);
        let (a, b) = (parse(&a.expect("a")).0, parse(&b.expect("b")).0);
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_traceparent_leaves_the_span_alone() {
        init_once();
        let span = tracing::info_span!(parent: None, "lonely");
        set_parent_from_traceparent(&span, "00-not-a-traceparent-01");
        assert!(span.in_scope(current_traceparent).is_some());
    }

    #[test]
    fn no_span_means_no_traceparent() {
        init_once();
        assert_eq!(current_traceparent(), None);
    }

    #[test]
    fn init_twice_returns_an_inert_guard() {
        init_once();
        let again = init("again").expect("second init");
        assert!(!again.is_active());
        drop(again);
        // The first provider still works.
        assert!(
            tracing::info_span!("after")
                .in_scope(current_traceparent)
                .is_some()
        );
    }
}
