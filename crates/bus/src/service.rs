//! Typed request/reply endpoints served as a NATS micro service.
//!
//! Each endpoint listens on `sigil.<service>.v1.<operation>` in the micro-service
//! queue group, so replicas share load and `$SRV.PING/INFO/STATS` discover them. Every
//! request gets a reply: the handler's result or a typed [`WireError`]; bodies are
//! size-capped and strictly parsed before a handler sees them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use async_nats::HeaderMap;
use async_nats::service::ServiceExt;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Serialize, de::DeserializeOwned};
use sigil_contracts::auth::{CarriesProof, received_digest};
use sigil_contracts::error::parse_request;
use sigil_contracts::subjects::{Operation, Service};
use sigil_contracts::{Reply, WireError};
use sigil_telemetry::{Health, Metrics};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{Bus, BusError, TRACEPARENT};

/// Most requests one endpoint handles at once; more wait in NATS.
const MAX_IN_FLIGHT: usize = 256;

type BoxFuture = Pin<Box<dyn Future<Output = (Bytes, Option<WireError>)> + Send>>;
type Handler = Arc<dyn Fn(Bytes) -> BoxFuture + Send + Sync>;

/// A set of typed endpoints for one service.
pub struct Router {
    service: Service,
    description: String,
    routes: Vec<(Operation, Handler)>,
    ready: Option<(Health, String)>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("service", &self.service)
            .field(
                "routes",
                &self
                    .routes
                    .iter()
                    .map(|(op, _)| op.subject())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn encode<T: Serialize>(reply: &Reply<T>) -> Bytes {
    match serde_json::to_vec(reply) {
        Ok(v) => Bytes::from(v),
        Err(e) => {
            let fallback: Reply<()> =
                Reply::Error(WireError::internal(format!("cannot encode reply: {e}")));
            Bytes::from(serde_json::to_vec(&fallback).unwrap_or_default())
        }
    }
}

impl Router {
    pub fn new(service: Service, description: impl Into<String>) -> Self {
        Router {
            service,
            description: description.into(),
            routes: Vec::new(),
            ready: None,
        }
    }

    /// Mark `component` ready in `health` once every endpoint's subscription has
    /// reached the server (and not ready again when serving stops), so `/readyz`
    /// never claims an endpoint that would answer "no responders".
    pub fn ready(mut self, health: Health, component: impl Into<String>) -> Self {
        self.ready = Some((health, component.into()));
        self
    }

    /// Add an endpoint. `op` must belong to this router's service.
    pub fn route<Req, Resp, F, Fut>(self, op: Operation, f: F) -> Self
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, WireError>> + Send + 'static,
    {
        self.add(op, |body| parse_request::<Req>(body), f)
    }

    /// Add an endpoint whose request carries a proof of who sent it: the handler also
    /// gets the request's digest as received ([`received_digest`]: RFC 8785 canonical
    /// JSON of the body without its `proof`), which is what a possession proof must
    /// have signed, so a client in any language can make one.
    pub fn route_proven<Req, Resp, F, Fut>(self, op: Operation, f: F) -> Self
    where
        Req: DeserializeOwned + CarriesProof + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Req, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, WireError>> + Send + 'static,
    {
        self.add(
            op,
            |body| Ok((parse_request::<Req>(body)?, received_digest(body)?)),
            move |(req, digest)| f(req, digest),
        )
    }

    /// Add an endpoint that parses its body with `parse` and answers with `f`.
    fn add<P, Resp, Parse, F, Fut>(mut self, op: Operation, parse: Parse, f: F) -> Self
    where
        P: Send + 'static,
        Resp: Serialize + Send + 'static,
        Parse: Fn(&[u8]) -> Result<P, WireError> + Send + Sync + 'static,
        F: Fn(P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, WireError>> + Send + 'static,
    {
        let (parse, f) = (Arc::new(parse), Arc::new(f));
        let handler: Handler = Arc::new(move |body: Bytes| {
            let (parse, f) = (parse.clone(), f.clone());
            Box::pin(async move {
                let result = match parse(&body) {
                    Ok(req) => f(req).await,
                    Err(e) => Err(e),
                };
                let err = result.as_ref().err().cloned();
                (encode(&Reply::from(result)), err)
            })
        });
        self.routes.push((op, handler));
        self
    }

    /// Serve until `shutdown` is cancelled, then stop taking requests and drain the
    /// ones in flight.
    pub async fn serve(
        self,
        bus: &Bus,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let service = bus
            .client()
            .service_builder()
            .description(self.description.clone())
            .start(
                format!("sigil-{}", self.service.name()),
                env!("CARGO_PKG_VERSION"),
            )
            .await
            .map_err(|e| BusError::Service(e.to_string()))?;
        let group = service.group(self.service.group());
        let mut tasks = JoinSet::new();
        for (op, handler) in self.routes {
            let mut endpoint = group
                .endpoint(op.name)
                .await
                .map_err(|e| BusError::Service(format!("{}: {e}", op.subject())))?;
            let shutdown = shutdown.clone();
            let metrics = metrics.clone();
            let service_name = self.service.name();
            tasks.spawn(async move {
                let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
                let mut in_flight = JoinSet::new();
                loop {
                    let request = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        r = endpoint.next() => match r { Some(r) => r, None => break },
                    };
                    let Ok(permit) = limit.clone().acquire_owned().await else { break };
                    let handler = handler.clone();
                    let metrics = metrics.clone();
                    let span = tracing::info_span!("request", subject = %op.subject());
                    if let Some(tp) = request
                        .message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(TRACEPARENT))
                    {
                        sigil_telemetry::set_parent_from_traceparent(&span, tp.as_str());
                    }
                    in_flight.spawn(
                        async move {
                            let started = Instant::now();
                            let (body, err) = handler(request.message.payload.clone()).await;
                            let mut headers = HeaderMap::new();
                            if let Some(e) = &err {
                                headers.insert("Nats-Service-Error", e.message.as_str());
                                headers.insert(
                                    "Nats-Service-Error-Code",
                                    e.code.status().to_string().as_str(),
                                );
                                tracing::info!(code = %e.code, message = %e.message, "request failed");
                            }
                            let outcome = err.as_ref().map_or("ok", |e| e.code.as_str());
                            metrics.request(service_name, op.name, outcome, started.elapsed());
                            if let Err(e) = request.respond_with_headers(Ok(body), headers).await {
                                tracing::warn!(error = %e, "cannot send reply");
                            }
                            drop(permit);
                        }
                        .instrument(span),
                    );
                    // Reap finished requests so the set does not grow.
                    while in_flight.try_join_next().is_some() {}
                }
                endpoint.stop().await.ok();
                while in_flight.join_next().await.is_some() {}
            });
        }
        // A flush is a PING/PONG round trip: the server has our subscriptions after it.
        if let Err(e) = bus.client().flush().await {
            tracing::warn!(error = %e, "flush after subscribing failed");
        }
        if let Some((health, component)) = &self.ready {
            health.set_ready(component, true);
        }
        while tasks.join_next().await.is_some() {}
        if let Some((health, component)) = &self.ready {
            health.set_ready(component, false);
        }
        service.stop().await.ok();
        Ok(())
    }
}
