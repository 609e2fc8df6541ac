//! A real Puppet CA: Debian's `puppetserver` 7.9 started from its jar with every directory in a
//! temp dir (the packaged `puppetserver foreground` switches user and hard-codes `/etc` and `/var`).
//!
//! The harness writes `conf.d` (webserver on 127.0.0.1 and a free port, jruby-puppet dirs, an
//! `auth.conf` with the CA rules), `services.d` (the packaged service list plus the CA), a
//! `puppet.conf` (certname `puppet`, `dns_alt_names = puppet,localhost,IP:127.0.0.1`, RSA 2048,
//! autosign off) and a console-only logback config. Ready means `/status/v1/simple` answers
//! `running`. The server's own certificate signs CSRs through `certificate_status`.
//!
//! **Invariant:** nothing outside the temp dir is written; the JVM is killed by PID on drop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tempfile::TempDir;

use crate::process::ServerProcess;
use crate::{free_port, poll_until_ok};

/// The packaged jar.
pub const JAR: &str = "/usr/share/puppetserver/puppetserver.jar";
/// The packaged service list (`bootstrap.cfg`, `ca.cfg`).
const PACKAGED_SERVICES: &str = "/etc/puppet/puppetserver/services.d";
/// JRuby start and CA generation take ~20 s on an idle machine, minutes on a loaded one.
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// The server's certname (its own certificate signs requests).
pub const SERVER_NAME: &str = "puppet";

/// Whether puppetserver and java are installed.
pub fn installed() -> bool {
    Path::new(JAR).is_file()
        && Path::new(PACKAGED_SERVICES).is_dir()
        && std::process::Command::new("java")
            .arg("-version")
            .output()
            .is_ok_and(|output| output.status.success())
}

/// A running puppetserver; killed on drop.
pub struct PuppetServer {
    process: ServerProcess,
    port: u16,
    dir: TempDir,
}

impl PuppetServer {
    /// Writes the config into a temp dir, starts the JVM and waits until it answers.
    pub fn start() -> anyhow::Result<PuppetServer> {
        let dir = tempfile::Builder::new()
            .prefix("puppetserver-")
            .tempdir()
            .context("temp dir for puppetserver")?;
        let port = free_port();
        write_config(dir.path(), port)?;
        let root = dir.path().display().to_string();
        let args: Vec<String> = [
            "-Xms256m",
            "-Xmx768m",
            // Start time matters more than peak speed for a test CA.
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Djruby.lib=/usr/share/jruby/lib",
            "-Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger",
            "-jar",
            JAR,
            "--config",
            &format!("{root}/conf.d"),
            "--bootstrap-config",
            &format!("{root}/services.d"),
            "--restart-file",
            &format!("{root}/restart"),
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        let process = ServerProcess::spawn(
            "puppetserver",
            "java",
            &args,
            &[],
            dir.path().join("puppetserver.log"),
        )?;
        let mut server = PuppetServer { process, port, dir };
        server.wait_running()?;
        Ok(server)
    }

    fn wait_running(&mut self) -> anyhow::Result<()> {
        promrelay::tls::install_crypto_provider();
        let client = reqwest::blocking::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(10))
            .build()?;
        let url = format!("https://127.0.0.1:{}/status/v1/simple", self.port);
        let process = &mut self.process;
        poll_until_ok(START_TIMEOUT, "puppetserver to answer running", || {
            process.ensure_running()?;
            let text = client.get(&url).send()?.error_for_status()?.text()?;
            anyhow::ensure!(text.trim() == "running", "status {text:?}");
            Ok(())
        });
        Ok(())
    }

    /// `127.0.0.1:PORT`, as `promrelay enroll --ca` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's own ssl dir: `certs/ca.pem`, `certs/puppet.pem`, `private_keys/puppet.pem`
    /// (its certificate is for `puppet`, `localhost` and 127.0.0.1).
    pub fn ssl_dir(&self) -> PathBuf {
        self.dir.path().join("ssl")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// A client authenticated with the server's own certificate.
    fn admin_client(&self) -> anyhow::Result<reqwest::blocking::Client> {
        let ssl = self.ssl_dir();
        let ca = std::fs::read(ssl.join("certs/ca.pem"))?;
        let mut identity = std::fs::read(ssl.join(format!("certs/{SERVER_NAME}.pem")))?;
        identity.extend(std::fs::read(
            ssl.join(format!("private_keys/{SERVER_NAME}.pem")),
        )?);
        promrelay::tls::install_crypto_provider();
        Ok(reqwest::blocking::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca)?)
            .identity(reqwest::Identity::from_pem(&identity)?)
            .timeout(Duration::from_secs(30))
            .build()?)
    }

    fn status_url(&self, name: &str) -> String {
        format!(
            "https://127.0.0.1:{}/puppet-ca/v1/certificate_status/{name}?environment=production",
            self.port
        )
    }

    /// The CA's state of `name` (`requested`, `signed`, `revoked`), `None` if unknown.
    pub fn certificate_state(&self, name: &str) -> anyhow::Result<Option<String>> {
        let response = self.admin_client()?.get(self.status_url(name)).send()?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status: serde_json::Value = response.error_for_status()?.json()?;
        Ok(status["state"].as_str().map(str::to_owned))
    }

    /// Signs the pending request of `name`, as `puppetserver ca sign --certname NAME` does.
    pub fn sign(&self, name: &str) -> anyhow::Result<()> {
        let response = self
            .admin_client()?
            .put(self.status_url(name))
            .header("Content-Type", "application/json")
            .body(r#"{"desired_state":"signed"}"#)
            .send()?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "signing {name}: {status}: {}",
            response.text().unwrap_or_default()
        );
        Ok(())
    }
}

/// `conf.d`, `services.d`, `puppet.conf` and logging for a server rooted at `root`.
fn write_config(root: &Path, port: u16) -> anyhow::Result<()> {
    let r = root.display();
    for sub in [
        "conf.d",
        "services.d",
        "etc",
        "code",
        "var",
        "run",
        "log",
        "gems",
    ] {
        std::fs::create_dir_all(root.join(sub))?;
    }
    for service in ["bootstrap.cfg", "ca.cfg"] {
        let text = std::fs::read_to_string(Path::new(PACKAGED_SERVICES).join(service))
            .with_context(|| format!("reading the packaged {service}"))?;
        std::fs::write(root.join("services.d").join(service), text)?;
    }
    let files = [
        (
            "logback.xml",
            "<configuration>\n  <appender name=\"STDOUT\" class=\"ch.qos.logback.core.ConsoleAppender\">\n    <encoder><pattern>%d %-5p [%c{2}] %m%n</pattern></encoder>\n  </appender>\n  <root level=\"info\"><appender-ref ref=\"STDOUT\"/></root>\n</configuration>\n".to_string(),
        ),
        (
            "conf.d/global.conf",
            format!("global: {{ logging-config: \"{r}/logback.xml\" }}\n"),
        ),
        (
            "conf.d/webserver.conf",
            format!("webserver: {{\n  client-auth: want\n  ssl-host: 127.0.0.1\n  ssl-port: {port}\n}}\n"),
        ),
        (
            "conf.d/puppetserver.conf",
            format!(
                "jruby-puppet: {{\n  ruby-load-path: [/usr/lib/puppetserver/ruby/vendor_ruby]\n  \
                 gem-home: \"{r}/gems\"\n  gem-path: [\"{r}/gems\", /usr/lib/puppetserver/vendored-jruby-gems]\n  \
                 server-conf-dir: \"{r}/etc\"\n  server-code-dir: \"{r}/code\"\n  \
                 server-var-dir: \"{r}/var\"\n  server-run-dir: \"{r}/run\"\n  \
                 server-log-dir: \"{r}/log\"\n  max-active-instances: 1\n}}\n\
                 http-client: {{}}\nprofiler: {{}}\nproduct: {{ check-for-updates: false }}\n"
            ),
        ),
        ("conf.d/ca.conf", "certificate-authority: {}\n".to_string()),
        (
            "conf.d/metrics.conf",
            "metrics: {\n  server-id: localhost\n  registries: { puppetserver: { reporters: { jmx: { enabled: true } } } }\n  reporters: {}\n  metrics-webservice: { jolokia: { servlet-init-params: {} } }\n}\n".to_string(),
        ),
        ("conf.d/web-routes.conf", WEB_ROUTES.to_string()),
        ("conf.d/auth.conf", AUTH.replace("SERVER_NAME", SERVER_NAME)),
        (
            "etc/puppet.conf",
            format!(
                "[main]\ncertname = {SERVER_NAME}\ndns_alt_names = puppet,localhost,IP:127.0.0.1\n\
                 keylength = 2048\nvardir = {r}/var\nssldir = {r}/ssl\nrundir = {r}/run\n\
                 logdir = {r}/log\ncodedir = {r}/code\n[server]\nautosign = false\ncadir = {r}/ca\n"
            ),
        ),
    ];
    for (path, text) in files {
        std::fs::write(root.join(path), text).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

const WEB_ROUTES: &str = r#"web-router-service: {
  "puppetlabs.services.ca.certificate-authority-service/certificate-authority-service": "/puppet-ca"
  "puppetlabs.services.master.master-service/master-service": "/puppet"
  "puppetlabs.services.legacy-routes.legacy-routes-service/legacy-routes-service": ""
  "puppetlabs.services.puppet-admin.puppet-admin-service/puppet-admin-service": "/puppet-admin-api"
  "puppetlabs.trapperkeeper.services.status.status-service/status-service": "/status"
  "puppetlabs.trapperkeeper.services.metrics.metrics-service/metrics-webservice": "/metrics"
}
"#;

/// The CA rules an agent and the signing test need; everything else is denied.
const AUTH: &str = r#"authorization: {
  version: 1
  rules: [
    { match-request: { path: "/puppet-ca/v1/certificate/", type: path, method: get }
      allow-unauthenticated: true, sort-order: 500, name: "certificate" },
    { match-request: { path: "/puppet-ca/v1/certificate_revocation_list/ca", type: path, method: get }
      allow-unauthenticated: true, sort-order: 500, name: "crl" },
    { match-request: { path: "/puppet-ca/v1/certificate_request", type: path, method: [get, put] }
      allow-unauthenticated: true, sort-order: 500, name: "csr" },
    { match-request: { path: "/puppet-ca/v1/certificate_status", type: path, method: [get, put, delete] }
      allow: ["SERVER_NAME", { extensions: { pp_cli_auth: "true" } }], sort-order: 500, name: "cert status" },
    { match-request: { path: "/puppet-ca/v1/certificate_statuses", type: path, method: get }
      allow: ["SERVER_NAME", { extensions: { pp_cli_auth: "true" } }], sort-order: 500, name: "cert statuses" },
    { match-request: { path: "/status/v1/simple", type: path, method: get }
      allow-unauthenticated: true, sort-order: 500, name: "status simple" },
    { match-request: { path: "/status/v1/services", type: path, method: get }
      allow-unauthenticated: true, sort-order: 500, name: "status services" },
    { match-request: { path: "/", type: path }
      deny: "*", sort-order: 999, name: "deny everything else" }
  ]
}
"#;
