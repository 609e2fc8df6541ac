//! `GET|POST /explain` (an HTML form and its result) and `GET|POST /api/v1/explain` (the same
//! as JSON): what the filter chain of a job does to the series a selector picks, step by step
//! (`filter::explain`), either on a scrape of one of the relay's targets made now with its
//! job's HTTP client, or on series text pasted into the form.
//!
//! Access: open like the other reading routes. Each request is bounded: one explain at a time
//! (a second one is answered 429), the scrape by its job's `scrape_timeout` and
//! `scrape_body_limit`, the chain by each filter's `limits`, pasted text by
//! [`TEXT_LIMIT`], the series followed by `filter::explain::DEFAULT_SERIES_LIMIT`.
//!
//! **Invariant:** an explain never touches the live pipeline: it builds its own stages from the
//! running config (their calls count nothing), its scrape is not counted in the relay's scrape
//! metrics and goes nowhere, and a target's schedule is unaffected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::AdminState;
use crate::config::Config;
use crate::filter::explain::{self, Report, Selector};
use crate::filter::{FilterEngine, Stage, StageStats};
use crate::lifecycle::Events;
use crate::scrape::TargetSpec;

/// Largest pasted series text (and form body), in bytes.
pub const TEXT_LIMIT: usize = 4 << 20;
/// Largest request body: pasted text, urlencoded (up to three bytes per byte).
pub const BODY_LIMIT: usize = 3 * TEXT_LIMIT + 4096;

/// What `/explain` reads: the running config (replaced on every successful reload) and the
/// daemon's filter engine (its stages are the explain's own; the engine and its module cache
/// are shared with the live chains). The daemon holds it and the admin state shares it.
pub struct ExplainSource {
    config: Mutex<Arc<Config>>,
    engine: Arc<FilterEngine>,
    busy: Semaphore,
}

impl ExplainSource {
    pub fn new(config: &Config, engine: Arc<FilterEngine>) -> Arc<ExplainSource> {
        Arc::new(ExplainSource {
            config: Mutex::new(Arc::new(config.clone())),
            engine,
            busy: Semaphore::new(1),
        })
    }

    /// The config a reload put in force.
    pub fn update(&self, config: &Config) {
        *self.config.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(config.clone());
    }

    fn config(&self) -> Arc<Config> {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The form's fields (query string or urlencoded body).
#[derive(Debug, Default, Clone)]
pub(super) struct Request {
    /// `JOB/INSTANCE` of a target to scrape now.
    pub target: String,
    /// Pasted series text (used when no target is picked).
    pub text: String,
    /// The job whose chain runs on pasted text.
    pub job: String,
    pub selector: String,
}

impl Request {
    fn from_pairs<'a>(
        pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
    ) -> Request {
        let mut request = Request::default();
        for (key, value) in pairs {
            let value = value.into_owned();
            match &*key {
                "target" => request.target = value,
                "text" => request.text = value,
                "job" => request.job = value,
                "selector" => request.selector = value,
                _ => {}
            }
        }
        request
    }

    fn is_empty(&self) -> bool {
        self.target.is_empty() && self.text.trim().is_empty()
    }
}

/// What was explained, for the page and the JSON.
#[derive(Debug, Serialize)]
pub(super) struct Explained {
    /// `target` or `text`.
    pub source: &'static str,
    /// One sentence saying where the series came from and how the chain ran.
    pub how: String,
    pub job: String,
    pub instance: Option<String>,
    /// The target's scrape error, if it failed (the chain then sees only the synthetic series).
    pub scrape_error: Option<String>,
    pub report: Report,
}

/// A target as the form lists it.
pub(super) struct TargetChoice {
    pub key: String,
    pub job: String,
    pub instance: String,
    pub url: String,
}

/// The configured jobs' targets (the self-scrape job is not listed: it has no chain of its own).
pub(super) fn targets(config: &Config) -> Vec<(TargetChoice, TargetSpec)> {
    config
        .jobs
        .iter()
        .flat_map(|job| {
            job.targets.iter().map(move |target| {
                let spec = TargetSpec {
                    job: job.name.clone(),
                    instance: target.name.clone(),
                    url: target.url.clone(),
                    interval: job.scrape_interval,
                    timeout: job.scrape_timeout,
                    body_limit: job.scrape_body_limit,
                    label_limit: job.label_limit,
                    exempt_from_pause: false,
                    labels: target.labels.clone(),
                };
                let choice = TargetChoice {
                    key: format!("{}/{}", job.name, target.name),
                    job: job.name.clone(),
                    instance: target.name.clone(),
                    url: target.url.to_string(),
                };
                (choice, spec)
            })
        })
        .collect()
}

/// Reads the request's fields from the query string (GET) or the urlencoded body (POST).
fn read_request(method: &Method, query: &HashMap<String, String>, body: &Bytes) -> Request {
    if *method == Method::POST {
        Request::from_pairs(url::form_urlencoded::parse(body))
    } else {
        Request::from_pairs(
            query
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into())),
        )
    }
}

/// Why an explain could not run: the status and the text shown.
pub(super) struct Refused(pub StatusCode, pub String);

/// Runs one explain. Bounded as the module says; never touches the live chain.
pub(super) async fn run(state: &AdminState, request: &Request) -> Result<Explained, Refused> {
    let source = state
        .explain
        .as_ref()
        .ok_or_else(|| {
            Refused(
                StatusCode::NOT_FOUND,
                "explain needs a poller: this relay runs no filter chains".to_owned(),
            )
        })?
        .clone();
    let selector = Selector::parse(&request.selector).map_err(|e| {
        Refused(
            StatusCode::BAD_REQUEST,
            format!("{e}; write it as in PromQL, e.g. node_cpu_seconds_total{{mode=\"idle\"}}"),
        )
    })?;
    let _permit = source.busy.try_acquire().map_err(|_| {
        Refused(
            StatusCode::TOO_MANY_REQUESTS,
            "another explain is running; retry when it finished".to_owned(),
        )
    })?;
    let config = source.config();
    let (job, instance, scrape, scrape_error, how) = if !request.target.is_empty() {
        let all = targets(&config);
        let Some((choice, spec)) = all.into_iter().find(|(c, _)| c.key == request.target) else {
            return Err(Refused(
                StatusCode::BAD_REQUEST,
                format!(
                    "no target {:?} in the running config (pick one of the list: JOB/INSTANCE)",
                    request.target
                ),
            ));
        };
        let job_config = config.jobs.iter().find(|j| j.name == choice.job);
        let http = job_config.map(|j| j.http.clone()).unwrap_or_default();
        let client = crate::scrape::http_client(&http).map_err(|e| {
            Refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("building job {}'s HTTP client: {e:#}", choice.job),
            )
        })?;
        let mut writer = crate::exposition::ScrapeWriter::new();
        let (scrape, error, cost) =
            crate::scrape::scrape_uncounted(&client, &spec, &config.identity, &mut writer).await;
        let scrape = scrape.to_scrape();
        let how = format!(
            "scraped {} now with job {}'s HTTP client (timeout {:?}, body limit {} bytes) in \
             {:.0} ms; the chain of job {} ran in explain mode on instances of its own: the live \
             pipeline, its filters' statistics and the target's schedule are untouched, and this \
             scrape is not published",
            choice.url,
            choice.job,
            spec.timeout,
            spec.body_limit,
            cost.elapsed.as_secs_f64() * 1000.0,
            choice.job
        );
        (
            choice.job,
            Some(choice.instance),
            scrape,
            error.map(|e| e.to_string()),
            how,
        )
    } else {
        if request.text.len() > TEXT_LIMIT {
            return Err(Refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "pasted text of {} bytes is over the limit of {TEXT_LIMIT} bytes",
                    request.text.len()
                ),
            ));
        }
        let job = if request.job.is_empty() {
            config
                .jobs
                .first()
                .map(|j| j.name.clone())
                .unwrap_or_default()
        } else {
            request.job.clone()
        };
        let Some(job_config) = config.jobs.iter().find(|j| j.name == job) else {
            return Err(Refused(
                StatusCode::BAD_REQUEST,
                format!("no job {job:?} in the running config (pick the job whose chain runs)"),
            ));
        };
        let limit = crate::exposition::LabelLimit {
            limit: job_config.label_limit,
            added: &crate::model::TARGET_LABELS,
        };
        let families = crate::exposition::parse_with_label_limit(request.text.as_bytes(), limit)
            .map_err(|e| Refused(StatusCode::BAD_REQUEST, format!("the pasted text: {e}")))?;
        let mut scrape = crate::model::Scrape {
            meta: crate::model::ScrapeMeta {
                publisher: config.identity.clone(),
                job: job.clone(),
                instance: "pasted".to_owned(),
                ..crate::model::ScrapeMeta::default()
            },
            families,
        };
        scrape.add_target_labels(&job, "pasted");
        let how = format!(
            "pasted series (target labels job=\"{job}\", instance=\"pasted\" added as the relay \
             adds them); the chain of job {job} ran in explain mode on instances of its own: the \
             live pipeline is untouched"
        );
        (job, None, scrape, None, how)
    };
    let filters: Vec<_> = config
        .filters
        .iter()
        .chain(
            config
                .jobs
                .iter()
                .filter(|j| j.name == job)
                .flat_map(|j| j.filters.iter()),
        )
        .cloned()
        .collect();
    let label_limit = config
        .jobs
        .iter()
        .find(|j| j.name == job)
        .map_or(crate::model::DEFAULT_LABEL_LIMIT, |j| j.label_limit);
    let engine = source.engine.clone();
    let report = tokio::task::spawn_blocking(move || -> Result<Report, String> {
        let mut stages = Vec::new();
        for filter in filters {
            let compiled = engine
                .load_file(&filter.module)
                .map_err(|e| e.to_string())?;
            let name = filter.name.clone();
            // An explain reports nothing: its stages send no lifecycle events.
            let stage = Stage::new(
                filter,
                compiled,
                Arc::new(StageStats::default()),
                Events::none(),
            )
            .map_err(|e| format!("filter {name}: {e}"))?;
            stages.push(Arc::new(stage));
        }
        Ok(explain::explain(
            &stages,
            scrape,
            &selector,
            explain::DEFAULT_SERIES_LIMIT,
            label_limit,
        ))
    })
    .await
    .map_err(|e| {
        Refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("explain thread failed: {e}"),
        )
    })?
    .map_err(|e| {
        Refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("loading the chain of job {job}: {e}"),
        )
    })?;
    Ok(Explained {
        source: if request.target.is_empty() {
            "text"
        } else {
            "target"
        },
        how,
        job,
        instance,
        scrape_error,
        report,
    })
}

/// `GET|POST /explain`: the form, and the result when the request asked for one.
pub(super) async fn page(
    State(state): State<AdminState>,
    method: Method,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let request = read_request(&method, &query, &body);
    let config = state.explain.as_ref().map(|s| s.config());
    let result = if request.is_empty() {
        None
    } else {
        Some(run(&state, &request).await)
    };
    let status = match &result {
        Some(Err(Refused(status, _))) => *status,
        _ => StatusCode::OK,
    };
    let html = super::explain_page::render(config.as_deref(), &request, result.as_ref());
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// `GET|POST /api/v1/explain`: the same as JSON (`{source, how, job, instance, scrape_error,
/// report}`), or `{error}` with the status.
pub(super) async fn api(
    State(state): State<AdminState>,
    method: Method,
    _headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let request = read_request(&method, &query, &body);
    if request.is_empty() {
        let error = "give target=JOB/INSTANCE (scrape it now) or text=SERIES (with job=JOB), \
                     and selector=SELECTOR";
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": error })),
        )
            .into_response();
    }
    match run(&state, &request).await {
        Ok(explained) => axum::Json(explained).into_response(),
        Err(Refused(status, error)) => {
            (status, axum::Json(serde_json::json!({ "error": error }))).into_response()
        }
    }
}
