//! The monitor port: `/metrics` (own metrics), `/healthz`, `/readyz`, `POST /-/reload`,
//! `GET /api/v1/filters`, and the pause state under `/api/v1/`.
//!
//! **Invariant:** handlers only read shared state or send requests to the daemon; they never
//! touch the pipeline directly, so a slow HTTP client cannot stall scraping or publishing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
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
    /// `management.token`: the bearer token `pause`, `resume` and `flip` require. `None`: those
    /// actions are refused (403) until a token is configured.
    pub token: Option<crate::config::Secret>,
}

/// Serves the monitor port until `shutdown`.
pub async fn serve(
    address: SocketAddr,
    state: AdminState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let port = address.port();
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
        .route("/api/v1/pause", post(pause))
        .route("/api/v1/resume", post(resume))
        .route("/api/v1/flip", post(flip))
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

/// A change of the pause state requested over HTTP.
#[derive(Debug, Clone, Copy)]
enum Change {
    Pause,
    Resume,
    Flip,
}

async fn pause(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    change(state, &headers, Change::Pause)
}

async fn resume(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    change(state, &headers, Change::Resume)
}

async fn flip(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    change(state, &headers, Change::Flip)
}

/// Applies `change` when the request carries `Authorization: Bearer <management.token>`;
/// answers `{paused, identity}`.
fn change(state: AdminState, headers: &HeaderMap, change: Change) -> Response {
    let Some(token) = &state.token else {
        return refuse(
            StatusCode::FORBIDDEN,
            "pause, resume and flip need management.token in the config",
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        None => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer token",
            )
        }
        Some(given) if !same_secret(given.trim(), token.expose()) => {
            tracing::warn!(?change, "management request with a wrong token refused");
            return refuse(StatusCode::FORBIDDEN, "wrong token");
        }
        Some(_) => {}
    }
    // Only a real change notifies the daemon (gauge, log line, lifecycle event).
    state.paused.send_if_modified(|paused| {
        let before = *paused;
        *paused = match change {
            Change::Pause => true,
            Change::Resume => false,
            Change::Flip => !before,
        };
        *paused != before
    });
    let paused = *state.paused.borrow();
    tracing::info!(?change, paused, "management request over HTTP");
    axum::Json(serde_json::json!({ "paused": paused, "identity": state.identity })).into_response()
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": reason }))).into_response()
}

/// Compares two secrets in time independent of where they first differ.
fn same_secret(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    let mut difference = u8::from(given.len() != expected.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(0);
    }
    difference == 0
}

/// Operator side of `promrelay pause|resume|info`: sends `action` to the monitor port of the
/// relay that runs with `config` (on this machine) and returns its JSON answer. With `identity`,
/// refuses to act on a relay of another identity.
pub async fn request(
    config: &crate::config::Config,
    action: &str,
    identity: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let port = config.monitor_port.ok_or_else(|| {
        anyhow::anyhow!("monitor_port is not set: the relay has no management API")
    })?;
    if let Some(wanted) = identity {
        anyhow::ensure!(
            wanted == config.identity,
            "the config is for identity {:?}, not {wanted:?}",
            config.identity
        );
    }
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let request = match action {
        "info" | "ping" => client.get(format!("{base}/{action}")),
        "pause" | "resume" | "flip" => {
            let token = config
                .management
                .as_ref()
                .and_then(|management| management.token.as_ref())
                .ok_or_else(|| anyhow::anyhow!("{action} needs management.token in the config"))?;
            client
                .post(format!("{base}/{action}"))
                .bearer_auth(token.expose())
        }
        other => anyhow::bail!("unknown management action {other:?}"),
    };
    let answer = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("no answer from the relay's monitor port {port}: {e}"))?;
    let status = answer.status();
    let text = answer
        .text()
        .await
        .map_err(|e| anyhow::anyhow!("{action}: reading the relay's answer: {e}"))?;
    let body: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{action}: the relay's answer is not JSON ({e}): {text}"))?;
    anyhow::ensure!(status.is_success(), "{action} refused ({status}): {body}");
    if let Some(wanted) = identity {
        let running = body["identity"].as_str().unwrap_or_default();
        anyhow::ensure!(
            running == wanted,
            "the relay on port {port} is {running:?}, not {wanted:?}"
        );
    }
    Ok(body)
}
