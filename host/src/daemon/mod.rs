//! Wiring: turns a validated config into running tasks (scrapers, filter stage, publisher,
//! receiver, monitor port), and handles signals: SIGHUP reloads, SIGTERM/SIGINT shut down.
//!
//! **Invariant:** shutdown is one `CancellationToken` passed down; every task notices it in one
//! place. Scraping stops first, then the publisher and the receiver drain their in-flight work
//! within a bounded time, then the process exits 0.

mod reload;
mod scrapers;
mod shutdown;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use anyhow::Context as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family as MetricFamily;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, ReloadRequest};
use crate::batch::ScrapeBatch;
use crate::config::{self, Config};
use crate::discovery::{Discovery, JobTargets};
use crate::filter::{ChainPlan, Chains, FilterEngine, FilterOutcome};
use crate::pause::{Breaker, Role};
use crate::scrape::StateLog;

use crate::shutdown::Shutdown;
use crate::{lifecycle, nats, publish, receive, wire};
use reload::{reload, reload_event};
pub use scrapers::{target_specs, target_specs_with};
use scrapers::{JobClients, Scrapers};

/// Which parts of the relay to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Whatever the config has sections for.
    Auto,
    Poller,
    Receiver,
}

/// The name of the job through which a poller relays its own metrics.
pub const SELF_JOB: &str = "promrelay";

pub use shutdown::EXIT_SHARE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

struct DaemonMetrics {
    build_info: MetricFamily<VersionLabels, Gauge>,
    paused: Gauge,
    paused_by_role: MetricFamily<RoleLabel, Gauge>,
    jobs: Gauge,
    targets: MetricFamily<JobLabel, Gauge>,
}

static METRICS: LazyLock<DaemonMetrics> = LazyLock::new(|| {
    let metrics = DaemonMetrics {
        build_info: MetricFamily::default(),
        paused: Gauge::default(),
        paused_by_role: MetricFamily::default(),
        jobs: Gauge::default(),
        targets: MetricFamily::default(),
    };
    let mut registry = crate::telemetry::registry();
    registry.register(
        "build_info",
        "Build information",
        metrics.build_info.clone(),
    );
    registry.register(
        "paused",
        "1 while any role of this process (poller, receiver) is paused",
        metrics.paused.clone(),
    );
    registry.register(
        "paused_by_role",
        "1 while this role (poller, receiver) is paused; only the roles this process runs",
        metrics.paused_by_role.clone(),
    );
    registry.register("jobs", "Scrape jobs configured", metrics.jobs.clone());
    registry.register("targets", "Scrape targets per job", metrics.targets.clone());
    metrics
        .build_info
        .get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
        .set(1);
    metrics
});

/// Loads and validates the config; every problem is in the error.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs the relay until SIGTERM/SIGINT or `shutdown`.
pub async fn run(
    config_path: PathBuf,
    config: Config,
    mode: Mode,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let unsupported = config.unsupported();
    if !unsupported.is_empty() {
        let text: Vec<String> = unsupported.iter().map(|p| p.to_string()).collect();
        anyhow::bail!("{}: {}", config_path.display(), text.join("\n"));
    }
    let run_poller = match mode {
        Mode::Auto => config.runs_poller(),
        Mode::Poller => true,
        Mode::Receiver => false,
    };
    let run_receiver = match mode {
        Mode::Auto => config.runs_receiver(),
        Mode::Poller => false,
        Mode::Receiver => true,
    };
    if run_poller {
        anyhow::ensure!(
            config.poller_stream.is_some(),
            "{}: the poller needs a poller_stream section",
            config_path.display()
        );
    }
    if run_receiver {
        anyhow::ensure!(
            config.receiver_stream.is_some(),
            "{}: the receiver needs a receiver_stream section",
            config_path.display()
        );
        anyhow::ensure!(
            config.push_gateway.is_some() || !config.remote_write.is_empty(),
            "{}: the receiver needs push_gateway or remote_write",
            config_path.display()
        );
    }
    anyhow::ensure!(
        run_poller || run_receiver,
        "{}: nothing to run: a poller needs poller_stream and jobs, a receiver needs \
         receiver_stream and push_gateway (or remote_write)",
        config_path.display()
    );
    // TLS files are checked now, so that a bad file fails the start with its name. Each
    // connection gets its section's security as a value: nothing is registered process-wide, so
    // two relays in one process connect each with its own.
    let poller_security = match config.poller_stream.as_ref().filter(|_| run_poller) {
        Some(stream) => nats::Security::load("poller_stream", stream.tls.as_ref(), &stream.auth)
            .with_context(|| config_path.display().to_string())?,
        None => nats::Security::default(),
    };
    let receiver_security = match config.receiver_stream.as_ref().filter(|_| run_receiver) {
        Some(stream) => nats::Security::load("receiver_stream", stream.tls.as_ref(), &stream.auth)
            .with_context(|| config_path.display().to_string())?,
        None => nats::Security::default(),
    };
    for warning in config.warnings() {
        tracing::warn!("{}: {warning}", config_path.display());
    }
    let management_security = match config.management.as_ref() {
        Some(management) => nats::Security::load(
            "management",
            management.tls.as_ref(),
            &config::NatsAuth::None,
        )
        .with_context(|| config_path.display().to_string())?,
        None => nats::Security::default(),
    };
    // The monitor port's web config: a bad file fails the start with its name and key.
    let web = match (&config.web_config_file, config.monitor_port) {
        (Some(path), Some(_)) => Some(
            crate::web::Handle::load(path).with_context(|| config_path.display().to_string())?,
        ),
        _ => None,
    };
    // Before anything starts: a SIGHUP while the filters compile would otherwise kill the
    // process (the default action); caught now, it is handled once the loop runs.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    LazyLock::force(&METRICS);
    let component = match (run_poller, run_receiver) {
        (true, true) => "relay",
        (true, false) => "poller",
        _ => "receiver",
    };
    tracing::info!(identity = %config.identity, component, version = env!("CARGO_PKG_VERSION"),
        "promrelay starting");
    let (events, events_task) = {
        let (urls, role, security) = match (&config.poller_stream, &config.receiver_stream) {
            (Some(stream), _) if run_poller => (stream.urls.clone(), "poller", &poller_security),
            (_, Some(stream)) => (stream.urls.clone(), "receiver", &receiver_security),
            _ => (Vec::new(), "poller", &poller_security),
        };
        let name = config
            .management
            .as_ref()
            .map_or(SELF_JOB, |management| management.name.as_str());
        lifecycle::start(
            urls,
            role,
            security.clone(),
            config.identity.clone(),
            name.to_owned(),
        )
    };
    events.send(lifecycle::Event::Startup);
    // The poller's filter engine and chains, this daemon's own: the chains report filter loads
    // and failures to `events`, the monitor port reads their status, /explain compiles on the
    // engine. Filled by the first reload below, once the monitor port answers.
    let engine = match run_poller {
        true => Some(Arc::new(
            FilterEngine::new().context("creating the filter engine")?,
        )),
        false => None,
    };
    let filters: Option<Arc<Chains>> = engine
        .as_ref()
        .map(|engine| Chains::empty(engine.clone(), events.clone()));

    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    let breaker = Breaker::new(run_poller, run_receiver);
    for role in breaker.roles() {
        METRICS
            .paused_by_role
            .get_or_create(&RoleLabel { role: role.name() })
            .set(0);
    }
    // Subscribed before the monitor port and management can change it: a pause in the first
    // moments is seen (gauge, event) like any other.
    let mut poller_seen = breaker.subscribe(Role::Poller);
    let mut receiver_seen = breaker.subscribe(Role::Receiver);
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    // What the stages report about themselves, for the status page: passed down, never global.
    let status = crate::status::Status::default();
    let ready = Arc::new(AtomicBool::new(false));
    // Scrapers get their own token so that they stop before the publisher drains.
    let scrapers_stop = shutdown.child_token();
    // The publisher and receiver drain after the scrapers stopped, by the shutdown's deadline.
    let pipeline_stop = Shutdown::new();

    // What the monitor port's /explain reads; replaced by each reload that took effect.
    let explain_source = engine
        .as_ref()
        .map(|engine| admin::ExplainSource::new(&config, engine.clone()));
    if let Some(port) = config.monitor_port {
        let state = AdminState {
            explain: explain_source.clone(),
            identity: config.identity.clone(),
            component,
            ready: ready.clone(),
            reload: reload_tx.clone(),
            breaker: breaker.clone(),
            filters: {
                let chains = filters.clone();
                Arc::new(move || {
                    chains
                        .as_ref()
                        .map_or_else(crate::filter::no_chains_json, |chains| chains.status_json())
                })
            },
            token: config.management.as_ref().and_then(|m| m.token.clone()),
            status: status.clone(),
            config_path: config_path.display().to_string(),
        };
        let stop = pipeline_stop.token();
        let address = std::net::SocketAddr::new(config.monitor_address, port);
        let web = web.clone();
        tasks.spawn(async move {
            (
                "monitor port",
                admin::serve(address, state, web, stop).await,
            )
        });
    }

    if let Some(management) = config
        .management
        .clone()
        .filter(|management| !management.brokers.is_empty())
    {
        let identity = config.identity.clone();
        let breaker = breaker.clone();
        let stop = pipeline_stop.token();
        let security = management_security.clone();
        tasks.spawn(async move {
            (
                "management",
                crate::management::serve(management, identity, security, breaker, stop).await,
            )
        });
    }

    let mut poller = None;
    let mut discovery: Option<Discovery> = None;
    let (discovered_tx, mut discovered_rx) = mpsc::channel::<JobTargets>(64);
    if let Some(chains) = filters.clone() {
        let stream = config
            .poller_stream
            .as_ref()
            .context("poller_stream is required")?;
        chains
            .reload(ChainPlan::from_config(&config))
            .await
            // The error names its filter ("filter global/NAME: ..."): no second prefix.
            .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
        // The watcher stops with the scrapers: no new chain is needed once scraping ended.
        let _watcher = chains.watch(scrapers_stop.clone())?;
        let (raw_tx, raw_rx) = mpsc::channel::<ScrapeBatch>(1024);
        let (scrapes_tx, scrapes_rx) = mpsc::channel::<ScrapeBatch>(1024);
        tasks.spawn(async move {
            filter_stage(chains, raw_rx, scrapes_tx).await;
            ("filter stage", Ok(()))
        });
        let settings = publish::PublisherSettings {
            identity: config.identity.clone(),
            urls: stream.urls.clone(),
            security: poller_security.clone(),
            stream: wire::StreamSettings::from_config(stream),
            outage_buffer: config.outage_buffer,
            max_in_flight: 64,
            flush_timeout: shutdown::DRAIN_TIMEOUT,
            status: status.publisher.clone(),
            spool: config.spool.clone(),
        };
        let stop = pipeline_stop.clone();
        tasks.spawn(async move { ("publisher", publish::run(settings, scrapes_rx, stop).await) });
        let mut scrapers = Scrapers {
            clients: JobClients::build(&config, 0, web.as_ref())?,
            publisher: config.identity.clone(),
            output: raw_tx,
            paused: breaker.subscribe(Role::Poller),
            states: Arc::new(StateLog::new(status.targets.clone())),
            stop: scrapers_stop.clone(),
            running: HashMap::new(),
        };
        scrapers.apply(target_specs(&config));
        poller = Some(scrapers);
        // File discovery stops with the scrapers; its targets arrive through `discovered_rx`.
        let mut files = Discovery::new(discovered_tx.clone(), scrapers_stop.clone());
        files.apply(&config);
        discovery = Some(files);
    }

    let mut receiver_sources = None;
    if run_receiver {
        let mut settings = receive::ReceiverSettings::from_config(&config)?;
        settings.drain_timeout = shutdown::DRAIN_TIMEOUT;
        let (sources_tx, sources_rx) = tokio::sync::watch::channel(settings.stream.sources.clone());
        settings.source_updates = Some(sources_rx);
        receiver_sources = Some(sources_tx);
        settings.status = status.receiver.clone();
        settings.security = receiver_security.clone();
        let stop = pipeline_stop.token();
        let paused = breaker.subscribe(Role::Receiver);
        tasks.spawn(async move { ("receiver", receive::run(settings, stop, paused).await) });
    }

    ready.store(true, Ordering::Release);
    let mut current = config;

    let failure = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break None,
            _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); break None }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: shutting down"); break None }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading {}", config_path.display());
                let outcome = reload(&config_path, &mut current, poller.as_mut(),
                    discovery.as_mut(), filters.as_deref(), receiver_sources.as_ref(), web.as_ref()).await;
                if let (Ok(_), Some(source)) = (&outcome, &explain_source) {
                    source.update(&current);
                }
                events.send(reload_event(&outcome));
            }
            Some(answer) = reload_rx.recv() => {
                let outcome = reload(&config_path, &mut current, poller.as_mut(),
                    discovery.as_mut(), filters.as_deref(), receiver_sources.as_ref(), web.as_ref()).await;
                if let (Ok(_), Some(source)) = (&outcome, &explain_source) {
                    source.update(&current);
                }
                events.send(reload_event(&outcome));
                let _ = answer.send(outcome);
            }
            Some(update) = discovered_rx.recv() => {
                if let (Some(scrapers), Some(files)) = (poller.as_mut(), discovery.as_mut()) {
                    let job = update.job.clone();
                    if files.update(update) {
                        let (started, stopped) =
                            scrapers.apply(target_specs_with(&current, files.targets()));
                        tracing::info!(job = %job, started, stopped, "file_sd targets changed");
                    }
                }
            }
            Ok(()) = poller_seen.changed() => {
                let paused = *poller_seen.borrow_and_update();
                pause_changed(&breaker, Role::Poller, paused, &events);
            }
            Ok(()) = receiver_seen.changed() => {
                let paused = *receiver_seen.borrow_and_update();
                pause_changed(&breaker, Role::Receiver, paused, &events);
            }
            Some(joined) = tasks.join_next() => {
                match joined {
                    Ok((name, Ok(()))) => tracing::info!("{name} stopped"),
                    Ok((name, Err(e))) => break Some(anyhow::anyhow!("{name} failed: {e:#}")),
                    Err(e) => break Some(anyhow::anyhow!("a task panicked: {e}")),
                }
            }
        }
    };

    // Stop scraping, let the publisher and receiver drain, then stop the rest: all within
    // shutdown::BOUND of now.
    let deadlines = shutdown::Deadlines::from(tokio::time::Instant::now());
    ready.store(false, Ordering::Release);
    let running = shutdown::Running {
        scrapers_stop,
        poller: poller.take(),
        pipeline: pipeline_stop,
        tasks,
        events,
        events_task,
    };
    shutdown::stop(running, deadlines).await;
    tracing::info!("promrelay stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Reports a role's new pause state: gauges, a log line, a lifecycle event.
fn pause_changed(breaker: &Breaker, role: Role, paused: bool, events: &lifecycle::Events) {
    METRICS
        .paused_by_role
        .get_or_create(&RoleLabel { role: role.name() })
        .set(i64::from(paused));
    METRICS.paused.set(i64::from(breaker.any_paused()));
    tracing::info!(role = role.name(), paused, "pause state changed");
    let role = role.name();
    events.send(if paused {
        lifecycle::Event::Paused { role }
    } else {
        lifecycle::Event::Resumed { role }
    });
}

/// Runs every scrape through the filter chains, several at a time, and forwards what passes.
/// `on_error: fail` turns the scrape into a failed one: only its synthetic series, with `up 0`.
///
/// At shutdown it ends when its input closes (the scrapers stopped), after every scrape inside it
/// went on to the publisher, which keeps reading until then: nothing is dropped between stages.
/// Only a publisher gone at its deadline loses a scrape here, and that is logged.
async fn filter_stage(
    chains: Arc<Chains>,
    input: mpsc::Receiver<ScrapeBatch>,
    output: mpsc::Sender<ScrapeBatch>,
) {
    use futures::StreamExt as _;
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio_stream_from(input)
        .for_each_concurrent(parallel, |scrape| {
            let chains = chains.clone();
            let output = output.clone();
            async move {
                let job = scrape.meta.job.clone();
                let (outcome, down) = chains.apply_keeping_down(&job, scrape).await;
                let forward = match outcome {
                    FilterOutcome::Pass(scrape) => Some(scrape),
                    FilterOutcome::Dropped { .. } => None,
                    FilterOutcome::Failed { .. } => down,
                };
                if let Some(scrape) = forward {
                    if let Err(lost) = output.send(scrape).await {
                        tracing::warn!(job = %lost.0.meta.job, instance = %lost.0.meta.instance,
                            "shutdown: a filtered scrape is lost: the publisher stopped at its \
                             deadline");
                    }
                }
            }
        })
        .await;
}

fn tokio_stream_from(
    mut input: mpsc::Receiver<ScrapeBatch>,
) -> impl futures::Stream<Item = ScrapeBatch> {
    futures::stream::poll_fn(move |context| input.poll_recv(context))
}
