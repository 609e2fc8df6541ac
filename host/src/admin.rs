//! The monitor port: the status page (`GET /`, HTML rendered by `status::html`), `/metrics`
//! (own metrics), `/healthz`, `/readyz`, `POST /-/reload`, the status as JSON
//! (`GET /api/v1/status`, `/api/v1/targets`, `/api/v1/filters`, `/api/v1/publisher`,
//! `/api/v1/receiver`), the pause state under `/api/v1/`, and `/explain` with
//! `/api/v1/explain` (a job's filter chain explained series by series: `explain`). The actions that change
//! something (`/-/reload`, pause, resume, flip) need `Authorization: Bearer <management.token>`.
//!
//! **Invariant:** handlers only read shared state or send requests to the daemon; they never
//! touch the pipeline directly, so a slow HTTP client cannot stall scraping or publishing.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::pause::{Breaker, Change, Role, Scope};
use crate::status::{RolePause, Snapshot};

mod explain;
mod explain_page;

pub use explain::ExplainSource;

/// A reload request from HTTP; the daemon answers with the outcome text.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// What the admin server shares with the daemon.
#[derive(Clone)]
pub struct AdminState {
    pub identity: String,
    pub component: &'static str,
    pub ready: Arc<AtomicBool>,
    pub reload: mpsc::Sender<ReloadRequest>,
    /// The pause switches of the roles this process runs.
    pub breaker: Breaker,
    /// Filled by the daemon with the filter engine's status.
    pub filters: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// `management.token`: the bearer token `pause`, `resume`, `flip` and `/-/reload` require.
    /// `None`: those actions are refused (403) until a token is configured.
    pub token: Option<crate::config::Secret>,
    /// What the pipeline reports about itself, for the status page.
    pub status: crate::status::Status,
    /// The config file the relay runs with, as given on the command line.
    pub config_path: String,
    /// What `/explain` reads (the running config); `None` when no poller runs.
    pub explain: Option<Arc<ExplainSource>>,
}

/// Serves the monitor port until `shutdown`; with `web` (`web_config_file`), every route behind
/// its TLS and basic auth.
pub async fn serve(
    address: SocketAddr,
    state: AdminState,
    web: Option<crate::web::Handle>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let port = address.port();
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("binding the monitor port {port} failed: {e}"))?;
    if let Some(web) = web {
        let https = web.current().tls.is_some();
        tracing::info!(%address, https, web_config_file = %web.path().display(),
            "monitor port listening");
        return crate::web::serve(listener, router(state), web, shutdown).await;
    }
    tracing::info!(%address, "monitor port listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| anyhow::anyhow!("monitor port server failed: {e}"))
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/targets", get(targets_json))
        .route("/api/v1/publisher", get(publisher_json))
        .route("/api/v1/receiver", get(receiver_json))
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
        .route(
            "/explain",
            get(explain::page)
                .post(explain::page)
                .layer(axum::extract::DefaultBodyLimit::max(explain::BODY_LIMIT)),
        )
        .route(
            "/api/v1/explain",
            get(explain::api)
                .post(explain::api)
                .layer(axum::extract::DefaultBodyLimit::max(explain::BODY_LIMIT)),
        )
        .with_state(state)
}

/// Copies the status out of the pipeline's handles: only the parts of the roles this process
/// runs.
fn snapshot(state: &AdminState) -> Snapshot {
    let runs = |role: Role| state.breaker.roles().any(|running| running == role);
    let (poller, receiver) = (runs(Role::Poller), runs(Role::Receiver));
    Snapshot {
        identity: state.identity.clone(),
        component: state.component.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config_path: state.config_path.clone(),
        now_ms: crate::status::now_ms(),
        pause: state
            .breaker
            .roles()
            .map(|role| RolePause {
                role: role.name().to_owned(),
                paused: state.breaker.is_paused(role),
            })
            .collect(),
        targets: poller.then(|| state.status.targets.snapshot()),
        filters: (state.filters)(),
        publisher: poller.then(|| state.status.publisher.snapshot()),
        receiver: receiver.then(|| state.status.receiver.snapshot()),
    }
}

/// `GET /`: the status page, rendered now (never cached: it is the state at this moment).
async fn status_page(State(state): State<AdminState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::status::html::page(&snapshot(&state)),
    )
        .into_response()
}

async fn status_json(State(state): State<AdminState>) -> Response {
    axum::Json(snapshot(&state)).into_response()
}

async fn targets_json(State(state): State<AdminState>) -> Response {
    let snapshot = snapshot(&state);
    axum::Json(serde_json::json!({ "targets": snapshot.targets.unwrap_or_default() }))
        .into_response()
}

async fn publisher_json(State(state): State<AdminState>) -> Response {
    axum::Json(serde_json::json!({ "publisher": snapshot(&state).publisher })).into_response()
}

async fn receiver_json(State(state): State<AdminState>) -> Response {
    axum::Json(serde_json::json!({ "receiver": snapshot(&state).receiver })).into_response()
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

/// `POST /-/reload`: needs the `management.token` bearer, as pause does, because each reload
/// compiles, initialises and dry-runs the filter chain; SIGHUP stays the local way.
async fn reload(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Err(refusal) = authorize(&state, &headers) {
        let why = match refusal {
            Refusal::NoToken => {
                "reload over HTTP is off: it needs management.token in the \
                relay's config (then send Authorization: Bearer <token>)"
            }
            Refusal::Missing => "reload refused: send Authorization: Bearer <management.token>",
            Refusal::Wrong => {
                tracing::warn!("reload request with a wrong token refused");
                "reload refused: wrong token (Authorization: Bearer must carry management.token)"
            }
        };
        let text = format!(
            "{why}; or reload locally with SIGHUP (kill -HUP <pid>, systemctl reload promrelay)\n"
        );
        return (StatusCode::FORBIDDEN, text).into_response();
    }
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
    let mut answer = state.breaker.status();
    answer["identity"] = serde_json::json!(state.identity);
    answer["component"] = serde_json::json!(state.component);
    answer["version"] = serde_json::json!(env!("CARGO_PKG_VERSION"));
    axum::Json(answer).into_response()
}

/// `?role=poller|receiver|all` of the changing actions.
#[derive(Debug, serde::Deserialize)]
struct RoleQuery {
    role: Option<String>,
}

async fn pause(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(query): Query<RoleQuery>,
) -> Response {
    change(state, &headers, Change::Pause, query)
}

async fn resume(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(query): Query<RoleQuery>,
) -> Response {
    change(state, &headers, Change::Resume, query)
}

async fn flip(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Query(query): Query<RoleQuery>,
) -> Response {
    change(state, &headers, Change::Flip, query)
}

/// Why a request's bearer token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No `management.token` is configured: the action is off.
    NoToken,
    /// No `Authorization: Bearer` header.
    Missing,
    Wrong,
}

/// The header that carries the management token where `Authorization` carries basic auth
/// (a monitor port with `basic_auth_users` in its `web_config_file`).
pub const TOKEN_HEADER: &str = "x-promrelay-token";

/// Accepts a request that carries `Authorization: Bearer <management.token>` (or the token in
/// [`TOKEN_HEADER`]).
fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), Refusal> {
    let token = state.token.as_ref().ok_or(Refusal::NoToken)?;
    let given = headers
        .get(TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "))
        })
        .ok_or(Refusal::Missing)?;
    if same_secret(given.trim(), token.expose()) {
        Ok(())
    } else {
        Err(Refusal::Wrong)
    }
}

/// Applies `change` to the role of `query` (default: the poller where one runs) when the request
/// carries the token; answers `{paused, roles, identity}`.
fn change(state: AdminState, headers: &HeaderMap, change: Change, query: RoleQuery) -> Response {
    match authorize(&state, headers) {
        Ok(()) => {}
        Err(Refusal::NoToken) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "pause, resume and flip need management.token in the config",
            )
        }
        Err(Refusal::Missing) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: Bearer token",
            )
        }
        Err(Refusal::Wrong) => {
            tracing::warn!(?change, "management request with a wrong token refused");
            return refuse(StatusCode::FORBIDDEN, "wrong token");
        }
    }
    let scope = match query.role.as_deref().map(Scope::parse).transpose() {
        Ok(scope) => scope,
        Err(error) => return refuse(StatusCode::BAD_REQUEST, &format!("?role=: {error}")),
    };
    if let Err(error) = state.breaker.apply(change, scope) {
        return refuse(StatusCode::BAD_REQUEST, &format!("?role=: {error}"));
    }
    let mut answer = state.breaker.status();
    tracing::info!(?change, role = query.role.as_deref().unwrap_or("default"),
        state = %answer, "management request over HTTP");
    answer["identity"] = serde_json::json!(state.identity);
    axum::Json(answer).into_response()
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

/// Operator side of `promrelay pause|resume|info`: sends `action` (for `role`, default the
/// relay's) to the monitor port of the relay that runs with `config` (on this machine) and
/// returns its JSON answer. With `identity`, refuses to act on a relay of another identity.
/// With `web_config_file`, it speaks HTTPS to the port's own certificate (presenting it where
/// client certificates are asked for) and sends `credentials` as basic auth.
pub async fn request(
    config: &crate::config::Config,
    action: &str,
    identity: Option<&str>,
    role: Option<Scope>,
    credentials: Option<&crate::web::LocalCredentials>,
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
    crate::tls::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    // A port behind web_config_file: HTTPS to its own certificate, basic auth.
    let (client, base) = match &config.web_config_file {
        Some(path) => {
            let (client, scheme) = crate::web::local_client(&crate::web::load(path)?, credentials)?;
            (client, format!("{scheme}://127.0.0.1:{port}/api/v1"))
        }
        None => (client, base),
    };
    let request = match action {
        "info" | "ping" => client.get(format!("{base}/{action}")),
        "pause" | "resume" | "flip" => {
            let token = config
                .management
                .as_ref()
                .and_then(|management| management.token.as_ref())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{action} over the monitor port needs management.token in the config; \
                         or set management.brokers to ask over NATS (with --seed, or unsigned \
                         to a relay with management.auth.insecure: true)"
                    )
                })?;
            let query = role.map_or(String::new(), |role| format!("?role={}", role.name()));
            let request = client.post(format!("{base}/{action}{query}"));
            if credentials.is_some() {
                // Authorization carries the basic auth credentials.
                request.header(TOKEN_HEADER, token.expose())
            } else {
                request.bearer_auth(token.expose())
            }
        }
        other => anyhow::bail!("unknown management action {other:?}"),
    };
    let answer = request.send().await.map_err(|e| {
        let why = crate::sink::http::error_chain(&e);
        anyhow::anyhow!("no answer from the relay's monitor port {port}: {why}")
    })?;
    let status = answer.status();
    anyhow::ensure!(
        status != reqwest::StatusCode::UNAUTHORIZED,
        "{action} refused by the monitor port {port} (401): its web_config_file requires basic \
         auth; check --web-user and --web-password-file (or PROMRELAY_WEB_PASSWORD)"
    );
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
