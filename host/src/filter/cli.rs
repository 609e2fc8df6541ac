//! `promrelay filter run|check|new|bench`: tools for filter authors.
//!
//! Every command runs the module exactly as the relay does (same engine, same checks, same
//! limits), so a filter that passes `filter check` loads in a live relay. Blocking throughout:
//! call [`run`] from `main`, not from inside an async task.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::chain::{run_stages, FilterOutcome};
use super::engine::FilterEngine;
use super::stage::{Stage, StageStats};
use crate::config::{FilterConfig, FilterLimits, OnError};
use crate::model::{Scrape, ScrapeMeta};

/// `promrelay filter ...`
#[derive(Debug, clap::Subcommand)]
pub enum FilterCommand {
    /// Runs a filter on one scrape and prints the result as Prometheus text.
    Run {
        /// The filter module (.wasm).
        #[arg(long)]
        module: PathBuf,
        /// The filter's own config (YAML), as under `config:` in the relay's configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A file in the Prometheus text format, `-` for stdin, or an http(s) URL to scrape.
        #[arg(long, default_value = "-")]
        input: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Loads a filter, checks its imports, exports and ABI version, runs its init; reports.
    Check {
        #[arg(long)]
        module: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Writes a new filter crate that builds and passes its own test as it is.
    New {
        /// The filter's name (letters, digits, `-`, `_`); the crate is `filter-NAME`.
        name: String,
        /// Where to create the crate directory NAME.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of the promrelay-sdk crate the new filter depends on.
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk"))]
        sdk: PathBuf,
    },
    /// Times a filter on one scrape: time per call and series per second.
    Bench {
        #[arg(long)]
        module: PathBuf,
        /// A file, `-` or a URL, as for `run`.
        #[arg(long)]
        input: String,
        #[arg(long)]
        config: Option<PathBuf>,
        /// How long to keep calling.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

/// Per-call limits, as `limits:` in the relay's configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Time limit of one call.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub time_limit: Duration,
    /// Memory limit of one instance, in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory_limit_mib: u64,
}

/// Runs one `promrelay filter` command.
pub fn run(command: FilterCommand) -> anyhow::Result<()> {
    match command {
        FilterCommand::Run {
            module,
            config,
            input,
            limits,
        } => {
            let stage = load(&module, config.as_deref(), &limits)?;
            let scrape = read_scrape(&input)?;
            let scrape = apply(&stage, scrape)?;
            let mut out = Vec::new();
            crate::exposition::render(
                &scrape.families,
                &crate::exposition::RenderOptions::default(),
                &mut out,
            );
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
        FilterCommand::New { name, dir, sdk } => new_filter(&name, &dir, &sdk),
        FilterCommand::Bench {
            module,
            input,
            config,
            duration,
            limits,
        } => {
            let stage = load(&module, config.as_deref(), &limits)?;
            let scrape = read_scrape(&input)?;
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
        limits: FilterLimits {
            time: limits.time_limit,
            memory: limits.memory_limit_mib.saturating_mul(1 << 20),
        },
        config: read_config(config)?,
    };
    let engine = FilterEngine::shared();
    let compiled = engine.load_file(module)?;
    let stage = Stage::new(filter, compiled, Arc::new(StageStats::default()))
        .with_context(|| format!("loading filter {}", module.display()))?;
    Ok(Arc::new(stage))
}

fn read_scrape(input: &str) -> anyhow::Result<Scrape> {
    let bytes = if input == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the scrape from stdin")?;
        bytes
    } else if input.starts_with("http://") || input.starts_with("https://") {
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
    Ok(Scrape {
        meta: ScrapeMeta::default(),
        families,
    })
}

/// Scrapes `url` once, on a thread with its own runtime (the caller may already be in one).
fn fetch(url: &str) -> anyhow::Result<Vec<u8>> {
    let url = url.to_owned();
    std::thread::spawn(move || -> anyhow::Result<Vec<u8>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
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
    let engine = FilterEngine::shared();
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

const TEMPLATE_CARGO: &str = include_str!("template/Cargo.toml.in");
const TEMPLATE_LIB: &str = include_str!("template/lib.rs.in");
const TEMPLATE_CONFIG: &str = include_str!("template/config.yaml.in");
const TEMPLATE_README: &str = include_str!("template/README.md.in");

fn new_filter(name: &str, dir: &Path, sdk: &Path) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_alphabetic());
    if !valid {
        bail!("filter name {name:?}: use letters, digits, '-' and '_', starting with a letter");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            root.display()
        );
    }
    let sdk = std::fs::canonicalize(sdk).with_context(|| {
        format!(
            "finding the promrelay-sdk crate at {} (pass --sdk PATH)",
            sdk.display()
        )
    })?;
    let ident = name.replace('-', "_");
    let type_name: String = name
        .split(['-', '_'])
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let fill = |template: &str| {
        template
            .replace("{{Type}}", &type_name)
            .replace("{{name}}", name)
            .replace("{{ident}}", &ident)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("creating {}", root.display()))?;
    for (path, template) in [
        ("Cargo.toml", TEMPLATE_CARGO),
        ("src/lib.rs", TEMPLATE_LIB),
        ("config.yaml", TEMPLATE_CONFIG),
        ("README.md", TEMPLATE_README),
    ] {
        let target = root.join(path);
        std::fs::write(&target, fill(template))
            .with_context(|| format!("writing {}", target.display()))?;
    }
    println!(
        "created {} (crate filter-{name}); next: cd {} && cargo test",
        root.display(),
        root.display()
    );
    Ok(())
}
