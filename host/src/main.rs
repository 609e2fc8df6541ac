//! The `promrelay` command line: `run`, `poller`, `receiver`, `check-config`, `filter …`.
//!
//! The original's command lines work too: `--config F` before or after the subcommand,
//! `--pid FILE` (written at start, removed at exit) and `--debug`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use promrelay::config::LogLevel;
use promrelay::daemon::{self, Mode};
use tokio_util::sync::CancellationToken;

/// Where the config is read from when no `--config` is given.
const DEFAULT_CONFIG: &str = "/etc/promrelay/promrelay.yaml";

#[derive(Parser)]
#[command(
    name = "promrelay",
    version,
    about = "Relays Prometheus scrapes across sites over NATS \
    JetStream, through WebAssembly filters"
)]
struct Cli {
    /// The YAML config file (also accepted after the command).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write the process ID to this file while running.
    #[arg(long, global = true)]
    pid: Option<PathBuf>,
    /// Log at debug level, whatever the config says.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the poller, the receiver or both, by which sections the config has.
    Run(ConfigArg),
    /// Run only the poller (scrape, filter, publish).
    Poller(ConfigArg),
    /// Run only the receiver (consume, push).
    Receiver(ConfigArg),
    /// Check the config: print every problem, exit non-zero if there is one.
    CheckConfig(ConfigArg),
    /// Pause the relay running with this config: its poller (or, with --role, its receiver or
    /// both), over its monitor port or NATS.
    Pause(Manage),
    /// Resume the relay running with this config (the same roles as pause).
    Resume(Manage),
    /// Show the identity and the pause state of each role of the relay running with this config.
    Info(Manage),
    /// Get a certificate from a Puppet CA into Puppet's ssl directory layout.
    Enroll(promrelay::enroll::EnrollArgs),
    /// Tools for filter authors: run, check, bench and create WebAssembly filters.
    #[command(subcommand)]
    Filter(promrelay::filter::cli::FilterCommand),
    /// Print a message body from the stream (read on standard input: zstd or not, a batch or
    /// text) as Prometheus text with its timestamps, staleness markers shown as comments; for
    /// `nats stream get ... --translate 'promrelay decode'`.
    Decode,
}

/// `--config F` after the command, as the original accepted it.
#[derive(clap::Args)]
struct ConfigArg {
    /// The YAML config file.
    #[arg(long = "config", value_name = "CONFIG")]
    config: Option<PathBuf>,
}

/// Options of the management commands.
#[derive(clap::Args)]
struct Manage {
    #[command(flatten)]
    config: ConfigArg,
    /// Act only if the relay has this identity (over NATS: the relay to address).
    #[arg(long)]
    identity: Option<String>,
    /// Send over NATS to management.brokers, signed with this nkey user seed file, instead of
    /// the local monitor port.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// What to pause or resume: poller, receiver or all. Default: the poller where one runs,
    /// else the receiver (a paused combined relay keeps pushing its own promrelay job).
    #[arg(long, value_parser = parse_role)]
    role: Option<promrelay::pause::Scope>,
    /// Basic auth user for a monitor port with basic_auth_users in its web_config_file.
    #[arg(long, value_name = "USER")]
    web_user: Option<String>,
    /// A file holding that user's password (one line); or set PROMRELAY_WEB_PASSWORD.
    #[arg(long, value_name = "FILE")]
    web_password_file: Option<PathBuf>,
}

/// The basic auth credentials of `--web-user` with `--web-password-file` or
/// `PROMRELAY_WEB_PASSWORD`.
fn web_credentials(manage: &Manage) -> anyhow::Result<Option<promrelay::web::LocalCredentials>> {
    let Some(user) = manage.web_user.clone() else {
        anyhow::ensure!(
            manage.web_password_file.is_none(),
            "--web-password-file needs --web-user"
        );
        return Ok(None);
    };
    let password = match &manage.web_password_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --web-password-file {}", path.display()))?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        None => std::env::var("PROMRELAY_WEB_PASSWORD").map_err(|_| {
            anyhow::anyhow!("--web-user needs --web-password-file or PROMRELAY_WEB_PASSWORD")
        })?,
    };
    Ok(Some(promrelay::web::LocalCredentials { user, password }))
}

fn parse_role(text: &str) -> Result<promrelay::pause::Scope, String> {
    promrelay::pause::Scope::parse(text)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("promrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<ExitCode> {
    promrelay::tls::install_crypto_provider();
    let default = PathBuf::from(DEFAULT_CONFIG);
    let pick = |arg: &ConfigArg| {
        arg.config
            .clone()
            .or_else(|| cli.config.clone())
            .unwrap_or_else(|| default.clone())
    };
    let (mode, config_path) = match &cli.command {
        Command::CheckConfig(arg) => return check_config(&pick(arg)),
        Command::Pause(manage) => return management(&pick(&manage.config), "pause", manage),
        Command::Resume(manage) => return management(&pick(&manage.config), "resume", manage),
        Command::Info(manage) => return management(&pick(&manage.config), "info", manage),
        Command::Run(arg) => (Mode::Auto, pick(arg)),
        Command::Poller(arg) => (Mode::Poller, pick(arg)),
        Command::Receiver(arg) => (Mode::Receiver, pick(arg)),
        Command::Filter(_) => (Mode::Auto, default.clone()),
        Command::Decode => {
            use std::io::{Read as _, Write as _};
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body)?;
            let text = promrelay::wire::body::to_text(&body)?;
            std::io::stdout().write_all(text.as_bytes())?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Enroll(args) => {
            let config = args.config.as_deref().or(cli.config.as_deref());
            let args = enroll_defaults(args, config)?;
            return promrelay::enroll::run(&args).map(|()| ExitCode::SUCCESS);
        }
    };
    if let Command::Filter(command) = cli.command {
        let level = if cli.debug {
            LogLevel::Debug
        } else {
            LogLevel::Warn
        };
        init_logging(level, None, None)?;
        promrelay::filter::cli::run(command, cli.config.clone())?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = daemon::load_config(&config_path)?;
    let level = if cli.debug {
        LogLevel::Debug
    } else {
        config.log.level
    };
    let management_log = config
        .management
        .as_ref()
        .and_then(|m| m.logfile.as_deref().map(|file| (file, m.loglevel)));
    init_logging(level, config.log.file.as_deref(), management_log)?;
    let _pid = cli.pid.map(PidFile::create).transpose()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(daemon::run(
        config_path,
        config,
        mode,
        CancellationToken::new(),
    ));
    // Dropping a runtime waits for its blocking threads without limit (a filter compiling, a
    // name lookup): the shutdown's bound leaves them this much.
    runtime.shutdown_timeout(daemon::EXIT_SHARE);
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `pause`, `resume`, `info`: ask the running relay over its monitor port, print its answer.
fn management(path: &Path, action: &str, manage: &Manage) -> anyhow::Result<ExitCode> {
    let config = daemon::load_config(path)?;
    let changes = action != "info";
    anyhow::ensure!(
        changes || manage.role.is_none(),
        "--role applies to pause and resume; info shows every role"
    );
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let identity = manage.identity.as_deref();
    // Over NATS with --seed; also, unsigned, when the local monitor port cannot serve the
    // request (no monitor_port, another site's identity, or a change without
    // management.token) but management.brokers is set.
    let management = config.management.as_ref();
    let brokers = management.is_some_and(|management| !management.brokers.is_empty());
    let no_token = management.is_none_or(|management| management.token.is_none());
    let elsewhere = identity.is_some_and(|wanted| wanted != config.identity);
    let over_nats = manage.seed.is_some()
        || (brokers && (config.monitor_port.is_none() || elsewhere || (changes && no_token)));
    let answer = if over_nats {
        runtime.block_on(promrelay::management::request(
            &config,
            action,
            identity,
            manage.seed.as_deref(),
            manage.role,
        ))?
    } else {
        let credentials = web_credentials(manage)?;
        runtime.block_on(promrelay::admin::request(
            &config,
            action,
            identity,
            manage.role,
            credentials.as_ref(),
        ))?
    };
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    match promrelay::config::load(path) {
        Ok(config) => {
            for problem in config.unsupported().iter().chain(config.warnings().iter()) {
                println!("warning: {problem}");
            }
            // The TLS files are read and checked as at start (missing, mismatched, expired).
            let tls_problems = tls_problems(&config);
            for problem in &tls_problems {
                println!("{problem}");
            }
            // The file_sd files are read as at start: a broken one is named with its line.
            let files = promrelay::discovery::check_files(&config);
            for warning in &files.warnings {
                println!("warning: {warning}");
            }
            for error in &files.errors {
                println!("{error}");
            }
            if !tls_problems.is_empty() || !files.errors.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
            // The monitor port's web config: keys, certificate, key, client CA, hashes.
            if let Some(web) = &config.web_config_file {
                if let Err(error) = promrelay::web::load(web) {
                    println!("{error:#}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            println!(
                "{}: ok (poller: {}, receiver: {}, {} jobs, {} targets)",
                path.display(),
                config.runs_poller(),
                config.runs_receiver(),
                config.jobs.len(),
                config.jobs.iter().map(|j| j.targets.len()).sum::<usize>()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `enroll` with `--config F`: a missing IDENTITY or `--dir` comes from F's first `tls` stanza
/// with `scheme: puppet` (top level, then the stream and management sections), so the files land
/// where the relay will look for them.
fn enroll_defaults(
    args: &promrelay::enroll::EnrollArgs,
    config: Option<&Path>,
) -> anyhow::Result<promrelay::enroll::EnrollArgs> {
    use promrelay::config::TlsSource;
    let mut args = args.clone();
    let Some(path) = config else {
        return Ok(args);
    };
    if args.identity.is_some() && args.ssl_dir.is_some() {
        return Ok(args);
    }
    let config = daemon::load_config(path)?;
    let stanzas = [
        config.tls.as_ref(),
        config.poller_stream.as_ref().and_then(|s| s.tls.as_ref()),
        config.receiver_stream.as_ref().and_then(|s| s.tls.as_ref()),
        config.management.as_ref().and_then(|m| m.tls.as_ref()),
    ];
    let puppet = stanzas
        .into_iter()
        .flatten()
        .find_map(|tls| match &tls.source {
            TlsSource::Puppet { ssl_dir } => Some((tls.identity.clone(), ssl_dir.clone())),
            _ => None,
        });
    if let Some((identity, ssl_dir)) = puppet {
        args.identity.get_or_insert(identity);
        args.ssl_dir.get_or_insert(ssl_dir);
    }
    Ok(args)
}

/// Problems of the TLS and credential files of every NATS connection and of the HTTP clients'
/// files, one line each.
fn tls_problems(config: &promrelay::config::Config) -> Vec<String> {
    let sections = [
        (
            "poller_stream",
            config.poller_stream.as_ref().and_then(|s| s.tls.as_ref()),
        ),
        (
            "receiver_stream",
            config.receiver_stream.as_ref().and_then(|s| s.tls.as_ref()),
        ),
        (
            "management",
            config.management.as_ref().and_then(|m| m.tls.as_ref()),
        ),
    ];
    let mut problems = Vec::new();
    for (section, tls) in sections {
        if let Some(tls) = tls {
            match promrelay::tls::client_config(tls) {
                Ok(loaded) => {
                    if let Some(warning) = loaded.warning {
                        println!("warning: {section}.tls: {warning}");
                    }
                }
                Err(error) => problems.push(format!("{section}.tls: {error}")),
            }
        }
    }
    // The NATS credential files (an nkey seed, a creds file): readable now.
    for (section, stream) in [
        ("poller_stream", config.poller_stream.as_ref()),
        ("receiver_stream", config.receiver_stream.as_ref()),
    ] {
        use promrelay::config::NatsAuth;
        let file = match stream.map(|s| &s.auth) {
            Some(NatsAuth::NkeySeedFile(path)) => Some(("nkey", path)),
            Some(NatsAuth::CredsFile(path)) => Some(("creds", path)),
            _ => None,
        };
        if let Some((key, path)) = file {
            if let Err(error) = std::fs::read(path) {
                problems.push(format!(
                    "{section}.{key}: cannot read {}: {error}",
                    path.display()
                ));
            }
        }
    }
    // The HTTP clients' files (CA, client certificate and key, password and token files).
    let mut http = Vec::new();
    for job in &config.jobs {
        http.push((format!("jobs.{}", job.name), &job.http));
    }
    if let Some(push_gateway) = &config.push_gateway {
        http.push(("push_gateway".to_owned(), &push_gateway.http));
    }
    for (index, remote) in config.remote_write.iter().enumerate() {
        http.push((format!("remote_write[{index}]"), &remote.http));
    }
    for (section, settings) in http {
        if !settings.is_default() {
            if let Err(error) = promrelay::scrape::http_client(settings) {
                problems.push(format!("{section}: {error:#}"));
            }
        }
    }
    problems
}

/// Logs to stderr, or appended to `file`; `RUST_LOG` overrides the level. With `management`
/// (`management.logfile` and `loglevel`), what the management interface does (requests, who
/// asked, refusals, lifecycle events) is also appended to that file at that level, as the
/// original's management agent had its own log.
fn init_logging(
    level: LogLevel,
    file: Option<&Path>,
    management: Option<(&Path, LogLevel)>,
) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{},cranelift_codegen=warn,wasmtime=warn,async_nats=warn",
            level.as_str()
        ))
    });
    let main = match file {
        Some(path) => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(append(path)?))
            .with_filter(filter)
            .boxed(),
        None => {
            use std::io::IsTerminal as _;
            let ansi = std::io::stderr().is_terminal();
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .boxed()
        }
    };
    let management = match management {
        Some((path, level)) => {
            let level: tracing::Level = level
                .as_str()
                .parse()
                .expect("every LogLevel names a tracing level");
            let targets = tracing_subscriber::filter::Targets::new()
                .with_target("promrelay::management", level)
                .with_target("promrelay::admin", level)
                .with_target("promrelay::lifecycle", level);
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(append(path)?))
                    .with_filter(targets)
                    .boxed(),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(main)
        .with(management)
        .init();
    Ok(())
}

fn append(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the log file {}", path.display()))
}

/// A PID file, removed when dropped.
struct PidFile(PathBuf);

impl PidFile {
    fn create(path: PathBuf) -> anyhow::Result<PidFile> {
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the PID file {}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
