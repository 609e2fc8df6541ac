//! HTTPS and HTTP authentication towards scrape targets and the Pushgateway (issue 4): Prometheus'
//! `tls_config` (custom CA, client certificate), `basic_auth` and `authorization`, per job and for
//! `push_gateway`.
//!
//! The servers are the real ones: node_exporter and the Pushgateway serve TLS with client
//! verification and basic auth through their `--web.config.file` (Prometheus' exporter-toolkit,
//! bcrypt-hashed passwords). A bearer token is checked by the in-process target, as neither of
//! them supports one.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use promrelay_tests::node_exporter::NODE_EXPORTER;
use promrelay_tests::pki::{Leaf, Pki};
use promrelay_tests::pushgateway::PUSHGATEWAY;
use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, parse_samples, poll_until, Behaviour, NatsServer, Pushgateway, Relay, RelayConfig,
    Sample, ServerProcess, TargetServer,
};
use tempfile::TempDir;

/// Long enough for a debug-built relay to start and relay on a loaded two-core machine.
const ARRIVAL: Duration = Duration::from_secs(90);

const USER: &str = "scraper";
const PASSWORD: &str = "correct horse battery staple";

/// A real server (node_exporter or the Pushgateway) behind TLS with client certificates required
/// and basic auth, on a free loopback port; killed on drop.
struct SecuredServer {
    _process: ServerProcess,
    port: u16,
    _dir: TempDir,
}

impl SecuredServer {
    /// Starts `program` with `args`, `--web.listen-address` and `--web.config.file` requiring a
    /// client certificate of `pki`'s CA and basic auth `USER`/`PASSWORD`.
    fn start(name: &str, program: &str, args: &[String], pki: &Pki) -> SecuredServer {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .expect("temp dir");
        let server = pki.leaf(&format!("{name}-server"), true, false);
        let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt the password");
        let web_config = dir.path().join("web.yml");
        std::fs::write(
            &web_config,
            format!(
                "tls_server_config:\n  cert_file: {:?}\n  key_file: {:?}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {:?}\nbasic_auth_users:\n  {USER}: {:?}\n",
                server.cert.display().to_string(),
                server.key.display().to_string(),
                pki.ca_path().display().to_string(),
                hash
            ),
        )
        .expect("write the web config");
        let port = free_port();
        let mut all = args.to_vec();
        all.push(format!("--web.listen-address=127.0.0.1:{port}"));
        all.push(format!("--web.config.file={}", web_config.display()));
        let mut process = ServerProcess::spawn(
            name,
            program,
            &all,
            &[],
            dir.path().join(format!("{name}.log")),
        )
        .expect("start the server");
        poll_until(
            Duration::from_secs(20),
            &format!("{name} to listen"),
            || {
                if let Err(error) = process.ensure_running() {
                    panic!("{error:#}");
                }
                TcpStream::connect(("127.0.0.1", port)).ok()
            },
        );
        SecuredServer {
            _process: process,
            port,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

/// A blocking client with the CA, a client certificate and basic auth, to read what arrived.
fn client(pki: &Pki, leaf: &Leaf) -> reqwest::blocking::Client {
    let ca = reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).expect("CA certificate");
    let mut pem = std::fs::read(&leaf.cert).expect("read the client certificate");
    pem.extend(std::fs::read(&leaf.key).expect("read the client key"));
    promrelay::tls::install_crypto_provider();
    reqwest::blocking::Client::builder()
        .tls_certs_only([ca])
        .identity(reqwest::Identity::from_pem(&pem).expect("client identity"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTPS client")
}

/// `tls_config` + `basic_auth` lines (unindented) for a job or `push_gateway`.
fn secured_settings(pki: &Pki, leaf: &Leaf, password_file: &Path) -> String {
    format!(
        "tls_config:\n  ca_file: {:?}\n  cert_file: {:?}\n  key_file: {:?}\nbasic_auth:\n  username: {USER}\n  password_file: {:?}\n",
        pki.ca_path().display().to_string(),
        leaf.cert.display().to_string(),
        leaf.key.display().to_string(),
        password_file.display().to_string()
    )
}

fn password_file(pki: &Pki, password: &str) -> PathBuf {
    let path = pki.dir().join("password");
    std::fs::write(&path, format!("{password}\n")).expect("write the password file");
    path
}

fn up_of(samples: &[Sample], job: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == "up" && s.label("job") == Some(job))
        .map(|s| s.value)
}

fn wait_up(pushgateway: &Pushgateway, relay: &mut Relay, job: &str, want: f64) -> Vec<Sample> {
    promrelay_tests::relay::wait_up(pushgateway, relay, job, want, ARRIVAL)
}

#[test]
fn an_https_target_with_client_certificate_and_basic_auth_is_scraped() {
    let pki = Pki::new("targets");
    let node = SecuredServer::start("node_exporter", NODE_EXPORTER, &[], &pki);
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let leaf = pki.leaf("promrelay", false, false);
    let settings = secured_settings(&pki, &leaf, &password_file(&pki, PASSWORD));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url()).job_with(
        "node",
        &settings,
        &[("node1", &node.url("/metrics"))],
    );
    let mut relay = Relay::start_config(&config);
    let samples = wait_up(&pushgateway, &mut relay, "node", 1.0);
    assert!(
        samples.iter().any(|s| s.name == "node_exporter_build_info"),
        "node_exporter's series arrived"
    );
    // The job's settings were needed: node_exporter refuses a client without the CA and a
    // client certificate.
    promrelay::tls::install_crypto_provider();
    assert!(reqwest::blocking::get(node.url("/metrics")).is_err());
    let log = relay.log();
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
}

#[test]
fn a_wrong_password_a_missing_client_certificate_and_a_wrong_ca_fail_the_scrape() {
    let pki = Pki::new("targets");
    let other = Pki::new("other");
    let node = SecuredServer::start("node_exporter", NODE_EXPORTER, &[], &pki);
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let leaf = pki.leaf("promrelay", false, false);
    let url = node.url("/metrics");
    let wrong_password = secured_settings(&pki, &leaf, &password_file(&other, "wrong"));
    let no_client_certificate = format!(
        "tls_config:\n  ca_file: {:?}\nbasic_auth: {{ username: {USER}, password: {PASSWORD:?} }}\n",
        pki.ca_path().display().to_string()
    );
    let wrong_ca = format!(
        "tls_config:\n  ca_file: {:?}\n  cert_file: {:?}\n  key_file: {:?}\n",
        other.ca_path().display().to_string(),
        leaf.cert.display().to_string(),
        leaf.key.display().to_string()
    );
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job_with("password", &wrong_password, &[("n", &url)])
        .job_with("nocert", &no_client_certificate, &[("n", &url)])
        .job_with("wrongca", &wrong_ca, &[("n", &url)]);
    let mut relay = Relay::start_config(&config);
    for job in ["password", "nocert", "wrongca"] {
        wait_up(&pushgateway, &mut relay, job, 0.0);
    }
    let log = relay.log();
    assert!(log.contains("HTTP status 401"), "401 logged:\n{log}");
    assert!(
        log.to_ascii_lowercase().contains("certificate"),
        "a certificate error logged:\n{log}"
    );
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
}

#[test]
fn a_bearer_token_from_a_file_is_sent_to_the_target() {
    let pki = Pki::new("tokens");
    let token_file = pki.dir().join("token");
    std::fs::write(&token_file, "s3cr3t-token\n").expect("write the token file");
    let target = TargetServer::start(Behaviour::RequireAuthorization {
        authorization: "Bearer s3cr3t-token".into(),
        body: SMALL_BODY.into(),
    });
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job_with(
            "token",
            &format!(
                "authorization:\n  type: Bearer\n  credentials_file: {:?}\n",
                token_file.display().to_string()
            ),
            &[("t", &target.url())],
        )
        .job("anonymous", &[("t", &target.url())]);
    let mut relay = Relay::start_config(&config);
    let samples = wait_up(&pushgateway, &mut relay, "token", 1.0);
    assert!(samples.iter().any(|s| s.name == "demo_requests_total"));
    // The other job sends no token and is refused.
    wait_up(&pushgateway, &mut relay, "anonymous", 0.0);
}

#[test]
fn the_pushgateway_over_https_with_client_certificate_and_basic_auth() {
    let pki = Pki::new("pushgateway");
    let dir = tempfile::tempdir().expect("temp dir");
    let secured = SecuredServer::start(
        "pushgateway",
        PUSHGATEWAY,
        &[format!(
            "--persistence.file={}",
            dir.path().join("pg.db").display()
        )],
        &pki,
    );
    let nats = NatsServer::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let leaf = pki.leaf("promrelay", false, false);
    let settings = secured_settings(&pki, &leaf, &password_file(&pki, PASSWORD));
    let mut config =
        RelayConfig::pipeline(&nats.url(), &secured.url("")).job("app", &[("a", &target.url())]);
    config.push_gateway = None;
    let config = config.extra(&format!(
        "push_gateway:\n  url: {:?}\n  publisher_label: true\n{}",
        secured.url(""),
        indent(&settings)
    ));
    let mut relay = Relay::start_config(&config);
    let reader = client(&pki, &leaf);
    let arrived = poll_until(ARRIVAL, "job=app in the HTTPS Pushgateway", || {
        if let Err(error) = relay.ensure_running() {
            panic!("{error:#}");
        }
        let text = reader
            .get(secured.url("/metrics"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .ok()?
            .text()
            .ok()?;
        let samples = parse_samples(&text).ok()?;
        samples
            .iter()
            .any(|s| s.name == "demo_requests_total" && s.label("job") == Some("app"))
            .then_some(samples)
    });
    assert!(up_of(&arrived, "app") == Some(1.0));
    // Without credentials the Pushgateway refuses: the relay's were really needed.
    let refused = reader.get(secured.url("/metrics")).send().expect("answer");
    assert_eq!(refused.status().as_u16(), 401);
}

#[test]
fn a_missing_ca_file_of_a_job_fails_the_start_naming_job_and_file() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url()).job_with(
        "app",
        "tls_config:\n  ca_file: /nonexistent/promrelay-ca.pem\n",
        &[("a", &target.url())],
    );
    let mut relay = Relay::start_config(&config);
    let status = relay
        .wait_exit(ARRIVAL)
        .unwrap_or_else(|| panic!("the relay kept running:\n{}", relay.log()));
    assert!(!status.success());
    let log = relay.log();
    assert!(
        log.contains("/nonexistent/promrelay-ca.pem") && log.contains("jobs.app"),
        "the error names the job and the file:\n{log}"
    );
}

/// Indents raw YAML lines by two spaces.
fn indent(yaml: &str) -> String {
    yaml.lines().map(|line| format!("  {line}\n")).collect()
}

#[test]
fn check_config_reports_the_missing_files_of_jobs_push_gateway_and_nats_credentials() {
    let mut config = RelayConfig::pipeline("nats://127.0.0.1:1", "https://127.0.0.1:1").job_with(
        "app",
        "basic_auth:\n  username: u\n  password_file: /nonexistent/promrelay-password\n",
        &[("a", "https://127.0.0.1:1/metrics")],
    );
    config.push_gateway = None;
    let config = config.extra(
        "push_gateway:\n  url: https://127.0.0.1:1\n  tls_config:\n    ca_file: /nonexistent/promrelay-ca.pem\n",
    );
    let yaml = config.to_yaml().replacen(
        "poller_stream:\n",
        "poller_stream:\n  creds: /nonexistent/promrelay.creds\n",
        1,
    );
    let (ok, text) = promrelay_tests::relay::check_config(&yaml);
    assert!(!ok, "{text}");
    for expected in [
        "jobs.app: reading basic_auth.password /nonexistent/promrelay-password",
        "push_gateway: reading tls_config.ca_file /nonexistent/promrelay-ca.pem",
        "poller_stream.creds: cannot read /nonexistent/promrelay.creds",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}
