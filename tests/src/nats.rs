//! A real `nats-server` with JetStream (or, for one test, without), on free loopback ports,
//! storing in a temp directory.
//!
//! Ready means `GET /healthz` on the monitoring port answers 200. [`NatsServer::kill9`] and
//! [`NatsServer::restart`] keep the ports and the store directory, for crash-and-recover tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use crate::process::ServerProcess;
use crate::{free_port, http, poll_until_ok};

/// Where Debian installs the server (not on a normal user's PATH).
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running nats-server; killed on drop.
#[derive(Debug)]
pub struct NatsServer {
    process: ServerProcess,
    port: u16,
    monitor_port: u16,
    store_dir: PathBuf,
    dir: TempDir,
}

impl NatsServer {
    /// A JetStream nats-server on 127.0.0.1 with its own store dir, waiting until healthy.
    pub fn start() -> NatsServer {
        NatsServer::start_with_config("")
    }

    /// Starts from a configuration file: `listen`, `http` (monitoring) and `jetstream.store_dir` are
    /// written by the harness for `port`; `extra` is appended verbatim (TLS, authorization,
    /// `cluster { ... }`, `server_name`). Does not wait: call [`wait_healthy`](Self::wait_healthy)
    /// (a cluster member is healthy only once its peers are up).
    pub fn spawn_with_config(port: u16, extra: &str) -> NatsServer {
        NatsServer::spawn_from(port, true, extra)
    }

    /// A nats-server on 127.0.0.1 without JetStream (no `jetstream` block, no `-js`), waiting
    /// until healthy: what an operator gets from a plain `nats-server`.
    pub fn start_without_jetstream() -> NatsServer {
        let mut server = NatsServer::spawn_from(free_port(), false, "");
        server.wait_healthy();
        server
    }

    fn spawn_from(port: u16, jetstream: bool, extra: &str) -> NatsServer {
        let dir = NatsServer::temp_dir();
        let store_dir = NatsServer::store_dir_in(dir.path());
        let monitor_port = free_port();
        let jetstream = if jetstream {
            format!(
                "jetstream {{\n  store_dir: \"{}\"\n}}\n",
                store_dir.display()
            )
        } else {
            String::new()
        };
        let config = format!(
            "listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\n{jetstream}{extra}\n"
        );
        NatsServer::spawn_in(dir, port, monitor_port, &config)
    }

    /// Starts nats-server from the whole config text `config`, which must listen on `port`, serve
    /// monitoring on `monitor_port` and store JetStream under `dir/jetstream` (see
    /// [`store_dir_in`](Self::store_dir_in)). Does not wait: call
    /// [`wait_healthy`](Self::wait_healthy).
    pub fn spawn_in(dir: TempDir, port: u16, monitor_port: u16, config: &str) -> NatsServer {
        let store_dir = NatsServer::store_dir_in(dir.path());
        let config_path = dir.path().join("nats.conf");
        std::fs::write(&config_path, config).expect("write the nats-server config file");
        let args = ["-c".to_string(), config_path.display().to_string()];
        let process = ServerProcess::spawn(
            "nats-server",
            NATS_SERVER,
            &args,
            &[],
            dir.path().join("nats.log"),
        )
        .expect("start nats-server");
        NatsServer {
            process,
            port,
            monitor_port,
            store_dir,
            dir,
        }
    }

    /// The JetStream store directory of a server whose temp directory is `dir`.
    pub fn store_dir_in(dir: &Path) -> PathBuf {
        dir.join("jetstream")
    }

    /// A fresh temp directory for one server's config, log and store.
    pub fn temp_dir() -> TempDir {
        tempfile::Builder::new()
            .prefix("nats-")
            .tempdir()
            .expect("create a temp dir for nats-server")
    }

    /// Like [`spawn_with_config`](Self::spawn_with_config) on a free port, then waits until healthy.
    pub fn start_with_config(extra: &str) -> NatsServer {
        let mut server = NatsServer::spawn_with_config(free_port(), extra);
        server.wait_healthy();
        server
    }

    /// Blocks until `GET /healthz` answers 200 (panics with the log's tail after a timeout or if the
    /// server exited).
    pub fn wait_healthy(&mut self) {
        self.wait_healthy_within(START_TIMEOUT);
    }

    /// [`wait_healthy`](Self::wait_healthy) with a timeout of its own: a cluster node's `/healthz`
    /// answers 503 until its replicated streams have caught up, which on a loaded machine takes
    /// longer than a single server's start.
    pub fn wait_healthy_within(&mut self, timeout: Duration) {
        let url = format!("http://127.0.0.1:{}/healthz", self.monitor_port);
        let process = &mut self.process;
        poll_until_ok(timeout, "nats-server /healthz to answer 200", || {
            process.ensure_running()?;
            http::get_ok(&url)
        });
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:MONPORT` (monitoring: `/varz`, `/jsz`, `/healthz`).
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The JetStream store directory (kept across restarts).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The temp directory holding the store, the log and any config file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `GET /jsz?streams=true&consumers=true` as JSON (stream and consumer state).
    pub fn jsz(&self) -> serde_json::Value {
        let body = http::get_ok(&format!(
            "{}/jsz?streams=true&consumers=true",
            self.monitor_url()
        ))
        .expect("GET /jsz from nats-server");
        serde_json::from_str(&body).expect("nats-server /jsz is JSON")
    }

    /// Like [`jsz`](Self::jsz), for a server that may be down or electing.
    pub fn try_jsz(&self) -> anyhow::Result<serde_json::Value> {
        let body = http::get_ok(&format!(
            "{}/jsz?streams=true&consumers=true",
            self.monitor_url()
        ))?;
        Ok(serde_json::from_str(&body)?)
    }

    /// The number of messages in stream `name` (from `/jsz`), `None` if there is no such stream.
    pub fn stream_messages(&self, name: &str) -> Option<u64> {
        let jsz = self.jsz();
        let accounts = jsz["account_details"].as_array()?;
        accounts
            .iter()
            .filter_map(|account| account["stream_detail"].as_array())
            .flatten()
            .find(|stream| stream["name"] == name)
            .and_then(|stream| stream["state"]["messages"].as_u64())
    }

    /// Kills the server with SIGKILL (no clean shutdown), keeping its store.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Stops the server cleanly (SIGTERM).
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(10));
    }

    /// The config file the server runs with.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.conf")).expect("read nats.conf")
    }

    /// Starts the server again on the same ports and store without waiting (a cluster member is
    /// healthy only once enough peers are back).
    pub fn respawn(&mut self) {
        self.process.respawn().expect("restart nats-server");
    }

    /// Starts the server again on the same ports and store, waiting until healthy.
    pub fn restart(&mut self) {
        self.process.respawn().expect("restart nats-server");
        // The old listener's port can linger for a moment after SIGKILL; keep trying.
        self.wait_healthy();
    }
}
