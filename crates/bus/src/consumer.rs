//! Durable pull consumers of the `SIGIL_EVENTS` stream.
//!
//! A handler commits its own state change and returns; the message is acked only
//! after that, so a crash between the two means a redelivery, which handlers must
//! treat as a no-op (see `sigil_store::inbox`). A handler that cannot process a
//! message yet returns [`HandleError::Retry`] (nak with delay); one that never can
//! returns [`HandleError::Poison`]. Either way, after `max_deliver` attempts the
//! message goes to the dead-letter subject `sigil.deadletter.v1.<durable>` with
//! the reason in headers, and is terminated: poison is bounded and visible.

use std::future::Future;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{AckKind, Message};
use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use sigil_contracts::subjects;
use sigil_contracts::{CloudEvent, EventData, normalize_serial};
use sigil_telemetry::{ConsumeOutcome, Metrics};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Bus, BusError, TRACEPARENT};

/// How a consumer is set up.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable name, unique per consuming service and purpose.
    pub durable: String,
    /// Subjects to receive (events of other kinds are never delivered).
    pub filter_subjects: Vec<String>,
    /// Deliveries before a message is dead-lettered.
    pub max_deliver: i64,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// Delay before a `Retry` is redelivered.
    pub retry_delay: Duration,
    /// Most deliveries handed to a [`run_batched`] handler at once: whatever has
    /// already arrived, up to this many (a lone event is not held back).
    pub max_batch: usize,
}

impl ConsumerSpec {
    pub fn new(durable: &str, filter_subjects: Vec<String>) -> Self {
        ConsumerSpec {
            durable: durable.to_owned(),
            filter_subjects,
            max_deliver: 20,
            ack_wait: Duration::from_secs(30),
            retry_delay: Duration::from_millis(500),
            max_batch: 64,
        }
    }
}

/// Why a handler did not finish a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// Try again later (e.g. database busy, or an event it depends on has not arrived).
    #[error("retry: {0}")]
    Retry(String),
    /// The message can never be processed (e.g. undecodable); dead-letter it now.
    #[error("poison: {0}")]
    Poison(String),
}

/// The normalised form of the certificate serial `raw` carried by an event; a serial
/// that does not parse makes the event [`HandleError::Poison`].
pub fn parse_serial(raw: &str) -> Result<String, HandleError> {
    normalize_serial(raw).ok_or_else(|| HandleError::Poison(format!("malformed serial {raw:?}")))
}

/// One delivered event.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subject: String,
    pub payload: Bytes,
    pub headers: Option<HeaderMap>,
    /// 1 on first delivery.
    pub delivered: i64,
}

impl Delivery {
    /// Decode the CloudEvents envelope with a typed payload.
    pub fn decode<T: EventData + DeserializeOwned>(&self) -> Result<CloudEvent<T>, HandleError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| HandleError::Poison(format!("undecodable {}: {e}", self.subject)))
    }

    /// Does this delivery carry events of kind `T`?
    pub fn is<T: EventData>(&self) -> bool {
        self.subject == subjects::event_subject(T::KIND)
    }

    fn traceparent(&self) -> Option<String> {
        self.headers
            .as_ref()?
            .get(TRACEPARENT)
            .map(|v| v.as_str().to_owned())
    }

    /// The span to handle this delivery in: a child of the producer's trace when the
    /// message carries a `traceparent` header, so one issuance stays one trace.
    pub fn span(&self, consumer: &str) -> tracing::Span {
        let span = tracing::info_span!("consume", consumer, subject = %self.subject, delivered = self.delivered);
        if let Some(tp) = self.traceparent() {
            sigil_telemetry::set_parent_from_traceparent(&span, &tp);
        }
        span
    }
}

/// Run the consumer until `shutdown` is cancelled, one delivery at a time: `handler`
/// commits its own change for each. Connection trouble is retried forever with
/// backoff; the durable consumer keeps our place across restarts.
pub async fn run<H, Fut>(
    bus: Bus,
    spec: ConsumerSpec,
    metrics: Metrics,
    shutdown: CancellationToken,
    handler: H,
) -> Result<(), BusError>
where
    H: Fn(Delivery) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandleError>> + Send,
{
    let durable = spec.durable.clone();
    let handler = &handler;
    let durable = durable.as_str();
    run_batched(
        bus,
        spec,
        metrics,
        shutdown,
        move |batch: Vec<Delivery>| async move {
            let mut results = Vec::with_capacity(batch.len());
            for delivery in batch {
                let span = delivery.span(durable);
                results.push(handler(delivery).instrument(span).await);
            }
            results
        },
    )
    .await
}

/// Run the consumer until `shutdown` is cancelled, handing `handler` every delivery
/// that has arrived (up to [`ConsumerSpec::max_batch`]) at once, so it can apply them
/// in one database transaction. `handler` returns one result per delivery, in order;
/// each message is then acked, retried or dead-lettered on its own result, only after
/// the handler returned (i.e. after its commit).
pub async fn run_batched<H, Fut>(
    bus: Bus,
    spec: ConsumerSpec,
    metrics: Metrics,
    shutdown: CancellationToken,
    handler: H,
) -> Result<(), BusError>
where
    H: Fn(Vec<Delivery>) -> Fut + Send + Sync,
    Fut: Future<Output = Vec<Result<(), HandleError>>> + Send,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        match consume_once(&bus, &spec, &metrics, &shutdown, &handler).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(consumer = %spec.durable, error = %e, "consumer interrupted; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn consume_once<H, Fut>(
    bus: &Bus,
    spec: &ConsumerSpec,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    handler: &H,
) -> Result<(), BusError>
where
    H: Fn(Vec<Delivery>) -> Fut + Send + Sync,
    Fut: Future<Output = Vec<Result<(), HandleError>>> + Send,
{
    let stream = bus.ensure_stream().await?;
    let config = pull::Config {
        durable_name: Some(spec.durable.clone()),
        filter_subjects: spec.filter_subjects.clone(),
        ack_policy: AckPolicy::Explicit,
        deliver_policy: DeliverPolicy::All,
        max_deliver: spec.max_deliver,
        ack_wait: spec.ack_wait,
        ..Default::default()
    };
    let consumer = stream
        .get_or_create_consumer(&spec.durable, config)
        .await
        .map_err(|e| BusError::JetStream(format!("consumer {}: {e}", spec.durable)))?;
    let messages = consumer
        .stream()
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| BusError::JetStream(format!("consumer {}: {e}", spec.durable)))?;
    let mut chunks = messages.ready_chunks(spec.max_batch.max(1));
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            n = chunks.next() => n,
        };
        let Some(chunk) = next else {
            return Err(BusError::JetStream("message stream ended".to_owned()));
        };
        let mut failure = None;
        let mut batch = Vec::with_capacity(chunk.len());
        for item in chunk {
            match item {
                Ok(msg) => batch.push(msg),
                // What arrived before the error is still handled; then reconnect.
                Err(e) => failure = Some(BusError::JetStream(e.to_string())),
            }
        }
        if !batch.is_empty() {
            handle_batch(bus, spec, metrics, handler, batch).await;
        }
        if let Some(e) = failure {
            return Err(e);
        }
    }
}

async fn handle_batch<H, Fut>(
    bus: &Bus,
    spec: &ConsumerSpec,
    metrics: &Metrics,
    handler: &H,
    messages: Vec<Message>,
) where
    H: Fn(Vec<Delivery>) -> Fut + Send + Sync,
    Fut: Future<Output = Vec<Result<(), HandleError>>> + Send,
{
    let deliveries: Vec<Delivery> = messages
        .iter()
        .map(|msg| Delivery {
            subject: msg.subject.to_string(),
            payload: msg.payload.clone(),
            headers: msg.headers.clone(),
            delivered: msg.info().map(|i| i.delivered).unwrap_or(1),
        })
        .collect();
    let mut results = handler(deliveries.clone()).await.into_iter();
    for (msg, delivery) in messages.into_iter().zip(deliveries) {
        let result = results.next().unwrap_or_else(|| {
            Err(HandleError::Retry(
                "handler returned fewer results than deliveries".to_owned(),
            ))
        });
        settle(bus, spec, metrics, msg, delivery, result).await;
    }
}

/// Ack, retry or dead-letter one handled message.
async fn settle(
    bus: &Bus,
    spec: &ConsumerSpec,
    metrics: &Metrics,
    msg: Message,
    delivery: Delivery,
    result: Result<(), HandleError>,
) {
    let delivered = delivery.delivered;
    let span = delivery.span(&spec.durable);
    async move {
        match result {
            Ok(()) => {
                metrics.event_consumed(&spec.durable, ConsumeOutcome::Ok);
                if let Err(e) = msg.ack().await {
                    // The commit stands; the redelivery will be a no-op.
                    tracing::warn!(error = %e, "ack failed");
                }
            }
            Err(HandleError::Retry(reason)) if delivered < spec.max_deliver => {
                metrics.event_consumed(&spec.durable, ConsumeOutcome::Retry);
                tracing::debug!(%reason, "retrying later");
                msg.ack_with(AckKind::Nak(Some(spec.retry_delay)))
                    .await
                    .ok();
            }
            Err(e) => {
                metrics.event_consumed(&spec.durable, ConsumeOutcome::DeadLetter);
                metrics.dead_letter(&spec.durable);
                tracing::error!(error = %e, delivered, "dead-lettering message");
                let mut headers = delivery.headers.clone().unwrap_or_default();
                headers.insert("Sigil-Dead-Letter-Reason", e.to_string().as_str());
                headers.insert("Sigil-Original-Subject", delivery.subject.as_str());
                let dl = subjects::dead_letter_subject(&spec.durable);
                if let Err(err) = bus
                    .client()
                    .publish_with_headers(dl, headers, delivery.payload.clone())
                    .await
                {
                    tracing::error!(error = %err, "cannot publish dead letter");
                }
                msg.ack_with(AckKind::Term).await.ok();
            }
        }
    }
    .instrument(span)
    .await;
}
