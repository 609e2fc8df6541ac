//! The `promrelay` binary under test, run as a child process with its config in a temp file.
//!
//! [`relay_binary`] builds the binary once per test process (`cargo build -p promrelay --bin
//! promrelay`, debug profile, honouring `CARGO_TARGET_DIR`) unless `PROMRELAY_BIN` names one.
//! [`RelayConfig`] writes configs in the original tool's key layout, which promrelay must accept.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::process::ServerProcess;
use crate::{http, poll_until, poll_until_ok};

/// How long the relay may take to exit after SIGTERM (it flushes in-flight work within a bound).
pub const EXIT_GRACE: Duration = Duration::from_secs(30);

/// The workspace root (the directory with the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives inside the workspace root")
        .to_path_buf()
}

/// Path of the `promrelay` binary to test: `$PROMRELAY_BIN`, or the debug build, built once per
/// process.
pub fn relay_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("PROMRELAY_BIN") {
                return PathBuf::from(path);
            }
            let root = workspace_root();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let output = Command::new(&cargo)
                .args(["build", "--quiet", "-p", "promrelay", "--bin", "promrelay"])
                .current_dir(&root)
                .output()
                .unwrap_or_else(|error| panic!("run {cargo} build -p promrelay: {error}"));
            if !output.status.success() {
                panic!(
                    "cargo build -p promrelay --bin promrelay failed ({}):\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let target = match std::env::var_os("CARGO_TARGET_DIR") {
                Some(dir) => root.join(dir),
                None => root.join("target"),
            };
            target.join("debug").join("promrelay")
        })
        .clone()
}

/// A config in the original's layout. Every field maps to one key; `None` leaves the key out.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub identity: Option<String>,
    pub scrape_interval: String,
    pub max_age: Option<String>,
    pub monitor_port: Option<u16>,
    /// `poller_stream`: (nats urls, stream name, topic).
    pub poller_stream: Option<StreamSection>,
    /// `receiver_stream`, with `client_id`.
    pub receiver_stream: Option<StreamSection>,
    /// `push_gateway.url`.
    pub push_gateway: Option<String>,
    pub publisher_label: bool,
    /// `jobs`, in order.
    pub jobs: Vec<JobSpec>,
    /// Appended verbatim at the top level (new keys, `filters:`, `tls:` ...).
    pub extra: String,
}

/// A job's targets: `(name, url)`; a `None` name leaves the key out (instance = host:port).
pub type Targets = Vec<(Option<String>, String)>;

/// One entry of `jobs`.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub name: String,
    /// Raw YAML lines placed under the job, unindented (e.g. `"scrape_interval: 10s\n"`).
    pub settings: String,
    pub targets: Targets,
}

/// One `*_stream` section.
#[derive(Debug, Clone)]
pub struct StreamSection {
    pub urls: String,
    pub cluster_id: String,
    pub topic: String,
    /// Only written for `receiver_stream`.
    pub client_id: String,
}

/// A stream name no other test in this machine's recent past used: JetStream state outlives a
/// test when nats-server is shared, and R3 streams must never be re-created under one name.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

impl RelayConfig {
    /// Poller and receiver both, through `nats_url`, pushing to `pushgateway_url` with the publisher
    /// label, identity `site1`, 1 s scrapes, no jobs yet.
    pub fn pipeline(nats_url: &str, pushgateway_url: &str) -> RelayConfig {
        let stream = unique_name("relay");
        RelayConfig {
            identity: Some("site1".into()),
            scrape_interval: "1s".into(),
            max_age: Some("80".into()),
            monitor_port: None,
            poller_stream: Some(StreamSection {
                urls: nats_url.into(),
                cluster_id: stream.clone(),
                topic: "prometheus".into(),
                client_id: String::new(),
            }),
            receiver_stream: Some(StreamSection {
                urls: nats_url.into(),
                cluster_id: stream,
                topic: "prometheus".into(),
                client_id: unique_name("receiver"),
            }),
            push_gateway: Some(pushgateway_url.into()),
            publisher_label: true,
            jobs: Vec::new(),
            extra: String::new(),
        }
    }

    /// Only a poller (no receiver, no Pushgateway), publishing through `nats_url`.
    pub fn poller_only(nats_url: &str) -> RelayConfig {
        let mut config = RelayConfig::pipeline(nats_url, "http://127.0.0.1:1");
        config.receiver_stream = None;
        config.push_gateway = None;
        config
    }

    /// The poller's stream name (`poller_stream.cluster_id`).
    pub fn poller_stream_name(&self) -> String {
        self.poller_stream
            .as_ref()
            .expect("the config has a poller_stream")
            .cluster_id
            .clone()
    }

    /// Adds a job with named targets.
    pub fn job(self, name: &str, targets: &[(&str, &str)]) -> RelayConfig {
        self.job_with(name, "", targets)
    }

    /// Adds a job with named targets and per-job settings (raw YAML lines, unindented, e.g.
    /// `"scrape_interval: 10s\nscrape_timeout: 10s\n"`).
    pub fn job_with(mut self, name: &str, settings: &str, targets: &[(&str, &str)]) -> RelayConfig {
        let targets = targets
            .iter()
            .map(|(n, u)| (Some(n.to_string()), u.to_string()))
            .collect();
        self.jobs.push(JobSpec {
            name: name.to_string(),
            settings: settings.to_string(),
            targets,
        });
        self
    }

    /// Sets `monitor_port`.
    pub fn monitor_port(mut self, port: u16) -> RelayConfig {
        self.monitor_port = Some(port);
        self
    }

    /// Appends raw YAML at the top level.
    pub fn extra(mut self, yaml: &str) -> RelayConfig {
        self.extra.push_str(yaml);
        if !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// The YAML text.
    pub fn to_yaml(&self) -> String {
        let quote = |s: &str| serde_json::to_string(s).expect("strings serialise to JSON");
        let mut yaml = String::from("---\n");
        if let Some(identity) = &self.identity {
            yaml += &format!("identity: {}\n", quote(identity));
        }
        yaml += &format!("scrape_interval: {}\n", self.scrape_interval);
        if let Some(max_age) = &self.max_age {
            yaml += &format!("max_age: {max_age}\n");
        }
        if let Some(port) = self.monitor_port {
            yaml += &format!("monitor_port: {port}\nmonitor_address: 127.0.0.1\n");
        }
        if let Some(stream) = &self.poller_stream {
            yaml += &format!(
                "poller_stream:\n  cluster_id: {}\n  urls: {}\n  topic: {}\n",
                quote(&stream.cluster_id),
                quote(&stream.urls),
                quote(&stream.topic)
            );
        }
        if let Some(stream) = &self.receiver_stream {
            yaml += &format!(
                "receiver_stream:\n  client_id: {}\n  cluster_id: {}\n  urls: {}\n  topic: {}\n",
                quote(&stream.client_id),
                quote(&stream.cluster_id),
                quote(&stream.urls),
                quote(&stream.topic)
            );
        }
        if let Some(url) = &self.push_gateway {
            yaml += &format!(
                "push_gateway:\n  url: {}\n  publisher_label: {}\n",
                quote(url),
                self.publisher_label
            );
        }
        if !self.jobs.is_empty() {
            yaml += "jobs:\n";
            for job in &self.jobs {
                yaml += &format!("  {}:\n", quote(&job.name));
                for line in job.settings.lines() {
                    yaml += &format!("    {line}\n");
                }
                yaml += "    targets:\n";
                for (name, url) in &job.targets {
                    match name {
                        Some(name) => {
                            yaml += &format!(
                                "      - name: {}\n        url: {}\n",
                                quote(name),
                                quote(url)
                            )
                        }
                        None => yaml += &format!("      - url: {}\n", quote(url)),
                    }
                }
            }
        }
        yaml += &self.extra;
        yaml
    }
}

/// A running `promrelay`; killed on drop (its log's tail printed if the test panicked).
#[derive(Debug)]
pub struct Relay {
    process: ServerProcess,
    config_path: PathBuf,
    monitor_port: Option<u16>,
    dir: TempDir,
}

impl Relay {
    /// `promrelay run --config FILE` with `config_yaml` in FILE.
    pub fn start(config_yaml: &str) -> Relay {
        Relay::start_command(&["run"], config_yaml)
    }

    /// `promrelay run` with a [`RelayConfig`].
    pub fn start_config(config: &RelayConfig) -> Relay {
        Relay::start(&config.to_yaml())
    }

    /// `promrelay <args> --config FILE` (e.g. `["poller"]`, `["receiver"]`), `RUST_LOG` from
    /// `PROMRELAY_TEST_LOG` or `debug`. Does not wait for anything: see
    /// [`wait_healthy`](Self::wait_healthy).
    pub fn start_command(args: &[&str], config_yaml: &str) -> Relay {
        let binary = relay_binary();
        let dir = tempfile::Builder::new()
            .prefix("promrelay-")
            .tempdir()
            .expect("create a temp dir for promrelay");
        let config_path = dir.path().join("promrelay.yaml");
        std::fs::write(&config_path, config_yaml).expect("write the promrelay config");
        let mut all_args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all_args.push("--config".into());
        all_args.push(config_path.display().to_string());
        let log_level = std::env::var("PROMRELAY_TEST_LOG").unwrap_or_else(|_| "debug".into());
        let envs = [("RUST_LOG".to_string(), log_level)];
        let process = ServerProcess::spawn(
            "promrelay",
            &binary,
            &all_args,
            &envs,
            dir.path().join("promrelay.log"),
        )
        .expect("start promrelay");
        Relay {
            process,
            config_path,
            monitor_port: monitor_port_of(config_yaml),
            dir,
        }
    }

    /// The temp directory holding config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file promrelay was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Replaces the config file's content (then [`sighup`](Self::sighup) to apply it).
    pub fn rewrite_config(&self, config_yaml: &str) {
        std::fs::write(&self.config_path, config_yaml).expect("rewrite the promrelay config");
    }

    /// The PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The log (stdout and stderr) so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `http://127.0.0.1:MONITOR_PORT` (panics when the config had no `monitor_port`).
    pub fn monitor_url(&self) -> String {
        let port = self
            .monitor_port
            .expect("the relay config sets monitor_port");
        format!("http://127.0.0.1:{port}")
    }

    /// Waits until `GET /healthz` on the monitor port answers 200; panics with the log if the relay
    /// exits first.
    pub fn wait_healthy(&mut self) {
        let url = format!("{}/healthz", self.monitor_url());
        let process = &mut self.process;
        poll_until_ok(
            Duration::from_secs(30),
            "promrelay's /healthz to answer 200",
            || {
                process.ensure_running()?;
                http::get_ok(&url)
            },
        );
    }

    /// The relay's own `/metrics` text.
    pub fn metrics_text(&self) -> anyhow::Result<String> {
        http::get_ok(&format!("{}/metrics", self.monitor_url()))
    }

    /// Fails with the log's tail if the relay has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.process.ensure_running()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        poll_until(
            timeout,
            &format!("promrelay's log to contain {needle:?}"),
            || self.log().contains(needle).then_some(()),
        );
    }

    /// Sends SIGHUP (re-read the config).
    pub fn sighup(&self) {
        self.process
            .signal(Signal::SIGHUP)
            .expect("send SIGHUP to promrelay");
    }

    /// Sends SIGTERM without waiting: time the exit with [`wait_exit`](Self::wait_exit).
    pub fn send_sigterm(&self) {
        self.process
            .signal(Signal::SIGTERM)
            .expect("send SIGTERM to promrelay");
    }

    /// Sends SIGTERM and waits for the exit status (panics if it does not exit within
    /// [`EXIT_GRACE`]).
    pub fn sigterm(&mut self) -> ExitStatus {
        self.process
            .signal(Signal::SIGTERM)
            .expect("send SIGTERM to promrelay");
        self.wait_exit(EXIT_GRACE)
            .unwrap_or_else(|| panic!("promrelay did not exit within {EXIT_GRACE:?} of SIGTERM"))
    }

    /// SIGTERMs the relay and asserts that it exited 0 having published one message per completed
    /// scrape of `target` into `stream`: none lost, none twice, except at most one scrape that
    /// SIGTERM interrupted before its answer was read.
    pub fn sigterm_and_assert_one_message_per_scrape(
        &mut self,
        nats: &crate::NatsServer,
        stream: &str,
        target: &crate::TargetServer,
    ) {
        self.sigterm_and_assert_one_message_per_scrape_plus(nats, stream, target, 0);
    }

    /// [`sigterm_and_assert_one_message_per_scrape`](Self::sigterm_and_assert_one_message_per_scrape)
    /// when `earlier` messages in `stream` came from elsewhere (an earlier run's spool).
    pub fn sigterm_and_assert_one_message_per_scrape_plus(
        &mut self,
        nats: &crate::NatsServer,
        stream: &str,
        target: &crate::TargetServer,
        earlier: u64,
    ) {
        let status = self.sigterm();
        assert!(
            status.success(),
            "promrelay exited with {status}; log:\n{}",
            self.log()
        );
        let scraped = target.requests();
        let published = nats
            .stream_messages(stream)
            .expect("the relay created its stream")
            .saturating_sub(earlier);
        assert!(
            published <= scraped && published + 1 >= scraped,
            "{scraped} scrapes, {published} messages in stream {stream}"
        );
    }

    /// SIGKILL and reap: the crash case (nothing flushed, nothing acked).
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Starts the same command with the same config again (after [`kill9`](Self::kill9) or an
    /// exit), appending to the same log.
    pub fn restart(&mut self) {
        self.process.respawn().expect("restart promrelay");
    }

    /// Waits up to `timeout` for the relay to exit; its status, or `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }
}

/// The top-level `monitor_port: N` of a YAML text, found without a YAML parser.
fn monitor_port_of(yaml: &str) -> Option<u16> {
    yaml.lines()
        .find_map(|line| line.strip_prefix("monitor_port:"))
        .and_then(|value| value.trim().parse().ok())
        .filter(|port| *port > 0)
}

/// Waits until `up` of `job` is `want` among what the relay pushed into `pushgateway` (failing at
/// once if the relay exits), and returns that job's pushed samples.
pub fn wait_up(
    pushgateway: &crate::Pushgateway,
    relay: &mut Relay,
    job: &str,
    want: f64,
    timeout: Duration,
) -> Vec<crate::Sample> {
    poll_until(
        timeout,
        &format!("up {want} of job={job} in the Pushgateway"),
        || {
            if let Err(error) = relay.ensure_running() {
                panic!("{error:#}");
            }
            let samples = pushgateway.pushed_series_for(job);
            samples
                .iter()
                .any(|s| s.name == "up" && s.label("job") == Some(job) && s.value == want)
                .then_some(samples)
        },
    )
}

/// What a bounded `check-config` run did.
#[derive(Debug)]
pub struct BoundedCheck {
    /// The exit status, `None` when it was still running at the deadline (and was killed).
    pub status: Option<ExitStatus>,
    /// Everything it printed, stdout and stderr.
    pub output: String,
}

/// Runs `promrelay check-config` on `yaml` with its address space capped at `memory_bytes`
/// (`ulimit -v`), killing it if it has not exited within `deadline`: for configs meant to make
/// it run away, which must neither hang the suite nor take the machine's memory.
pub fn check_config_bounded(yaml: &str, memory_bytes: u64, deadline: Duration) -> BoundedCheck {
    let dir = tempfile::tempdir().expect("temp dir for the config");
    let path = dir.path().join("promrelay.yaml");
    std::fs::write(&path, yaml).expect("write the config");
    let args = [
        "-c".to_string(),
        format!(
            "ulimit -v {} && exec \"$0\" check-config --config \"$1\"",
            memory_bytes / 1024
        ),
        relay_binary().display().to_string(),
        path.display().to_string(),
    ];
    let mut process = ServerProcess::spawn(
        "promrelay check-config",
        "/bin/sh",
        &args,
        &[],
        dir.path().join("check-config.log"),
    )
    .expect("start promrelay check-config");
    let status = process.wait_exit(deadline);
    if status.is_none() {
        process.kill9();
    }
    BoundedCheck {
        status,
        output: process.log(),
    }
}

/// Runs `promrelay check-config` on `yaml`: (success, what it printed on stdout).
pub fn check_config(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir for the config");
    let path = dir.path().join("promrelay.yaml");
    std::fs::write(&path, yaml).expect("write the config");
    let output = Command::new(relay_binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run promrelay check-config");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}
