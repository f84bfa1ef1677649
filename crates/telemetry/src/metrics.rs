//! The `sigil_*` Prometheus metric families and their typed recording methods.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};

/// How an event consumer dealt with one delivery (the `outcome` label of
/// `sigil_events_consumed_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// Handled and acknowledged (`ok`).
    Ok,
    /// Failed transiently; left for redelivery (`retry`).
    Retry,
    /// Gave up (poison message or max deliveries); sent to the dead-letter subject
    /// (`dead_letter`).
    DeadLetter,
    /// Already processed (idempotent redelivery); acknowledged without effect
    /// (`duplicate`).
    Duplicate,
}

impl ConsumeOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retry => "retry",
            Self::DeadLetter => "dead_letter",
            Self::Duplicate => "duplicate",
        }
    }
}

impl EncodeLabelValue for ConsumeOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    service: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumedLabels {
    consumer: String,
    outcome: ConsumeOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProfileLabels {
    profile: String,
}

type DurationFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

/// Request latency buckets: 1 ms to about 16 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The process's Prometheus registry with every `sigil_*` family.
///
/// Cheap to clone (an `Arc` inside); create one per process with [`Metrics::new`] and
/// hand clones to every service in it.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_duration: DurationFamily,
    events_published: Family<ServiceLabels, Counter>,
    events_consumed: Family<ConsumedLabels, Counter>,
    outbox_pending: Family<ServiceLabels, Gauge>,
    dead_letters: Family<ConsumerLabels, Counter>,
    credentials_issued: Family<ProfileLabels, Counter>,
}

impl Metrics {
    /// A fresh registry with all families registered and no samples yet.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = DurationFamily::new_with_constructor(duration_histogram);
        let events_published = Family::<ServiceLabels, Counter>::default();
        let events_consumed = Family::<ConsumedLabels, Counter>::default();
        let outbox_pending = Family::<ServiceLabels, Gauge>::default();
        let dead_letters = Family::<ConsumerLabels, Counter>::default();
        let credentials_issued = Family::<ProfileLabels, Counter>::default();

        // Counters get their `_total` suffix from the encoder.
        registry.register(
            "sigil_requests",
            "Requests handled, by service, operation and outcome",
            requests.clone(),
        );
        registry.register_with_unit(
            "sigil_request_duration",
            "Time to handle a request, by service and operation",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register(
            "sigil_events_published",
            "Events published to JetStream (acknowledged), by service",
            events_published.clone(),
        );
        registry.register(
            "sigil_events_consumed",
            "Event deliveries handled by consumers, by outcome (ok, retry, dead_letter, duplicate)",
            events_consumed.clone(),
        );
        registry.register(
            "sigil_outbox_pending",
            "Outbox rows written but not yet published, by service",
            outbox_pending.clone(),
        );
        registry.register(
            "sigil_dead_letters",
            "Events sent to the dead-letter subject, by consumer",
            dead_letters.clone(),
        );
        registry.register(
            "sigil_credentials_issued",
            "Credentials issued, by profile",
            credentials_issued.clone(),
        );

        Self {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                requests,
                request_duration,
                events_published,
                events_consumed,
                outbox_pending,
                dead_letters,
                credentials_issued,
            }),
        }
    }

    /// Records one handled request: counts it under `outcome` (e.g. `ok` or a wire
    /// error code) and observes its duration.
    pub fn request(&self, service: &str, operation: &str, outcome: &str, duration: Duration) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                service: service.to_owned(),
                operation: operation.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.inner
            .request_duration
            .get_or_create(&OperationLabels {
                service: service.to_owned(),
                operation: operation.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Counts one event published (and acknowledged by JetStream) by `service`.
    pub fn event_published(&self, service: &str) {
        self.inner
            .events_published
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .inc();
    }

    /// Counts one event delivery handled by `consumer`.
    pub fn event_consumed(&self, consumer: &str, outcome: ConsumeOutcome) {
        self.inner
            .events_consumed
            .get_or_create(&ConsumedLabels {
                consumer: consumer.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Sets how many outbox rows of `service` wait to be published.
    pub fn set_outbox_pending(&self, service: &str, pending: u64) {
        self.inner
            .outbox_pending
            .get_or_create(&ServiceLabels {
                service: service.to_owned(),
            })
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// Counts one event that `consumer` gave up on and sent to the dead-letter subject.
    pub fn dead_letter(&self, consumer: &str) {
        self.inner
            .dead_letters
            .get_or_create(&ConsumerLabels {
                consumer: consumer.to_owned(),
            })
            .inc();
    }

    /// Counts one credential issued under `profile`.
    pub fn credential_issued(&self, profile: &str) {
        self.inner
            .credentials_issued
            .get_or_create(&ProfileLabels {
                profile: profile.to_owned(),
            })
            .inc();
    }

    /// Registers an extra metric (for something service-specific) in the same registry,
    /// so it shows up on `/metrics`.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry().register(name, help, metric);
    }

    /// Every metric in the OpenMetrics text format (served with
    /// [`METRICS_CONTENT_TYPE`](crate::METRICS_CONTENT_TYPE)).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and encoding our own label types cannot
        // either; an error here would only truncate the output.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry()) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        out
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half-updated in a way
        // that matters for reading it, so a poisoned lock is still usable.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_every_family_in_text_format() {
        let metrics = Metrics::new();
        let shared = metrics.clone();
        shared.request("issuer", "issue", "ok", Duration::from_millis(12));
        shared.request("issuer", "issue", "policy_denied", Duration::from_millis(3));
        shared.event_published("issuer");
        shared.event_consumed("inventory", ConsumeOutcome::Ok);
        shared.event_consumed("inventory", ConsumeOutcome::DeadLetter);
        shared.event_consumed("inventory", ConsumeOutcome::Duplicate);
        shared.set_outbox_pending("issuer", 7);
        shared.dead_letter("inventory");
        shared.credential_issued("spiffe-x509");

        let text = metrics.encode();
        for line in [
            r#"sigil_requests_total{service="issuer",operation="issue",outcome="ok"} 1"#,
            r#"sigil_requests_total{service="issuer",operation="issue",outcome="policy_denied"} 1"#,
            r#"sigil_request_duration_seconds_count{service="issuer",operation="issue"} 2"#,
            r#"sigil_events_published_total{service="issuer"} 1"#,
            r#"sigil_events_consumed_total{consumer="inventory",outcome="ok"} 1"#,
            r#"sigil_events_consumed_total{consumer="inventory",outcome="dead_letter"} 1"#,
            r#"sigil_events_consumed_total{consumer="inventory",outcome="duplicate"} 1"#,
            r#"sigil_outbox_pending{service="issuer"} 7"#,
            r#"sigil_dead_letters_total{consumer="inventory"} 1"#,
            r#"sigil_credentials_issued_total{profile="spiffe-x509"} 1"#,
            "# TYPE sigil_request_duration_seconds histogram",
            "# UNIT sigil_request_duration_seconds seconds",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn outbox_gauge_is_replaced_not_added() {
        let metrics = Metrics::new();
        metrics.set_outbox_pending("inventory", 5);
        metrics.set_outbox_pending("inventory", 0);
        assert!(
            metrics
                .encode()
                .contains(r#"sigil_outbox_pending{service="inventory"} 0"#)
        );
    }

    #[test]
    fn extra_metrics_can_be_registered() {
        let metrics = Metrics::new();
        let counter = Counter::<u64>::default();
        metrics.register("sigil_test_things", "Things", counter.clone());
        counter.inc();
        assert!(metrics.encode().contains("sigil_test_things_total 1"));
    }
}
