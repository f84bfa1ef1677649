//! The `/healthz`, `/readyz` and `/metrics` HTTP endpoints.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Health, Metrics, TelemetryError};

/// The content type of `GET /metrics` (OpenMetrics text, which Prometheus scrapes).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug)]
struct AppState {
    metrics: Metrics,
    health: Health,
}

/// Binds the telemetry HTTP listener, returning it with the address actually bound
/// (so `127.0.0.1:0` yields a free port to report or test against).
///
/// # Errors
///
/// [`TelemetryError::Bind`] when the address cannot be bound.
pub async fn bind_http(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), TelemetryError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Binds `addr` and serves [`router`] until `shutdown` is cancelled, then drains
/// in-flight requests and returns.
///
/// # Errors
///
/// [`TelemetryError::Bind`] when the address cannot be bound, [`TelemetryError::Serve`]
/// when serving fails.
pub async fn serve_http(
    addr: SocketAddr,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), TelemetryError> {
    let (listener, _) = bind_http(addr).await?;
    serve_listener(listener, metrics, health, shutdown).await
}

/// Serves [`router`] on an already bound listener (see [`bind_http`]) until `shutdown`
/// is cancelled, then drains in-flight requests and returns.
///
/// # Errors
///
/// [`TelemetryError::Serve`] when serving fails.
pub async fn serve_listener(
    listener: TcpListener,
    metrics: Metrics,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), TelemetryError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(TelemetryError::Serve)
}

/// The telemetry routes, for embedding in a larger axum application:
///
/// - `GET /healthz`: 200 `ok` while the process is alive;
/// - `GET /readyz`: the [`HealthReport`](crate::HealthReport) as JSON, 200 when every
///   component is ready, else 503;
/// - `GET /metrics`: [`Metrics::encode`] with [`METRICS_CONTENT_TYPE`].
pub fn router(metrics: Metrics, health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, health })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let report = state.health.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// A minimal HTTP/1.1 GET; returns (status, lower-cased head, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        (status, head.to_ascii_lowercase(), body.to_owned())
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics_then_shuts_down() {
        let metrics = Metrics::new();
        let health = Health::new();
        health.register("issuer");
        metrics.credential_issued("tls-server");

        let (listener, addr) = bind_http("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        assert_ne!(addr.port(), 0);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_listener(
            listener,
            metrics.clone(),
            health.clone(),
            shutdown.clone(),
        ));

        let (status, _, body) = get(addr, "/healthz").await;
        assert_eq!((status, body.as_str()), (200, "ok"));

        let (status, head, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(head.contains("content-type: application/json"), "{head}");
        let report: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(report["ready"], false);
        assert_eq!(report["components"]["issuer"], false);

        health.set_ready("issuer", true);
        let (status, _, body) = get(addr, "/readyz").await;
        assert_eq!(status, 200);
        let report: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(report["ready"], true);

        let (status, head, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        assert!(body.contains(r#"sigil_credentials_issued_total{profile="tls-server"} 1"#));
        assert!(body.ends_with("# EOF\n"), "{body}");

        let (status, _, _) = get(addr, "/nope").await;
        assert_eq!(status, 404);

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server stops on cancel")
            .expect("join")
            .expect("serve");
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }

    #[tokio::test]
    async fn bind_reports_an_address_in_use() {
        let (_listener, addr) = bind_http("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        match bind_http(addr).await {
            Err(TelemetryError::Bind { addr: failed, .. }) => assert_eq!(failed, addr),
            other => panic!("expected a bind error, got {other:?}"),
        }
    }
}
