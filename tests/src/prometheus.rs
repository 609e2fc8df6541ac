//! A real Prometheus running as a `remote_write` receiver, on a free loopback port with a temp TSDB.

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
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir()
            .expect("create a temp dir for Prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        )
        .expect("write the Prometheus config");
        let port = free_port();
        let args = [
            "--web.enable-remote-write-receiver".to_string(),
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        let mut process = ServerProcess::spawn(
            "prometheus",
            PROMETHEUS,
            &args,
            &[],
            dir.path().join("prometheus.log"),
        )
        .expect("start Prometheus");
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        poll_until_ok(START_TIMEOUT, "Prometheus' /-/ready to answer 200", || {
            process.ensure_running()?;
            http::get_ok(&ready)
        });
        Prometheus { process, port, dir }
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
