//! The monitor port: `/metrics` (own metrics), `/healthz`, `/readyz`, `POST /-/reload`,
//! `GET /api/v1/filters`, and the pause state under `/api/v1/`.
//!
//! **Invariant:** handlers only read shared state or send requests to the daemon; they never
//! touch the pipeline directly, so a slow HTTP client cannot stall scraping or publishing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// A reload request from HTTP; the daemon answers with the outcome text.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// What the admin server shares with the daemon.
#[derive(Clone)]
pub struct AdminState {
    pub identity: String,
    pub component: &'static str,
    pub ready: Arc<AtomicBool>,
    pub reload: mpsc::Sender<ReloadRequest>,
    pub paused: watch::Sender<bool>,
    /// Filled by the daemon with the filter engine's status.
    pub filters: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
}

/// Serves the monitor port until `shutdown`.
pub async fn serve(
    port: u16,
    state: AdminState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let address = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("binding the monitor port {port} failed: {e}"))?;
    tracing::info!(%address, "monitor port listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| anyhow::anyhow!("monitor port server failed: {e}"))
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/-/reload", post(reload))
        .route("/api/v1/filters", get(filters))
        .route("/api/v1/info", get(info))
        .route("/api/v1/ping", get(info))
        .with_state(state)
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::telemetry::encode(),
    )
        .into_response()
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn reload(State(state): State<AdminState>) -> Response {
    let (answer, outcome) = oneshot::channel();
    if state.reload.send(answer).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match outcome.await {
        Ok(Ok(text)) => (StatusCode::OK, format!("{text}\n")).into_response(),
        Ok(Err(text)) => (StatusCode::UNPROCESSABLE_ENTITY, format!("{text}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

async fn filters(State(state): State<AdminState>) -> Response {
    axum::Json((state.filters)()).into_response()
}

async fn info(State(state): State<AdminState>) -> Response {
    axum::Json(serde_json::json!({
        "identity": state.identity,
        "component": state.component,
        "version": env!("CARGO_PKG_VERSION"),
        "paused": *state.paused.borrow(),
    }))
    .into_response()
}
