//! `promrelay filter run|check|new|bench`: tools for filter authors.
//!
//! Every command runs the module exactly as the relay does (same engine, same checks, the same
//! default limits — the config's constants — and the target labels `job`/`instance` added
//! before the filter), so a filter that passes `filter run` loads and keeps its time in a live
//! relay. `filter new` lives in `scaffold`. Blocking throughout:
//! call [`run`] from `main`, not from inside an async task.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::chain::{run_stages, FilterOutcome};
use super::engine::FilterEngine;
use super::stage::{Stage, StageStats};
use crate::config::{
    FilterConfig, FilterLimits, OnError, Target, DEFAULT_FILTER_MEMORY, DEFAULT_FILTER_TIME,
};
use crate::lifecycle::Events;
use crate::model::{Scrape, ScrapeMeta};

/// `promrelay filter ...`
#[derive(Debug, clap::Subcommand)]
pub enum FilterCommand {
    /// Run a filter (or a chain) on one scrape as the relay would and print the result as
    /// Prometheus text, or with --explain what each filter did to the series a selector picks
    ///
    /// The scrape gets the target labels `job` and `instance` first, as in the relay, and the
    /// filter runs under the relay's default limits unless --time-limit / --memory-limit-mib
    /// say otherwise (the limits are printed on stderr). --module may be given several times
    /// (a chain, in order); --relay-config FILE (or `promrelay --config FILE filter run`) runs
    /// the chain of the relay config's job --job instead: its global filters, then the job's,
    /// with their settings.
    Run {
        /// The filter module (.wasm, or .wat text); several times for a chain, in order.
        #[arg(long)]
        module: Vec<PathBuf>,
        /// The filter's own config (YAML), as under `config:` in the relay's configuration;
        /// with several --module, once per module in the same order.
        #[arg(long)]
        config: Vec<PathBuf>,
        /// A relay config file: run the chain of its job --job (its filters, settings and
        /// label_limit) instead of --module.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["module", "config"])]
        relay_config: Option<PathBuf>,
        /// A file in the Prometheus text format, `-` for stdin, or an http(s) URL to scrape.
        #[arg(long, default_value = "-")]
        input: String,
        /// Explain instead of printing the result: for the series SELECTOR matches before the
        /// chain (`name{label="v",…}` with =, !=, =~, !~ as in PromQL; empty = every series),
        /// each filter's outcome (unchanged, rewritten with the labels added, removed and
        /// changed, or dropped) and, for filters that offer a trace (the shipped relabel),
        /// each rule's step.
        #[arg(long, value_name = "SELECTOR", num_args = 0..=1, default_missing_value = "")]
        explain: Option<String>,
        /// How many matching series --explain follows at most.
        #[arg(long, value_name = "N", default_value_t = super::explain::DEFAULT_SERIES_LIMIT)]
        explain_limit: usize,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Load a filter as the relay would and print what was checked, init included
    ///
    /// Prints the module's imports and exports, the ABI version check, the limits and the
    /// result of its init with the given config; exits non-zero when the relay would refuse it.
    Check {
        /// The filter module (.wasm, or .wat text).
        #[arg(long)]
        module: PathBuf,
        /// The filter's own config (YAML), as under `config:` in the relay's configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Create a Rust filter crate that builds and passes its own test as it is
    ///
    /// The crate depends on the promrelay-sdk sources by path: --sdk, else the SDK shipped
    /// beside this binary (the Debian package's /usr/share/promrelay/guest-sdk, or the
    /// guest-sdk directory of the source checkout the binary was built in).
    New {
        /// The filter's name (letters, digits, `-`, `_`); the crate is `filter-NAME`.
        name: String,
        /// Where to create the crate directory NAME.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The promrelay-sdk crate (a guest-sdk directory) the new filter depends on [default:
        /// the one shipped beside this binary].
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
    /// Time a filter on one scrape: time per call and series per second
    Bench {
        /// The filter module (.wasm, or .wat text).
        #[arg(long)]
        module: PathBuf,
        /// A file, `-` or a URL, as for `run`.
        #[arg(long)]
        input: String,
        /// The filter's own config (YAML), as under `config:` in the relay's configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// How long to keep calling.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

/// Per-call limits, as `limits:` of a filter in the relay's configuration, with its defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Time limit of one call (the relay's `limits.time`).
    #[arg(long, value_name = "DURATION",
          default_value_t = humantime::Duration::from(DEFAULT_FILTER_TIME))]
    pub time_limit: humantime::Duration,
    /// Memory limit of one instance in MiB (the relay's `limits.memory`).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_FILTER_MEMORY >> 20,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub memory_limit_mib: u64,
}

impl LimitArgs {
    fn to_config(&self) -> FilterLimits {
        FilterLimits {
            time: *self.time_limit,
            memory: self.memory_limit_mib << 20,
        }
    }

    /// One line saying which limits apply and whether they are the relay's defaults.
    fn describe(&self) -> String {
        let limits = self.to_config();
        let defaults = FilterLimits::default();
        let origin = if limits == defaults {
            "the relay's defaults; change with --time-limit and --memory-limit-mib"
        } else {
            "not the relay's defaults: set the same limits: in the relay's config"
        };
        format!(
            "time {} per call, memory {} MiB per instance ({origin})",
            self.time_limit, self.memory_limit_mib
        )
    }
}

/// The target labels the relay adds to every series before the chain (ABI.md §4).
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The `job` label the series get before the filter runs.
    #[arg(long, default_value = "filter-run")]
    pub job: String,
    /// The `instance` label the series get before the filter runs [default: host:port of an
    /// http(s) --input, else its file name, `stdin` for -].
    #[arg(long)]
    pub instance: Option<String>,
}

/// Runs one `promrelay filter` command; `global_config` is `promrelay --config FILE` given
/// before the command (for `filter run`, a relay config whose chain runs).
pub fn run(command: FilterCommand, global_config: Option<PathBuf>) -> anyhow::Result<()> {
    match command {
        FilterCommand::Run {
            module,
            config,
            relay_config,
            input,
            explain,
            explain_limit,
            target,
            limits,
        } => {
            // Checked before the chain compiles (seconds): a typo fails at once.
            let selector = explain
                .as_deref()
                .map(super::explain::Selector::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let relay_config = relay_config.or(global_config);
            let (stages, label_limit) = match &relay_config {
                Some(path) => relay_chain(path, &target.job)?,
                None => {
                    if module.is_empty() {
                        bail!("filter run needs --module (once per filter of a chain) or --relay-config FILE with --job JOB");
                    }
                    if !config.is_empty() && config.len() != module.len() {
                        bail!(
                            "{} --config for {} --module: give one filter config per module, in the same order, or none",
                            config.len(),
                            module.len()
                        );
                    }
                    let stages = module
                        .iter()
                        .enumerate()
                        .map(|(i, m)| load(m, config.get(i).map(PathBuf::as_path), &limits))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    eprintln!("limits: {}", limits.describe());
                    (stages, crate::model::DEFAULT_LABEL_LIMIT)
                }
            };
            let scrape = read_scrape(&input, &target)?;
            let out = match selector {
                Some(selector) => {
                    let report = super::explain::explain(
                        &stages,
                        scrape,
                        &selector,
                        explain_limit,
                        label_limit,
                    );
                    super::explain::render_text(&report).into_bytes()
                }
                None => {
                    let scrape = apply_chain(&stages, scrape, label_limit)?;
                    let mut out = Vec::new();
                    crate::exposition::render(
                        &scrape.families,
                        &crate::exposition::RenderOptions::default(),
                        &mut out,
                    );
                    out
                }
            };
            std::io::stdout()
                .lock()
                .write_all(&out)
                .context("writing to stdout")?;
            Ok(())
        }
        FilterCommand::Check {
            module,
            config,
            limits,
        } => check(&module, config.as_deref(), &limits),
        FilterCommand::New { name, dir, sdk } => {
            super::scaffold::new_filter(&name, &dir, sdk.as_deref())
        }
        FilterCommand::Bench {
            module,
            input,
            config,
            duration,
            target,
            limits,
        } => {
            let stage = load(&module, config.as_deref(), &limits)?;
            println!("limits:       {}", limits.describe());
            let scrape = read_scrape(&input, &target)?;
            bench(&stage, &scrape, duration)
        }
    }
}

/// Reads a filter's own config file (YAML) into the JSON value its `init` receives.
fn read_config(path: Option<&Path>) -> anyhow::Result<serde_json::Value> {
    let Some(path) = path else {
        return Ok(serde_json::json!({}));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading filter config {}", path.display()))?;
    let value: serde_json::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("parsing filter config {} as YAML", path.display()))?;
    Ok(if value.is_null() {
        serde_json::json!({})
    } else {
        value
    })
}

fn load(module: &Path, config: Option<&Path>, limits: &LimitArgs) -> anyhow::Result<Arc<Stage>> {
    let filter = FilterConfig {
        name: module
            .file_stem()
            .map_or_else(|| "filter".to_owned(), |s| s.to_string_lossy().into_owned()),
        module: module.to_path_buf(),
        on_error: OnError::Fail,
        limits: limits.to_config(),
        config: read_config(config)?,
    };
    let engine = engine()?;
    let compiled = engine.load_file(module)?;
    let stage = Stage::new(
        filter,
        compiled,
        Arc::new(StageStats::default()),
        Events::none(),
    )
    .with_context(|| format!("loading filter {}", module.display()))?;
    Ok(Arc::new(stage))
}

/// The command's own filter engine (a CLI command reports no lifecycle events: its stages get
/// [`Events::none`]).
fn engine() -> anyhow::Result<FilterEngine> {
    FilterEngine::new().context("creating the filter engine")
}

fn is_url(input: &str) -> bool {
    input.starts_with("http://") || input.starts_with("https://")
}

/// The `instance` of `input` when `--instance` is not given: a URL's `host:port` (as the
/// relay names a target without a name), a file's name, `stdin` for `-`.
fn default_instance(input: &str) -> String {
    if input == "-" {
        return "stdin".to_owned();
    }
    if is_url(input) {
        if let Some(instance) = url::Url::parse(input)
            .ok()
            .and_then(|url| Target::default_instance(&url))
        {
            return instance;
        }
    }
    Path::new(input)
        .file_name()
        .map_or_else(|| input.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Reads and parses the scrape, then adds the target labels as the relay does before the chain.
fn read_scrape(input: &str, target: &TargetArgs) -> anyhow::Result<Scrape> {
    let bytes = if input == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the scrape from stdin")?;
        bytes
    } else if is_url(input) {
        fetch(input)?
    } else {
        std::fs::read(input).with_context(|| format!("reading the scrape from {input}"))?
    };
    // The relay's default label_limit, counted as the poller counts it, so that what parses here
    // also passes the output check of a filter that hands it back.
    let limit = crate::exposition::LabelLimit {
        limit: crate::model::DEFAULT_LABEL_LIMIT,
        added: &crate::model::TARGET_LABELS,
    };
    let families = crate::exposition::parse_with_label_limit(&bytes, limit)
        .with_context(|| format!("parsing the scrape from {input}"))?;
    let instance = target
        .instance
        .clone()
        .unwrap_or_else(|| default_instance(input));
    let mut scrape = Scrape {
        meta: ScrapeMeta {
            job: target.job.clone(),
            instance: instance.clone(),
            ..ScrapeMeta::default()
        },
        families,
    };
    scrape.add_target_labels(&target.job, &instance);
    Ok(scrape)
}

/// Scrapes `url` once, on a thread with its own runtime (the caller may already be in one).
fn fetch(url: &str) -> anyhow::Result<Vec<u8>> {
    let url = url.to_owned();
    std::thread::spawn(move || -> anyhow::Result<Vec<u8>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            crate::tls::install_crypto_provider();
            let response = reqwest::Client::new()
                .get(&url)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .with_context(|| format!("scraping {url}"))?
                .error_for_status()
                .with_context(|| format!("scraping {url}"))?;
            Ok(response
                .bytes()
                .await
                .with_context(|| format!("reading {url}"))?
                .to_vec())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the scrape thread panicked"))?
}

/// The chain a relay config runs for `job` (global filters, then the job's), each stage its own
/// (never a running relay's), and the job's `label_limit`.
fn relay_chain(path: &Path, job: &str) -> anyhow::Result<(Vec<Arc<Stage>>, usize)> {
    let config = crate::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let own = config.jobs.iter().find(|j| j.name == job);
    let Some(own) = own else {
        let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        bail!(
            "{}: no job {job:?} (--job names the job whose chain runs; the config has: {})",
            path.display(),
            if names.is_empty() {
                "no jobs".to_owned()
            } else {
                names.join(", ")
            }
        );
    };
    let engine = engine()?;
    let stages = config
        .filters
        .iter()
        .chain(own.filters.iter())
        .map(|filter| -> anyhow::Result<Arc<Stage>> {
            let compiled = engine.load_file(&filter.module)?;
            let stage = Stage::new(
                filter.clone(),
                compiled,
                Arc::new(StageStats::default()),
                Events::none(),
            )
            .with_context(|| format!("{}: loading filter {}", path.display(), filter.name))?;
            Ok(Arc::new(stage))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if stages.is_empty() {
        eprintln!(
            "{}: job {job} has no filters (global or its own): the scrape passes unchanged",
            path.display()
        );
    }
    Ok((stages, own.label_limit))
}

fn apply_chain(
    stages: &[Arc<Stage>],
    scrape: Scrape,
    label_limit: usize,
) -> anyhow::Result<Scrape> {
    match super::chain::run_stages_with_label_limit(stages.iter(), scrape, label_limit) {
        FilterOutcome::Pass(scrape) => Ok(scrape),
        FilterOutcome::Dropped { filter, error } | FilterOutcome::Failed { filter, error } => {
            bail!("filter {filter} failed ({}): {error}", error.kind())
        }
    }
}

fn apply(stage: &Arc<Stage>, scrape: Scrape) -> anyhow::Result<Scrape> {
    match run_stages(std::iter::once(stage), scrape) {
        FilterOutcome::Pass(scrape) => Ok(scrape),
        FilterOutcome::Dropped { filter, error } | FilterOutcome::Failed { filter, error } => {
            bail!("filter {filter} failed ({}): {error}", error.kind())
        }
    }
}

fn check(module: &Path, config: Option<&Path>, limits: &LimitArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    println!("module:   {} ({} bytes)", module.display(), bytes.len());
    let engine = engine()?;
    let compiled = match engine.load(&bytes) {
        Ok(compiled) => compiled,
        Err(e) => {
            println!("result:   REFUSED");
            bail!("{}: {e}", module.display());
        }
    };
    println!("sha256:   {}", compiled.hash);
    let wasm = compiled.pre.module();
    let imports: Vec<String> = wasm
        .imports()
        .map(|i| format!("{}.{}", i.module(), i.name()))
        .collect();
    println!(
        "imports:  {}",
        if imports.is_empty() {
            "(none)".to_owned()
        } else {
            imports.join(", ")
        }
    );
    let exports: Vec<&str> = wasm.exports().map(|e| e.name()).collect();
    println!("exports:  {}", exports.join(", "));
    println!(
        "abi:      exports and signatures match ABI v{}",
        promrelay_abi::ABI_VERSION
    );
    println!("limits:   {}", limits.describe());
    let started = Instant::now();
    match load(module, config, limits) {
        Ok(_) => {
            println!(
                "init:     ok in {:.1} ms (ABI version 1)",
                started.elapsed().as_secs_f64() * 1000.0
            );
            println!("result:   OK");
            Ok(())
        }
        Err(e) => {
            println!("init:     FAILED");
            println!("result:   REFUSED");
            Err(e)
        }
    }
}

fn bench(stage: &Arc<Stage>, scrape: &Scrape, duration: Duration) -> anyhow::Result<()> {
    let series = scrape.sample_count();
    // One warm-up call also proves the filter works on this input.
    apply(stage, scrape.clone())?;
    let mut times = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline || times.len() < 5 {
        let input = scrape.clone();
        let started = Instant::now();
        apply(stage, input)?;
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let best = times[0];
    println!("input:        {series} series");
    println!("calls:        {}", times.len());
    println!(
        "median:       {:.3} ms per call (encode + call + decode)",
        median.as_secs_f64() * 1000.0
    );
    println!("best:         {:.3} ms", best.as_secs_f64() * 1000.0);
    println!(
        "throughput:   {:.0} series/s (median)",
        series as f64 / median.as_secs_f64().max(1e-9)
    );
    Ok(())
}
