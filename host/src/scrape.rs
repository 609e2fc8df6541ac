//! Scraping: fetch one target's `/metrics` over HTTP, parse it, add target labels and the
//! synthetic `up` / `scrape_duration_seconds` / `scrape_samples_scraped` series.
//!
//! One tokio task per target runs [`run_target`]; targets never wait for each other. A failed
//! scrape (HTTP error, timeout, body over the cap, malformed text) still yields a scrape holding
//! only the synthetic series with `up 0`, so a dead target shows centrally. This module never
//! publishes: it hands finished scrapes to the caller's channel.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family as MetricFamily;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::batch::ScrapeBatch;
use crate::exposition;
use crate::exposition::ScrapeWriter;
use crate::model::{Label, ScrapeMeta};
use crate::sink::http::error_chain;

/// What the scraper needs to know about one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub job: String,
    /// The `instance` label: the target's `name`, or the URL's host:port.
    pub instance: String,
    pub url: url::Url,
    pub interval: Duration,
    pub timeout: Duration,
    /// Largest accepted body, after decompression.
    pub body_limit: u64,
    /// The job's `label_limit`: a sample with more labels (counting `__name__` and the target
    /// labels) fails the scrape at parse time.
    pub label_limit: usize,
    /// The job that reports the relay's own metrics keeps scraping while the relay is paused.
    pub exempt_from_pause: bool,
    /// Target labels besides `job` and `instance` (a target group's `labels`), sorted by name.
    pub labels: Vec<Label>,
}

/// Why a scrape failed; the `outcome` label of `promrelay_scrapes_total`.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the body failed: {0}")]
    Body(String),
    #[error("malformed scrape: {0}")]
    Parse(#[from] exposition::ParseError),
}

impl ScrapeError {
    /// A short, stable word for metrics and log de-duplication.
    pub fn kind(&self) -> &'static str {
        match self {
            ScrapeError::Connect(_) => "connect_error",
            ScrapeError::Timeout(_) => "timeout",
            ScrapeError::Status(_) => "http_error",
            ScrapeError::TooLarge(_) => "too_large",
            ScrapeError::Body(_) => "body_error",
            ScrapeError::Parse(_) => "parse_error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobOutcome {
    job: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobTarget {
    job: String,
    target: String,
}

struct ScrapeMetrics {
    scrapes: MetricFamily<JobOutcome, Counter>,
    duration: MetricFamily<JobLabel, Histogram>,
    bytes: MetricFamily<JobLabel, Counter>,
    samples: MetricFamily<JobLabel, Counter>,
    target_errors: MetricFamily<JobTarget, Counter>,
}

static METRICS: LazyLock<ScrapeMetrics> = LazyLock::new(|| {
    let metrics = ScrapeMetrics {
        scrapes: MetricFamily::default(),
        duration: MetricFamily::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        }),
        bytes: MetricFamily::default(),
        samples: MetricFamily::default(),
        target_errors: MetricFamily::default(),
    };
    let mut registry = crate::telemetry::registry();
    registry.register(
        "scrapes",
        "Scrapes by job and outcome (success or the failure kind)",
        metrics.scrapes.clone(),
    );
    registry.register(
        "scrape_duration_seconds",
        "Time to fetch and parse one target",
        metrics.duration.clone(),
    );
    registry.register(
        "scraped_bytes",
        "Bytes of exposition text scraped (after decompression)",
        metrics.bytes.clone(),
    );
    registry.register(
        "scraped_samples",
        "Samples parsed from scrapes",
        metrics.samples.clone(),
    );
    registry.register(
        "scrape_target_errors",
        "Failed scrapes per target (the original's poll_errors)",
        metrics.target_errors.clone(),
    );
    metrics
});

/// Forces registration so the families appear on `/metrics` before the first scrape.
pub fn register_metrics() {
    LazyLock::force(&METRICS);
}

/// Builds the HTTP client of a job's targets: shared by all jobs without `tls_config`,
/// `basic_auth` or `authorization`, one per job with them (files are read now).
pub fn http_client(http: &crate::config::HttpClientConfig) -> anyhow::Result<reqwest::Client> {
    crate::tls::install_crypto_provider();
    let builder = reqwest::Client::builder()
        .user_agent(concat!("promrelay/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .connect_timeout(Duration::from_secs(5));
    crate::sink::http::configure(builder, http)?
        .build()
        .map_err(|e| anyhow::anyhow!("building the HTTP client failed: {e}"))
}

/// Fetches the body of one target within its timeout and size cap.
async fn fetch(client: &reqwest::Client, target: &TargetSpec) -> Result<Vec<u8>, ScrapeError> {
    let request = client
        .get(target.url.clone())
        .header(
            "Accept",
            "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1",
        )
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{:.3}", target.timeout.as_secs_f64()),
        );
    let work = async {
        let mut response = request
            .send()
            .await
            .map_err(|e| ScrapeError::Connect(error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ScrapeError::Status(status.as_u16()));
        }
        if let Some(length) = response.content_length() {
            if length > target.body_limit {
                return Err(ScrapeError::TooLarge(target.body_limit));
            }
        }
        let mut body = Vec::with_capacity(64 * 1024);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ScrapeError::Body(error_chain(&e)))?
        {
            if body.len() as u64 + chunk.len() as u64 > target.body_limit {
                return Err(ScrapeError::TooLarge(target.body_limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    match tokio::time::timeout(target.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ScrapeError::Timeout(target.timeout)),
    }
}

/// Scrapes one target once. Always returns a scrape: on failure it holds only `up 0` and the
/// other synthetic series; the error is returned beside it.
pub async fn scrape_once(
    client: &reqwest::Client,
    target: &TargetSpec,
    publisher: &str,
    writer: &mut ScrapeWriter,
) -> (ScrapeBatch, Option<ScrapeError>) {
    let (scrape, error, done) = scrape_uncounted(client, target, publisher, writer).await;
    let job = JobLabel {
        job: target.job.clone(),
    };
    if let Some(bytes) = done.body_bytes {
        METRICS.bytes.get_or_create(&job).inc_by(bytes);
    }
    METRICS
        .duration
        .get_or_create(&job)
        .observe(done.elapsed.as_secs_f64());
    METRICS.samples.get_or_create(&job).inc_by(done.samples);
    let outcome = error.as_ref().map_or("success", ScrapeError::kind);
    METRICS
        .scrapes
        .get_or_create(&JobOutcome {
            job: target.job.clone(),
            outcome: outcome.to_owned(),
        })
        .inc();
    if error.is_some() {
        METRICS
            .target_errors
            .get_or_create(&JobTarget {
                job: target.job.clone(),
                target: target.instance.clone(),
            })
            .inc();
    }
    (scrape, error)
}

/// What a scrape cost, for the counters of [`scrape_once`].
pub struct ScrapeCost {
    pub elapsed: Duration,
    /// The body's size, when one was read.
    pub body_bytes: Option<u64>,
    pub samples: u64,
}

/// [`scrape_once`] without counting it in the relay's scrape metrics: for the monitor port's
/// `/explain`, whose scrape on demand is no part of the target's schedule.
pub async fn scrape_uncounted(
    client: &reqwest::Client,
    target: &TargetSpec,
    publisher: &str,
    writer: &mut ScrapeWriter,
) -> (ScrapeBatch, Option<ScrapeError>, ScrapeCost) {
    let started = Instant::now();
    let time_ms = unix_millis(SystemTime::now());
    let mut body_bytes = None;
    let standard = crate::model::TARGET_LABELS
        .into_iter()
        .zip([target.job.as_str(), target.instance.as_str()]);
    let own = target
        .labels
        .iter()
        .map(|label| (label.name.as_str(), label.value.as_str()));
    writer.begin(standard.chain(own));
    let result = match fetch(client, target).await {
        Ok(body) => {
            body_bytes = Some(body.len() as u64);
            let mut added: Vec<&str> = crate::model::TARGET_LABELS.to_vec();
            added.extend(target.labels.iter().map(|label| label.name.as_str()));
            let limit = exposition::LabelLimit {
                limit: target.label_limit,
                added: &added,
            };
            writer.parse(&body, limit).map_err(ScrapeError::from)
        }
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed();
    let (samples, error) = match result {
        Ok(samples) => (samples, None),
        Err(e) => (0, Some(e)),
    };
    let up = if error.is_none() { 1.0 } else { 0.0 };
    for (name, help, value) in [
        (
            "up",
            "1 if the target was scraped successfully, 0 otherwise",
            up,
        ),
        (
            "scrape_duration_seconds",
            "Duration of the scrape",
            elapsed.as_secs_f64(),
        ),
        (
            "scrape_samples_scraped",
            "Samples the target exposed",
            samples as f64,
        ),
    ] {
        if let Err(e) = writer.add_synthetic(name, help, value) {
            tracing::error!(job = %target.job, instance = %target.instance,
                "adding the synthetic series {name} failed: {e}");
        }
    }
    let mut bytes = Vec::new();
    writer.finish_into(&mut bytes);
    let meta = ScrapeMeta {
        publisher: publisher.to_owned(),
        job: target.job.clone(),
        instance: target.instance.clone(),
        time_ms,
    };
    let cost = ScrapeCost {
        elapsed,
        body_bytes,
        samples: samples as u64,
    };
    (ScrapeBatch::new(meta, bytes), error, cost)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where in its interval a target scrapes: a stable offset from its identity, so the targets of
/// a poller spread over the interval instead of firing at once.
pub fn spread_offset(target: &TargetSpec, publisher: &str) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        publisher,
        &target.job,
        &target.instance,
        target.url.as_str(),
    )
        .hash(&mut hasher);
    let interval_ms = target.interval.as_millis().max(1) as u64;
    Duration::from_millis(hasher.finish() % interval_ms)
}

/// Logs a target's state once per change of error kind, never once per scrape, and keeps the
/// registry the status page reads ([`crate::status::Targets`]).
#[derive(Default)]
pub struct StateLog {
    last: Mutex<HashMap<(String, String), String>>,
    targets: crate::status::Targets,
}

impl StateLog {
    /// A log whose targets register in `targets`.
    pub fn new(targets: crate::status::Targets) -> StateLog {
        StateLog {
            last: Mutex::default(),
            targets,
        }
    }

    pub fn record(&self, target: &TargetSpec, error: Option<&ScrapeError>) {
        let key = (target.job.clone(), target.instance.clone());
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            Some(e) => {
                let reason = match e {
                    // Parse errors: a new line number is not a new state; the reason is.
                    ScrapeError::Parse(p) => format!("parse_error: {}", p.reason),
                    other => other.kind().to_owned(),
                };
                if last.get(&key) != Some(&reason) {
                    tracing::warn!(job = %target.job, instance = %target.instance,
                        url = %target.url, "scrape failed: {e}");
                    last.insert(key, reason);
                }
            }
            None => {
                if last.remove(&key).is_some() {
                    tracing::info!(job = %target.job, instance = %target.instance,
                        "scrape recovered");
                }
            }
        }
    }
}

/// Scrapes one target on its interval until `shutdown`, handing each scrape to `output`.
/// While `paused` is true, a target not exempt from pause skips its scrapes.
pub async fn run_target(
    client: reqwest::Client,
    target: TargetSpec,
    publisher: String,
    output: mpsc::Sender<ScrapeBatch>,
    paused: watch::Receiver<bool>,
    states: Arc<StateLog>,
    shutdown: CancellationToken,
) {
    // Listed on the status page while this task runs; removed when it ends.
    let entry = states.targets.register(
        &target.job,
        &target.instance,
        target.url.as_str(),
        target.interval,
    );
    let offset = spread_offset(&target, &publisher);
    let start = tokio::time::Instant::now() + offset;
    let mut ticker = tokio::time::interval_at(start, target.interval);
    // This target's batch builder: its string table carries over from scrape to scrape.
    let mut writer = ScrapeWriter::new();
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if *paused.borrow() && !target.exempt_from_pause {
            continue;
        }
        let (scrape, error) = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = scrape_once(&client, &target, &publisher, &mut writer) => result,
        };
        states.record(&target, error.as_ref());
        report_status(&entry, &scrape, error.as_ref());
        if output.send(scrape).await.is_err() {
            return;
        }
    }
}

/// Tells the status registry what a scrape did, from its synthetic series (appended last, so
/// found from the end): once per scrape, never per sample.
fn report_status(
    entry: &crate::status::TargetEntry,
    scrape: &ScrapeBatch,
    error: Option<&ScrapeError>,
) {
    let text = error.map(ToString::to_string);
    entry.record(crate::status::ScrapeReport {
        time_ms: scrape.meta.time_ms,
        duration: Duration::from_secs_f64(
            scrape
                .last_value("scrape_duration_seconds")
                .unwrap_or(0.0)
                .max(0.0),
        ),
        samples: scrape
            .last_value("scrape_samples_scraped")
            .unwrap_or(0.0)
            .max(0.0) as u64,
        error: text.as_deref(),
    });
}
