//! Sigil's NATS layer.
//!
//! - [`Bus::connect`] connects and refuses servers older than 2.10 with a clear error
//!   (async-nats needs 2.10+ for JetStream KV and multi-filter consumers).
//! - [`Bus::ensure_stream`] creates the `SIGIL_EVENTS` stream idempotently.
//! - [`Bus::request`] is the typed request/reply client: it returns the result or a
//!   [`ClientError`] whose kind a caller can match.
//! - [`service::Router`] serves typed endpoints as a NATS micro service.
//! - [`consumer::run`] drives a durable pull consumer with explicit acks, bounded
//!   redelivery and a dead-letter subject.
//! - [`launch::main`] is the start-up every `sigil-<service>` binary shares: environment,
//!   telemetry, connection, health endpoint, signals and exit codes.
#![forbid(unsafe_code)]

pub mod consumer;
pub mod launch;
pub mod runtime;
pub mod service;

pub use runtime::{Clock, ManualClock, Runtime, SystemClock};

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};
use sigil_contracts::subjects::{self, Operation};
use sigil_contracts::{Reply, WireError};

/// Oldest nats-server Sigil supports.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 10);
/// Header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// Default timeout of a request/reply call.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// JetStream de-duplication window of the events stream.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);

/// Errors of the bus itself (connecting, stream setup, publishing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// Could not connect to the NATS server.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The server is too old.
    #[error(
        "nats-server {found} at {url} is too old: Sigil needs nats-server >= 2.10 with JetStream (run scripts/ensure-nats.sh to get one)"
    )]
    ServerTooOld { url: String, found: String },
    /// JetStream is not enabled or a JetStream call failed.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// Publishing failed or was not acknowledged.
    #[error("publish to {subject} failed: {reason}")]
    Publish { subject: String, reason: String },
    /// Serving a micro service failed.
    #[error("service: {0}")]
    Service(String),
}

/// What went wrong with a request/reply call; match on the variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The service answered with a typed error.
    #[error("{0}")]
    Wire(WireError),
    /// No reply within the timeout.
    #[error("{subject}: no reply within {timeout:?}")]
    TimedOut { subject: String, timeout: Duration },
    /// No instance of the service is running.
    #[error("{subject}: no service is listening (is it running?)")]
    NoResponders { subject: String },
    /// The reply could not be decoded.
    #[error("{subject}: malformed reply: {reason}")]
    BadReply { subject: String, reason: String },
    /// Transport failure.
    #[error("{subject}: {reason}")]
    Transport { subject: String, reason: String },
}

impl ClientError {
    /// The reply as a wire error: the service's own, or `unavailable` for transport
    /// failures, so one error shape flows onward.
    pub fn into_wire(self) -> WireError {
        match self {
            ClientError::Wire(e) => e,
            other => WireError::unavailable(other.to_string()),
        }
    }
}

/// An event ready to publish: subject, id (becomes `Nats-Msg-Id`), payload, trace.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    pub subject: String,
    pub id: String,
    pub payload: Bytes,
    pub traceparent: Option<String>,
}

/// A NATS connection with JetStream.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    url: String,
}

/// Connect options for `url`, with the user and password it carries
/// (`nats://user:password@host:4222`): async-nats does not take them from the URL by
/// itself.
fn options_for(url: &str) -> async_nats::ConnectOptions {
    let options = async_nats::ConnectOptions::new();
    let Ok(addr) = url.parse::<async_nats::ServerAddr>() else {
        // Unparseable: `connect` reports it.
        return options;
    };
    match (addr.username(), addr.password()) {
        (Some(user), Some(password)) => {
            options.user_and_password(user.to_owned(), password.to_owned())
        }
        _ => options,
    }
}

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    let tail = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    format!("{scheme}://{user}:***@{host}{tail}")
}

/// Parse `major.minor` of a server version string such as `2.10.22` or `v2.9.10`.
pub fn parse_version(v: &str) -> Option<(u64, u64)> {
    let v = v.trim().trim_start_matches('v');
    let mut parts = v.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl Bus {
    /// Connect as `name`, retrying the initial connection for a short while, and check
    /// the server version.
    pub async fn connect(url: &str, name: &str) -> Result<Bus, BusError> {
        let shown = redact_url(url);
        let url_for_errors = shown.as_str();
        let client = options_for(url)
            .name(name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(DEFAULT_REQUEST_TIMEOUT))
            .connect(url)
            .await
            .map_err(|e| BusError::Connect {
                url: url_for_errors.to_owned(),
                reason: e.to_string(),
            })?;
        // retry_on_initial_connect returns before the handshake; wait for it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while client.server_info().version.is_empty() {
            if tokio::time::Instant::now() > deadline {
                return Err(BusError::Connect {
                    url: url_for_errors.to_owned(),
                    reason: "no NATS server answered within 10s".to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let found = client.server_info().version;
        match parse_version(&found) {
            Some(v) if v >= MIN_SERVER_VERSION => {}
            _ => {
                return Err(BusError::ServerTooOld {
                    url: url_for_errors.to_owned(),
                    found,
                });
            }
        }
        let js = jetstream::new(client.clone());
        Ok(Bus {
            client,
            js,
            url: url_for_errors.to_owned(),
        })
    }

    /// Connect once without retrying: used to probe whether a server answers.
    pub async fn probe(url: &str) -> Result<String, BusError> {
        let client = options_for(url)
            .connection_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .map_err(|e| BusError::Connect {
                url: redact_url(url),
                reason: e.to_string(),
            })?;
        let version = client.server_info().version;
        drop(client);
        Ok(version)
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Create or update the `SIGIL_EVENTS` stream (file storage, dedupe window).
    pub async fn ensure_stream(&self) -> Result<stream::Stream, BusError> {
        let config = stream::Config {
            name: subjects::EVENTS_STREAM.to_owned(),
            subjects: vec![subjects::EVENTS_ALL.to_owned()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            duplicate_window: DEDUPE_WINDOW,
            description: Some("Sigil events (CloudEvents 1.0 JSON)".to_owned()),
            ..Default::default()
        };
        let mut last = String::new();
        // Retries cover a JetStream that is still starting or recovering.
        for _ in 0..50 {
            match self.js.get_or_create_stream(config.clone()).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(BusError::JetStream(format!(
            "cannot create stream {}: {last}",
            subjects::EVENTS_STREAM
        )))
    }

    /// Publish one event payload to JetStream with `Nats-Msg-Id` = `id` and wait for
    /// the ack. A duplicate id inside the dedupe window is acked without a second copy.
    pub async fn publish_event(
        &self,
        subject: &str,
        id: &str,
        payload: Bytes,
        traceparent: Option<&str>,
    ) -> Result<(), BusError> {
        let event = OutgoingEvent {
            subject: subject.to_owned(),
            id: id.to_owned(),
            payload,
            traceparent: traceparent.map(str::to_owned),
        };
        self.publish_events(std::slice::from_ref(&event))
            .await
            .0
            .map(|_| ())
    }

    /// Publish events in order, pipelined: every message is sent before any ack is
    /// awaited, and acks are then collected in order. Returns how many leading events
    /// were acknowledged, and the first failure if there was one (events after it may
    /// or may not have been stored; re-publishing them is safe, the ids dedupe).
    pub async fn publish_events(
        &self,
        events: &[OutgoingEvent],
    ) -> (Result<usize, BusError>, usize) {
        let mut pending = Vec::with_capacity(events.len());
        let mut first_error = None;
        for e in events {
            let mut msg = jetstream::message::PublishMessage::build()
                .payload(e.payload.clone())
                .message_id(&e.id);
            if let Some(tp) = &e.traceparent {
                msg = msg.header(TRACEPARENT, tp.as_str());
            }
            match self.js.send_publish(e.subject.clone(), msg).await {
                Ok(ack) => pending.push((e, ack)),
                Err(err) => {
                    first_error = Some(BusError::Publish {
                        subject: e.subject.clone(),
                        reason: err.to_string(),
                    });
                    break;
                }
            }
        }
        let mut acked = 0;
        for (e, ack) in pending {
            let failed = match tokio::time::timeout(Duration::from_secs(10), ack).await {
                Ok(Ok(_)) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(_) => Some("no JetStream ack within 10s".to_owned()),
            };
            if let Some(reason) = failed {
                first_error = Some(BusError::Publish {
                    subject: e.subject.clone(),
                    reason,
                });
                break;
            }
            acked += 1;
        }
        match first_error {
            Some(e) => (Err(e), acked),
            None => (Ok(acked), acked),
        }
    }

    /// Call `op` with `req` and decode its [`Reply`].
    pub async fn request<Req, Resp>(
        &self,
        op: Operation,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClientError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::BadReply {
            subject: op.subject(),
            reason: format!("cannot encode request: {e}"),
        })?;
        let bytes = self.request_raw(op, Bytes::from(body), timeout).await?;
        let reply: Reply<Resp> =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::BadReply {
                subject: op.subject(),
                reason: e.to_string(),
            })?;
        reply.into_result().map_err(ClientError::Wire)
    }

    /// Send raw bytes to `op` and return the raw reply body (used by tests of bad input).
    pub async fn request_raw(
        &self,
        op: Operation,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, ClientError> {
        let subject = op.subject();
        let mut headers = HeaderMap::new();
        if let Some(tp) = sigil_telemetry::current_traceparent() {
            headers.insert(TRACEPARENT, tp.as_str());
        }
        let request = async_nats::Request::new()
            .payload(body)
            .headers(headers)
            .timeout(Some(timeout));
        match self.client.send_request(subject.clone(), request).await {
            Ok(msg) => Ok(msg.payload),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::TimedOut => ClientError::TimedOut { subject, timeout },
                RequestErrorKind::NoResponders => ClientError::NoResponders { subject },
                _ => ClientError::Transport {
                    subject,
                    reason: e.to_string(),
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact_url("nats://svc:s3cret@nats:4222"),
            "nats://svc:***@nats:4222"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("tls://u:p@a:1/x"), "tls://u:***@a:1/x");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("2.9.10"), Some((2, 9)));
        assert_eq!(parse_version("v2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("2.10.0-beta.1"), Some((2, 10)));
        assert!(parse_version("2.9.10").unwrap() < MIN_SERVER_VERSION);
        assert!(parse_version("2.10.0").unwrap() >= MIN_SERVER_VERSION);
        assert_eq!(parse_version("garbage"), None);
    }
}
