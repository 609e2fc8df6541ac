//! The typed, fully validated configuration. Every value here has passed validation: the rest of
//! the daemon reads these fields and never re-checks them. Defaults are resolved (inherited job
//! settings, the top-level `tls` copied into sections without their own), so no caller has to know
//! the inheritance rules. `docs/config.md` documents every key; keep the two in step.

// The access types live in `access`; `types::` still names them for the readers.
pub use super::access::*;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default scrape timeout when neither the job nor the top level sets one (capped to the interval).
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on one scrape's (decompressed) body: 16 MiB.
pub const DEFAULT_SCRAPE_BODY_LIMIT: u64 = 16 * 1024 * 1024;
/// Default bytes of scrapes kept while NATS is unreachable: 64 MiB.
pub const DEFAULT_OUTAGE_BUFFER: u64 = 64 * 1024 * 1024;
/// Default JetStream retention (`max_age` of the stream): 10 minutes, as the original recommended.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(600);
/// `receiver_stream.ack_wait` when absent.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(60);
/// Default subject prefix.
pub const DEFAULT_TOPIC: &str = "prometheus";
/// Default time limit of one filter call: 5 s. The limit exists to stop a runaway filter, not to
/// pace a correct one, and it is wall-clock: with 20 targets filtered in parallel on two cores a
/// call waits for a core most of its time. Measured here (BENCHMARKS.md, "Relabel"): the shipped
/// relabel filter with ten rules took up to 1.8 s on 5 000-series targets scraped 20 at a time on
/// the loaded machine, and about 1 s on the first (uncached) call of a 100 000-series target; the
/// old 50 ms dropped 5 000-series scrapes. It stays below the default scrape timeout (10 s).
pub const DEFAULT_FILTER_TIME: Duration = Duration::from_secs(5);
/// Default memory limit of one filter instance: 64 MiB.
pub const DEFAULT_FILTER_MEMORY: u64 = 64 * 1024 * 1024;
/// Default timeout of one push to the Pushgateway or one remote_write request.
pub const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(30);
/// Default Puppet SSL directory (as root).
pub const DEFAULT_PUPPET_SSL_DIR: &str = "/etc/puppetlabs/puppet/ssl";
/// Largest `label_limit` a job may set: it also bounds the label records a filter's output can
/// make the host walk per series.
pub const MAX_LABEL_LIMIT: usize = 16_384;
/// Smallest `label_limit`: `__name__` and the target labels `job` and `instance`.
pub const MIN_LABEL_LIMIT: usize = 1 + crate::model::TARGET_LABELS.len();
/// Name of the job the poller adds for its own metrics when `monitor_port` is set.
pub const SELF_JOB: &str = "promrelay";
/// Default `refresh_interval` of a `file_sd_configs` entry: 5 minutes, as in Prometheus.
pub const DEFAULT_SD_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);
/// Default `metrics_path` of a job's `static_configs` and `file_sd_configs` targets.
pub const DEFAULT_METRICS_PATH: &str = "/metrics";

/// The whole configuration of one promrelay process.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Logging: `verbose`, `debug` and `logfile`.
    pub log: LogConfig,
    /// `identity`: this publisher's name, used in subjects, headers and the `publisher` label.
    /// Default: the host name with characters not allowed in a subject token replaced by `_`.
    pub identity: String,
    /// `scrape_interval` (required, as in the original): how often each target is scraped.
    pub scrape_interval: Duration,
    /// `scrape_timeout`: default [`DEFAULT_SCRAPE_TIMEOUT`], capped to `scrape_interval`.
    pub scrape_timeout: Duration,
    /// `scrape_body_limit`: largest body accepted from a target, in bytes.
    /// Default [`DEFAULT_SCRAPE_BODY_LIMIT`].
    pub scrape_body_limit: u64,
    /// `max_age`: the receiver drops scrapes older than this. `0` or absent: `None`, no limit.
    pub max_age: Option<Duration>,
    /// `monitor_port`: own HTTP port (metrics, health, API). `0` or absent: `None`, off.
    pub monitor_port: Option<u16>,
    /// `monitor_address`: the address the monitor port binds. Default `0.0.0.0` (every
    /// interface, as the original did); `127.0.0.1` keeps it local.
    pub monitor_address: std::net::IpAddr,
    /// `web_config_file`: TLS and basic auth of the monitor port, in Prometheus' web
    /// configuration file format (what `prometheus --web.config.file` takes). Resolved against
    /// the config file's directory; read and checked by `web`, not here.
    pub web_config_file: Option<PathBuf>,
    /// `poller_stream`: where the poller publishes. Absent: no poller.
    pub poller_stream: Option<StreamConfig>,
    /// `receiver_stream`: where the receiver consumes. Absent: no receiver.
    pub receiver_stream: Option<StreamConfig>,
    /// `push_gateway`: the receiver's Pushgateway sink.
    pub push_gateway: Option<PushGatewayConfig>,
    /// `remote_write`: the receiver's remote_write sinks (new; a list, may be empty).
    pub remote_write: Vec<RemoteWriteConfig>,
    /// `jobs`: the poller's scrape jobs, in the order of the file.
    pub jobs: Vec<JobConfig>,
    /// `filters`: the global filter chain, applied in order to every scrape before a job's own.
    pub filters: Vec<FilterConfig>,
    /// `outage_buffer`: bytes of scrapes kept while NATS is unreachable (oldest dropped first).
    /// Default [`DEFAULT_OUTAGE_BUFFER`].
    pub outage_buffer: u64,
    /// `spool_dir` and `spool_sync`: where the poller keeps the scrapes JetStream has not
    /// acknowledged, on disk (bounded by `outage_buffer`). Absent: they are kept in memory.
    pub spool: Option<SpoolConfig>,
    /// `tls`: the top-level TLS stanza. Already copied into `poller_stream`, `receiver_stream` and
    /// `management` where those have none.
    pub tls: Option<TlsConfig>,
    /// `management`: the circuit breaker (pause/resume) settings.
    pub management: Option<ManagementConfig>,
}

/// The durable spool (`spool_dir`).
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    /// `spool_dir`: the directory of the spool's files (created if missing).
    pub dir: PathBuf,
    /// `spool_sync` (with `spool_sync_interval`): when written records are made durable.
    pub sync: SpoolSync,
}

/// Default `spool_sync_interval`.
pub const DEFAULT_SPOOL_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// `spool_sync`: when the spool's writes are forced to the disk (`fsync`). A killed process
/// loses nothing in any case (every record is written to the kernel at once); this decides what
/// a host crash or power loss can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolSync {
    /// After every record: a host crash loses nothing acknowledged by the disk.
    Always,
    /// Every `spool_sync_interval` (default 1 s): a host crash loses at most that much.
    Interval(Duration),
    /// Never: the kernel writes back when it likes (typically within 30 s).
    Never,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// From `verbose: true` (info) and `debug: true` (debug); otherwise warn, as the original.
    pub level: LogLevel,
    /// `logfile`: append log lines there. Absent: stderr.
    pub file: Option<PathBuf>,
}

/// A log level, least verbose first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors (the default without `verbose` or `debug`).
    Warn,
    /// `verbose: true`.
    Info,
    /// `debug: true`.
    Debug,
}

impl LogLevel {
    /// The level's name as `tracing_subscriber::EnvFilter` and `RUST_LOG` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A NATS JetStream connection and stream (`poller_stream` or `receiver_stream`).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// `cluster_id`: the JetStream stream name (no spaces, `.`, `*`, `>`, `/`, `\`).
    pub stream: String,
    /// `urls`: NATS server URLs; one URL, a comma-separated string or a list. A URL without a
    /// scheme gets `nats://`.
    pub urls: Vec<String>,
    /// `topic`: subject prefix; messages go to `<topic>.<identity>.<job>`. Default `prometheus`.
    pub topic: String,
    /// `client_id`: the receiver's durable consumer name. Empty (the default): the receiver uses a
    /// fresh unique consumer name each start, as the original did. Unused by the poller.
    pub client_id: String,
    /// `retention`: how long the stream keeps messages (its `max_age`). Default 10 minutes.
    pub retention: Duration,
    /// `storage`: `file` (default) or `memory`.
    pub storage: Storage,
    /// `replicas`: stream replicas, 1 to 5. Default 1.
    pub replicas: usize,
    /// `tls` of this connection, or the top-level one when this section has none.
    pub tls: Option<TlsConfig>,
    /// NATS credentials: `user`/`password`, `token`, `nkey` (seed file) or `creds` (file).
    pub auth: NatsAuth,
    /// `domain`: the JetStream domain the stream lives in (a leaf site's or the hub's, as in the
    /// server's `jetstream { domain: ... }`). `None`: the connected server's own JetStream.
    pub domain: Option<String>,
    /// `sources` (`receiver_stream` only): the site streams the hub stream sources. Not empty: the
    /// receiver's stream has no subjects of its own and copies each of these.
    pub sources: Vec<StreamSource>,
    /// `ack_wait` (`receiver_stream` only): how long the durable consumer waits for a receiver's
    /// ack before redelivering a message (to any receiver of the consumer). Default 60 s.
    pub ack_wait: Duration,
    /// `shared_order` (`receiver_stream` only): receivers sharing the consumer (`client_id`)
    /// agree through a JetStream KV bucket on the newest scrape pushed to the Pushgateway per
    /// group, so none pushes an older one after it. Default `false`.
    pub shared_order: bool,
    /// `format` (`poller_stream` only): the message body, `batch` (default: carries staleness
    /// markers) or `text` (Prometheus text, for receivers older than the batch format).
    pub format: crate::wire::WireFormat,
}

/// One entry of `receiver_stream.sources`: a site stream in another JetStream domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamSource {
    /// `stream`: the site stream's name (the site poller's `poller_stream.cluster_id`).
    pub stream: String,
    /// `domain`: the site's JetStream domain (the site poller's `poller_stream.domain`).
    pub domain: String,
}

impl StreamConfig {
    /// The durable consumer name, or `None` when the receiver must invent a fresh unique one.
    pub fn durable_name(&self) -> Option<&str> {
        if self.client_id.is_empty() {
            None
        } else {
            Some(&self.client_id)
        }
    }
}

/// JetStream storage of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// On disk (default): survives a nats-server restart.
    File,
    /// In memory.
    Memory,
}

/// How a NATS connection authenticates, besides TLS.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum NatsAuth {
    /// No credentials (default).
    #[default]
    None,
    /// `user` and `password`.
    UserPassword {
        /// `user`.
        user: String,
        /// `password`.
        password: Secret,
    },
    /// `token`.
    Token(Secret),
    /// `nkey`: path of an nkey seed file.
    NkeySeedFile(PathBuf),
    /// `creds`: path of a credentials (JWT + seed) file.
    CredsFile(PathBuf),
}

/// A secret string (password, token). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is handed to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A secret given inline or read from a file (Prometheus' `password` / `password_file` style).
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    /// Given in the config.
    Inline(Secret),
    /// Read from this file (trailing newline trimmed) when the client is built.
    File(PathBuf),
}

/// `push_gateway`: the receiver's Pushgateway.
#[derive(Debug, Clone, PartialEq)]
pub struct PushGatewayConfig {
    /// `url`: base URL, e.g. `http://127.0.0.1:9091` (http or https).
    pub url: url::Url,
    /// `publisher_label`: add `publisher/<identity>` to the grouping key. Default false.
    pub publisher_label: bool,
    /// `timeout`: of one push. Default 30s.
    pub timeout: Duration,
    /// `tls_config`, `basic_auth`, `authorization`, as in Prometheus.
    pub http: HttpClientConfig,
}

/// One `remote_write` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWriteConfig {
    /// `url`: the remote_write endpoint (http or https), e.g. `http://127.0.0.1:9090/api/v1/write`.
    pub url: url::Url,
    /// `timeout`: of one request. Default 30s.
    pub timeout: Duration,
    /// `tls_config`, `basic_auth`, `authorization`, as in Prometheus.
    pub http: HttpClientConfig,
}

/// One scrape job (`jobs.<name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    /// The key under `jobs`; the `job` label and a subject token.
    pub name: String,
    /// `scrape_interval`: default the top-level one.
    pub scrape_interval: Duration,
    /// `scrape_timeout`: default the top-level one, capped to this job's interval.
    pub scrape_timeout: Duration,
    /// `scrape_body_limit`: default the top-level one.
    pub scrape_body_limit: u64,
    /// `label_limit`: most labels one series may carry, counted as `model::DEFAULT_LABEL_LIMIT`
    /// says (its default); a scrape with a series over it fails at parse time, naming the line,
    /// and a filter output with one is invalid.
    pub label_limit: usize,
    /// `targets` (the original's `{name, url}`) and `static_configs` (Prometheus'), in that
    /// order; instances are unique within the job. May be empty when `file_sd_configs` is set.
    pub targets: Vec<Target>,
    /// `scheme`: `http` (default) or `https`, for `static_configs` and `file_sd_configs` targets
    /// without a `__scheme__` label.
    pub scheme: String,
    /// `metrics_path`: default [`DEFAULT_METRICS_PATH`], for `static_configs` and
    /// `file_sd_configs` targets without a `__metrics_path__` label.
    pub metrics_path: String,
    /// `file_sd_configs`: files of target groups, watched and re-read at run time.
    pub file_sd: Vec<FileSdConfig>,
    /// `filters`: this job's own chain, run after the global one.
    pub filters: Vec<FilterConfig>,
    /// `tls_config`, `basic_auth`, `authorization` for the targets, as in Prometheus.
    pub http: HttpClientConfig,
}

/// One scrape target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The `instance` label: `name`, or the URL's `host:port` (port defaulted by scheme); for
    /// a target group's target its `instance` label, or its address.
    pub name: String,
    /// `url`: the full metrics URL (http or https).
    pub url: url::Url,
    /// Target labels besides `job` and `instance`, sorted by name, none starting with `__`:
    /// a target group's `labels`. Empty for the original's `{name, url}` targets.
    pub labels: Vec<crate::model::Label>,
}

/// One `file_sd_configs` entry: files in Prometheus' file_sd format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSdConfig {
    /// `files`: paths whose last part may hold `*` and `?` wildcards, each ending in `.json`,
    /// `.yml` or `.yaml`; relative ones resolved against the config file's directory.
    pub files: Vec<std::path::PathBuf>,
    /// `refresh_interval`: how often the files are re-read besides watching them. Default
    /// [`DEFAULT_SD_REFRESH`].
    pub refresh_interval: Duration,
}

/// One target group as Prometheus' `static_configs` and file_sd files hold it: addresses
/// and the labels they share (`__scheme__`, `__metrics_path__`, `__param_<name>` included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetGroup {
    /// `targets`: `host:port` addresses, each with the line it is on.
    pub targets: Vec<(String, usize)>,
    /// `labels`, by name.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The line where the group starts.
    pub line: usize,
}

impl Target {
    /// The `instance` of a target without a `name`: the URL's `host:port`, the port defaulted
    /// by scheme (`None` when the scheme has no default port).
    pub fn default_instance(url: &url::Url) -> Option<String> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default()?;
        Some(format!("{host}:{port}"))
    }
}

/// One filter in a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterConfig {
    /// `name`: unique within the chain it runs in (global chain + the job's); a label value in
    /// the filter metrics. Letters, digits, `_`, `-`, `.`.
    pub name: String,
    /// `module`: path of the `.wasm` file. Relative paths are relative to the config file's
    /// directory when loaded with [`crate::config::load`].
    pub module: PathBuf,
    /// `on_error`: what a failing call does to the scrape. Default [`OnError::Drop`].
    pub on_error: OnError,
    /// `limits`: per call.
    pub limits: FilterLimits,
    /// `config`: the filter's own configuration, YAML converted to JSON, handed to its `init`.
    /// Absent: an empty object `{}`.
    pub config: serde_json::Value,
}

/// What a filter error (trap, timeout, out of memory, invalid output) does to the scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Go on as if the filter were not there: the scrape continues unfiltered by it.
    Pass,
    /// Drop the scrape (the default: fail closed, nothing unfiltered leaves the site).
    Drop,
    /// Fail the scrape as a whole, as a failed scrape of the target.
    Fail,
}

impl OnError {
    /// The keyword as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Pass => "pass",
            OnError::Drop => "drop",
            OnError::Fail => "fail",
        }
    }
}

/// `limits` of one filter call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// `time`: wall-clock limit of one call. Default [`DEFAULT_FILTER_TIME`] (5s).
    pub time: Duration,
    /// `memory`: linear memory limit of one instance, bytes. Default 64 MiB.
    pub memory: u64,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            time: DEFAULT_FILTER_TIME,
            memory: DEFAULT_FILTER_MEMORY,
        }
    }
}
