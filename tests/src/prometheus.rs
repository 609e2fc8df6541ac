//! A real Prometheus running as a `remote_write` receiver, on a free loopback port with a temp TSDB.
//!
//! [`Prometheus::stop`] and [`Prometheus::start_again`] keep the port and the TSDB (a clean stop
//! writes the head to the WAL, which the restart replays), for sink-outage tests.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use tempfile::TempDir;

use crate::process::ServerProcess;
use crate::{free_port, http, poll_until_ok};

/// The Debian package's binary.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Prometheus; killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    process: ServerProcess,
    port: u16,
    dir: TempDir,
}

impl Prometheus {
    /// `prometheus --web.enable-remote-write-receiver` with a config that scrapes nothing, waiting
    /// until `/-/ready` answers 200.
    pub fn start_remote_write_receiver() -> Prometheus {
        Prometheus::start_with_config("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    }

    /// `prometheus --web.enable-remote-write-receiver` with `config` as its `prometheus.yml`
    /// (e.g. `scrape_configs` that scrape a relay), waiting until `/-/ready` answers 200.
    pub fn start_with_config(config_yaml: &str) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .expect("create a temp dir for Prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml).expect("write the Prometheus config");
        let port = free_port();
        let args = [
            "--web.enable-remote-write-receiver".to_string(),
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        let process = ServerProcess::spawn(
            "prometheus",
            PROMETHEUS,
            &args,
            &[],
            dir.path().join("prometheus.log"),
        )
        .expect("start Prometheus");
        let mut prometheus = Prometheus { process, port, dir };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let ready = format!("{}/-/ready", self.url());
        let process = &mut self.process;
        poll_until_ok(START_TIMEOUT, "Prometheus' /-/ready to answer 200", || {
            process.ensure_running()?;
            http::get_ok(&ready)
        });
    }

    /// Stops it cleanly (SIGTERM): remote_write requests fail with connection refused.
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(30));
    }

    /// Starts it again on the same port and TSDB, waiting until ready.
    pub fn start_again(&mut self) {
        self.process.respawn().expect("restart Prometheus");
        self.wait_ready();
    }

    /// The value of an instant query that yields one number (`count_over_time(...)`, `sum(...)`),
    /// `None` when it yields no series.
    pub fn query_number(&self, promql: &str) -> anyhow::Result<Option<f64>> {
        let result = self.query(promql)?;
        let Some(first) = result.first() else {
            return Ok(None);
        };
        let text = first["value"][1]
            .as_str()
            .with_context(|| format!("query {promql:?}: no value in {first}"))?;
        let value = text
            .parse::<f64>()
            .with_context(|| format!("query {promql:?}: value {text:?} is not a number"))?;
        Ok(Some(value))
    }

    /// How many remote_write requests Prometheus answered with `code` (e.g. `"204"`, `"400"`),
    /// from its own `prometheus_http_requests_total`.
    pub fn write_requests(&self, code: &str) -> anyhow::Result<u64> {
        // Its own metrics endpoint, not a query: it needs no scrape of itself.
        let text = http::get_ok(&format!("{}/metrics", self.url()))?;
        let samples = crate::parse_samples(&text)
            .map_err(|error| anyhow::anyhow!("Prometheus' own /metrics: {error}"))?;
        Ok(samples
            .iter()
            .filter(|sample| {
                sample.name == "prometheus_http_requests_total"
                    && sample.label("handler") == Some("/api/v1/write")
                    && sample.label("code") == Some(code)
            })
            .map(|sample| sample.value as u64)
            .sum())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/api/v1/write`: what a remote_write sink posts to.
    pub fn remote_write_url(&self) -> String {
        format!("{}/api/v1/write", self.url())
    }

    /// The temp directory (TSDB, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// An instant query; returns `data.result` (a JSON array of `{metric, value}`).
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let url = format!(
            "{}/api/v1/query?query={}",
            self.url(),
            http::encode_query_value(promql)
        );
        let answer = http::get(&url)?;
        let json: serde_json::Value = serde_json::from_str(&answer.body)
            .with_context(|| format!("query {promql:?} answered non-JSON: {}", answer.body))?;
        if json["status"] != "success" {
            bail!("query {promql:?} failed ({}): {json}", answer.status);
        }
        Ok(json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}
