//! A real node_exporter on a free loopback port: a realistic scrape target (~250 families).

use std::time::Duration;

use tempfile::TempDir;

use crate::process::ServerProcess;
use crate::{free_port, http, poll_until_ok};

/// The Debian package's binary.
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running node_exporter; killed on drop.
#[derive(Debug)]
pub struct NodeExporter {
    process: ServerProcess,
    port: u16,
    _dir: TempDir,
}

impl NodeExporter {
    /// Starts `prometheus-node-exporter --web.listen-address=127.0.0.1:PORT`, waiting until
    /// `/metrics` answers.
    pub fn start() -> NodeExporter {
        let dir = tempfile::Builder::new()
            .prefix("node-exporter-")
            .tempdir()
            .expect("create a temp dir for node_exporter");
        let port = free_port();
        let args = [format!("--web.listen-address=127.0.0.1:{port}")];
        let mut process = ServerProcess::spawn(
            "node_exporter",
            NODE_EXPORTER,
            &args,
            &[],
            dir.path().join("node-exporter.log"),
        )
        .expect("start node_exporter");
        let url = format!("http://127.0.0.1:{port}/metrics");
        poll_until_ok(
            START_TIMEOUT,
            "node_exporter's /metrics to answer 200",
            || {
                process.ensure_running()?;
                http::get_ok(&url)
            },
        );
        NodeExporter {
            process,
            port,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }

    /// `127.0.0.1:PORT`: the `instance` Prometheus gives a target without a name.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One scrape of `/metrics`.
    pub fn metrics_text(&self) -> String {
        http::get_ok(&self.metrics_url()).expect("GET node_exporter /metrics")
    }

    /// The PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Stops it (SIGTERM): the target becomes dead.
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(10));
    }
}
