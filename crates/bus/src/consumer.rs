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
}

impl ConsumerSpec {
    pub fn new(durable: &str, filter_subjects: Vec<String>) -> Self {
        ConsumerSpec {
            durable: durable.to_owned(),
            filter_subjects,
            max_deliver: 20,
            ack_wait: Duration::from_secs(30),
            retry_delay: Duration::from_millis(500),
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
}

/// Run the consumer until `shutdown` is cancelled. Connection trouble is retried
/// forever with backoff; the durable consumer keeps our place across restarts.
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
    H: Fn(Delivery) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandleError>> + Send,
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
    let mut messages = consumer
        .stream()
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| BusError::JetStream(format!("consumer {}: {e}", spec.durable)))?;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            n = messages.next() => n,
        };
        let msg = match next {
            None => return Err(BusError::JetStream("message stream ended".to_owned())),
            Some(Err(e)) => return Err(BusError::JetStream(e.to_string())),
            Some(Ok(m)) => m,
        };
        handle_one(bus, spec, metrics, handler, msg).await;
    }
}

async fn handle_one<H, Fut>(
    bus: &Bus,
    spec: &ConsumerSpec,
    metrics: &Metrics,
    handler: &H,
    msg: Message,
) where
    H: Fn(Delivery) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandleError>> + Send,
{
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let delivery = Delivery {
        subject: msg.subject.to_string(),
        payload: msg.payload.clone(),
        headers: msg.headers.clone(),
        delivered,
    };
    let span = tracing::info_span!("consume", consumer = %spec.durable, subject = %delivery.subject, delivered);
    if let Some(tp) = delivery.traceparent() {
        sigil_telemetry::set_parent_from_traceparent(&span, &tp);
    }
    let result = handler(delivery.clone()).instrument(span.clone()).await;
    let _enter = span.enter();
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
