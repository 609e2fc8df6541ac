//! A real Prometheus Pushgateway on a free loopback port, persisting to a temp file.
//!
//! [`Pushgateway::stop`] and [`Pushgateway::start_again`] keep the port and the persistence file,
//! for sink-outage tests. Ready means `GET /-/ready` answers 200.

use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::ServerProcess;
use crate::text::{parse_samples, Sample};
use crate::{free_port, http, poll_until_ok};

/// The Debian package's binary.
pub const PUSHGATEWAY: &str = "/usr/bin/prometheus-pushgateway";

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Series the Pushgateway adds to every group by itself.
pub const GROUP_BOOKKEEPING: [&str; 2] = ["push_time_seconds", "push_failure_time_seconds"];

/// A running Pushgateway; killed on drop.
#[derive(Debug)]
pub struct Pushgateway {
    process: ServerProcess,
    port: u16,
    dir: TempDir,
}

impl Pushgateway {
    /// Starts `prometheus-pushgateway --web.listen-address=127.0.0.1:PORT --persistence.file=TMP/pg.db`
    /// and waits until it is ready.
    pub fn start() -> Pushgateway {
        let dir = tempfile::Builder::new()
            .prefix("pushgateway-")
            .tempdir()
            .expect("create a temp dir for the Pushgateway");
        let port = free_port();
        let args = [
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!("--persistence.file={}", dir.path().join("pg.db").display()),
            "--persistence.interval=1s".to_string(),
        ];
        let process = ServerProcess::spawn(
            "pushgateway",
            PUSHGATEWAY,
            &args,
            &[],
            dir.path().join("pushgateway.log"),
        )
        .expect("start the Pushgateway");
        let mut pushgateway = Pushgateway { process, port, dir };
        pushgateway.wait_ready();
        pushgateway
    }

    fn wait_ready(&mut self) {
        let url = format!("{}/-/ready", self.url());
        let process = &mut self.process;
        poll_until_ok(
            START_TIMEOUT,
            "the Pushgateway's /-/ready to answer 200",
            || {
                process.ensure_running()?;
                http::get_ok(&url)
            },
        );
    }

    /// `http://127.0.0.1:PORT`, what a promrelay config's `push_gateway.url` takes.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The temp directory (persistence file and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The Pushgateway's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `GET /metrics`: every pushed series plus the Pushgateway's own.
    pub fn metrics_text(&self) -> String {
        http::get_ok(&format!("{}/metrics", self.url())).expect("GET /metrics from the Pushgateway")
    }

    /// `GET /metrics` that returns the error instead of panicking (while it may be down).
    pub fn try_metrics_text(&self) -> anyhow::Result<String> {
        http::get_ok(&format!("{}/metrics", self.url()))
    }

    /// Every sample whose `job` label is `job`, including the Pushgateway's per-group
    /// `push_time_seconds` / `push_failure_time_seconds` (see [`GROUP_BOOKKEEPING`]).
    pub fn series_for(&self, job: &str) -> Vec<Sample> {
        parse_samples(&self.metrics_text())
            .expect("the Pushgateway's /metrics parses")
            .into_iter()
            .filter(|sample| sample.label("job") == Some(job))
            .collect()
    }

    /// Like [`series_for`](Self::series_for) without the Pushgateway's bookkeeping series: only what
    /// was pushed.
    pub fn pushed_series_for(&self, job: &str) -> Vec<Sample> {
        self.series_for(job)
            .into_iter()
            .filter(|sample| !GROUP_BOOKKEEPING.contains(&sample.name.as_str()))
            .collect()
    }

    /// `GET /api/v1/metrics`: the groups as JSON.
    pub fn groups_json(&self) -> serde_json::Value {
        let body =
            http::get_ok(&format!("{}/api/v1/metrics", self.url())).expect("GET /api/v1/metrics");
        serde_json::from_str(&body).expect("the Pushgateway's /api/v1/metrics is JSON")
    }

    /// Stops it (SIGTERM; it writes its persistence file), keeping port and file.
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(10));
    }

    /// Starts it again on the same port with the same persistence file, waiting until ready.
    pub fn start_again(&mut self) {
        self.process.respawn().expect("start the Pushgateway again");
        self.wait_ready();
    }
}
