//! The monitor port behind `web_config_file` (issue 10, item 5): Prometheus' web configuration
//! file format, TLS and basic auth. A real Prometheus scrapes the relay's monitor port over
//! HTTPS with basic auth (and, in the second test, a client certificate); the relay's own self
//! job still reaches the Pushgateway; the CLI still pauses and reads the relay; a wrong password
//! gets 401 and plain HTTP a 400.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use promrelay_tests::pki::{Leaf, Pki};
use promrelay_tests::relay::wait_up;
use promrelay_tests::{
    free_port, parse_samples, poll_until, relay_binary, NatsServer, Prometheus, Pushgateway, Relay,
    RelayConfig,
};

/// Long enough for a debug-built relay to start and relay on a loaded two-core machine.
const ARRIVAL: Duration = Duration::from_secs(90);
const USER: &str = "prometheus";
const PASSWORD: &str = "scrape me over https";
const TOKEN: &str = "pause-token-of-the-test";

/// A web config with the server certificate `leaf` and one user; `extra_tls` goes under
/// `tls_server_config`.
fn write_web_config(path: &Path, leaf: &Leaf, password: &str, extra_tls: &str) {
    let hash = bcrypt::hash(password, 6).expect("bcrypt the password");
    let mut text = format!(
        "tls_server_config:\n  cert_file: {:?}\n  key_file: {:?}\n",
        leaf.cert.display().to_string(),
        leaf.key.display().to_string()
    );
    for line in extra_tls.lines() {
        text += &format!("  {line}\n");
    }
    text += &format!("basic_auth_users:\n  {USER}: {hash:?}\n");
    std::fs::write(path, text).expect("write the web config");
}

/// A blocking HTTPS client trusting `pki`'s CA, with an optional client certificate.
fn https_client(pki: &Pki, identity: Option<&Leaf>) -> reqwest::blocking::Client {
    let ca = reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).expect("CA certificate");
    promrelay::tls::install_crypto_provider();
    let mut builder = reqwest::blocking::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10));
    if let Some(leaf) = identity {
        let mut pem = std::fs::read(&leaf.cert).expect("read the client certificate");
        pem.extend(std::fs::read(&leaf.key).expect("read the client key"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("client identity"));
    }
    builder.build().expect("HTTPS client")
}

/// Waits until the relay's monitor port answers over HTTPS (with the right password).
fn wait_https(relay: &mut Relay, client: &reqwest::blocking::Client, port: u16) {
    poll_until(
        ARRIVAL,
        "the relay's monitor port to answer over HTTPS",
        || {
            if let Err(error) = relay.ensure_running() {
                panic!("{error:#}");
            }
            client
                .get(format!("https://127.0.0.1:{port}/healthz"))
                .basic_auth(USER, Some(PASSWORD))
                .send()
                .ok()
                .filter(|answer| answer.status().is_success())
        },
    );
}

/// A relay (poller and receiver) with `monitor_port` behind `web_config_file`.
fn start_relay(
    nats: &NatsServer,
    pushgateway: &Pushgateway,
    port: u16,
    web_config: &Path,
) -> Relay {
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .monitor_port(port)
        .extra(&format!(
            "web_config_file: {:?}\nmanagement:\n  token: {TOKEN}\n",
            web_config.display().to_string()
        ));
    Relay::start_config(&config)
}

/// A Prometheus scraping the relay's monitor port every second as job `name` with `settings`
/// (YAML lines under the job), for each (name, settings).
fn prometheus_scraping(port: u16, jobs: &[(&str, String)]) -> Prometheus {
    let mut yaml =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (name, settings) in jobs {
        yaml += &format!("  - job_name: {name}\n");
        for line in settings.lines() {
            yaml += &format!("    {line}\n");
        }
        yaml += &format!("    static_configs:\n      - targets: ['127.0.0.1:{port}']\n");
    }
    Prometheus::start_with_config(&yaml)
}

/// Polls until Prometheus' `up` for each job has the wanted value.
fn wait_prometheus_up(prometheus: &Prometheus, relay: &mut Relay, wanted: &[(&str, f64)]) {
    for (job, want) in wanted {
        poll_until(
            ARRIVAL,
            &format!("up{{job={job:?}}} == {want} in Prometheus"),
            || {
                if let Err(error) = relay.ensure_running() {
                    panic!("{error:#}");
                }
                let value = prometheus
                    .query_number(&format!("up{{job=\"{job}\"}}"))
                    .ok()??;
                (value == *want).then_some(())
            },
        );
    }
}

/// `promrelay ACTION --config F` with extra arguments and environment; (success, output).
fn cli(args: &[&str], config: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(relay_binary());
    command.args(args).arg("--config").arg(config);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("run promrelay");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn auth_count(metrics: &str, outcome: &str) -> f64 {
    parse_samples(metrics)
        .expect("the relay's /metrics parses")
        .iter()
        .filter(|s| s.name == "promrelay_monitor_auth_total" && s.label("outcome") == Some(outcome))
        .map(|s| s.value)
        .sum()
}

#[test]
fn prometheus_scrapes_the_monitor_port_over_https_with_basic_auth_and_wrong_passwords_get_401() {
    let pki = Pki::new("webcfg");
    let server = pki.leaf("relay-monitor", true, false);
    let web_config = pki.dir().join("web.yml");
    write_web_config(&web_config, &server, PASSWORD, "min_version: TLS12\n");
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let port = free_port();
    let mut relay = start_relay(&nats, &pushgateway, port, &web_config);
    let client = https_client(&pki, None);
    wait_https(&mut relay, &client, port);

    let ca = pki.ca_path().display().to_string();
    let secured = |password: &str| {
        format!(
            "scheme: https\ntls_config:\n  ca_file: {ca:?}\nbasic_auth:\n  username: {USER}\n  password: {password:?}\n"
        )
    };
    let prometheus = prometheus_scraping(
        port,
        &[
            ("relay", secured(PASSWORD)),
            ("relay_wrong_password", secured("guessed")),
            ("relay_plain_http", "scheme: http\n".to_owned()),
        ],
    );
    wait_prometheus_up(
        &prometheus,
        &mut relay,
        &[
            ("relay", 1.0),
            ("relay_wrong_password", 0.0),
            ("relay_plain_http", 0.0),
        ],
    );
    // What Prometheus stored is the relay's own metrics, read over HTTPS.
    let build_info = prometheus
        .query_number("promrelay_build_info{job=\"relay\"}")
        .expect("query promrelay_build_info");
    assert_eq!(build_info, Some(1.0));

    // Every endpoint asks for the password; a wrong one gets 401 with a Basic challenge.
    let base = format!("https://127.0.0.1:{port}");
    for path in ["/metrics", "/healthz", "/api/v1/info"] {
        let answer = client.get(format!("{base}{path}")).send().expect("GET");
        assert_eq!(answer.status().as_u16(), 401, "{path} without credentials");
        assert_eq!(
            answer
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Basic")
        );
        let answer = client
            .get(format!("{base}{path}"))
            .basic_auth(USER, Some("wrong"))
            .send()
            .expect("GET");
        assert_eq!(
            answer.status().as_u16(),
            401,
            "{path} with a wrong password"
        );
        let answer = client
            .get(format!("{base}{path}"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .expect("GET");
        assert_eq!(answer.status().as_u16(), 200, "{path} with the password");
    }
    // Plain HTTP on the TLS port: Go's answer, as Prometheus' own port gives it.
    let plain = promrelay_tests::http::get(&format!("http://127.0.0.1:{port}/metrics"))
        .expect("plain HTTP gets an answer");
    assert_eq!(plain.status, 400, "{plain:?}");
    assert!(
        plain.body.contains("HTTP request to an HTTPS server"),
        "{plain:?}"
    );

    // The self job passes the same port's TLS and auth: its scrapes reach the Pushgateway.
    wait_up(&pushgateway, &mut relay, "promrelay", 1.0, ARRIVAL);

    // bcrypt runs once per distinct password, not once per scrape: Prometheus' later scrapes
    // are cache hits.
    let metrics = poll_until(ARRIVAL, "several cached basic auth checks", || {
        let text = client
            .get(format!("{base}/metrics"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .ok()?
            .text()
            .ok()?;
        (auth_count(&text, "cached") >= 5.0).then_some(text)
    });
    assert_eq!(auth_count(&metrics, "verified"), 1.0, "{metrics}");
    assert!(auth_count(&metrics, "refused") >= 1.0, "{metrics}");
    assert!(auth_count(&metrics, "self") >= 1.0, "{metrics}");

    // The CLI: without credentials it says which flags it needs; with them, info and pause work.
    let config = relay.config_path().to_path_buf();
    let (ok, output) = cli(&["info"], &config, &[]);
    assert!(!ok && output.contains("--web-user"), "{output}");
    let password_file = pki.dir().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write the password file");
    let password_file = password_file.display().to_string();
    let with_credentials = [
        "--web-user",
        USER,
        "--web-password-file",
        password_file.as_str(),
    ];
    let (ok, output) = cli(&[&["info"][..], &with_credentials].concat(), &config, &[]);
    assert!(ok && output.contains("\"identity\":\"site1\""), "{output}");
    let (ok, output) = cli(
        &["pause", "--web-user", USER],
        &config,
        &[("PROMRELAY_WEB_PASSWORD", PASSWORD)],
    );
    assert!(ok && output.contains("\"paused\":true"), "{output}");
    let (ok, output) = cli(
        &["resume", "--web-user", USER],
        &config,
        &[("PROMRELAY_WEB_PASSWORD", "wrong")],
    );
    assert!(!ok && output.contains("401"), "{output}");
}

#[test]
fn client_certificates_are_required_and_a_sighup_rereads_the_web_config() {
    let pki = Pki::new("webcfg-mtls");
    let server = pki.leaf("relay-monitor", true, false);
    let scraper = pki.leaf("central-prometheus", false, false);
    let other = Pki::new("webcfg-other");
    let stranger = other.leaf("stranger", false, false);
    let web_config = pki.dir().join("web.yml");
    let ca = pki.ca_path().display().to_string();
    let mtls = format!("client_auth_type: RequireAndVerifyClientCert\nclient_ca_file: {ca:?}\n");
    write_web_config(&web_config, &server, PASSWORD, &mtls);
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let port = free_port();
    let mut relay = start_relay(&nats, &pushgateway, port, &web_config);
    let client = https_client(&pki, Some(&scraper));
    wait_https(&mut relay, &client, port);

    let job = |leaf: &Leaf| {
        format!(
            "scheme: https\ntls_config:\n  ca_file: {ca:?}\n  cert_file: {:?}\n  key_file: {:?}\nbasic_auth:\n  username: {USER}\n  password: {PASSWORD:?}\n",
            leaf.cert.display().to_string(),
            leaf.key.display().to_string()
        )
    };
    let without_certificate =
        format!("scheme: https\ntls_config:\n  ca_file: {ca:?}\nbasic_auth:\n  username: {USER}\n  password: {PASSWORD:?}\n");
    let prometheus = prometheus_scraping(
        port,
        &[
            ("relay", job(&scraper)),
            ("relay_stranger", job(&stranger)),
            ("relay_no_certificate", without_certificate),
        ],
    );
    wait_prometheus_up(
        &prometheus,
        &mut relay,
        &[
            ("relay", 1.0),
            ("relay_stranger", 0.0),
            ("relay_no_certificate", 0.0),
        ],
    );
    // No certificate: the handshake fails before any HTTP.
    let bare = https_client(&pki, None);
    let refused = bare
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .basic_auth(USER, Some(PASSWORD))
        .send();
    assert!(refused.is_err(), "{refused:?}");
    // The self job presents the port's own certificate; the CLI does too.
    wait_up(&pushgateway, &mut relay, "promrelay", 1.0, ARRIVAL);
    let config = relay.config_path().to_path_buf();
    let (ok, output) = cli(
        &["info", "--web-user", USER],
        &config,
        &[("PROMRELAY_WEB_PASSWORD", PASSWORD)],
    );
    assert!(ok && output.contains("\"identity\":\"site1\""), "{output}");

    // A new password in the file takes effect on SIGHUP; the old one is refused from then on.
    let new_password = "rotated on sighup";
    write_web_config(&web_config, &server, new_password, &mtls);
    relay.sighup();
    relay.wait_for_log("web_config_file re-read", ARRIVAL);
    let status = |password: &str| {
        client
            .get(format!("https://127.0.0.1:{port}/metrics"))
            .basic_auth(USER, Some(password))
            .send()
            .expect("GET /metrics")
            .status()
            .as_u16()
    };
    assert_eq!(status(PASSWORD), 401);
    assert_eq!(status(new_password), 200);
    wait_prometheus_up(&prometheus, &mut relay, &[("relay", 0.0)]);
    // A broken file keeps the running settings and says why.
    std::fs::write(
        &web_config,
        "tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent-key.pem\n",
    )
    .expect("break the web config");
    relay.sighup();
    relay.wait_for_log("reload failed", ARRIVAL);
    assert!(
        relay.log().contains("tls_server_config.cert_file"),
        "{}",
        relay.log()
    );
    assert_eq!(status(new_password), 200);
}

/// (file text, fragment the error must contain)
const BAD_FILES: &[(&str, &str)] = &[
    ("tls_server_config:\n  cert_fil: a.pem\n", "unknown field `cert_fil`"),
    ("tls_server_config:\n  cert_file: a.pem\n", "tls_server_config: cert_file and key_file are both required"),
    ("tls_server_config:\n  cert_file: /nonexistent/a.pem\n  key_file: /nonexistent/a-key.pem\n", "tls_server_config.cert_file: certificate /nonexistent/a.pem: cannot read"),
    ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice: is not a bcrypt hash"),
    ("tls_server_config:\n  cert_file: CERT\n  key_file: KEY\n  min_version: TLS11\n", "tls_server_config.min_version: TLS11 is not supported"),
    ("tls_server_config:\n  cert_file: CERT\n  key_file: KEY\n  client_auth_type: RequireClientCert\n", "tls_server_config.client_auth_type: \"RequireClientCert\" is not one of"),
    ("tls_server_config:\n  cert_file: CERT\n  key_file: KEY\n  client_auth_type: RequireAndVerifyClientCert\n", "tls_server_config.client_ca_file: is required"),
    ("tls_server_config:\n  cert_file: CERT\n  key_file: OTHER_KEY\n", "tls_server_config.key_file"),
];

#[test]
fn check_config_and_the_start_name_the_key_of_a_bad_web_config_file() {
    let pki = Pki::new("webcfg-bad");
    let server = pki.leaf("relay-monitor", true, false);
    let other = pki.leaf("other", true, false);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("promrelay.yaml");
    let web = dir.path().join("web.yml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "scrape_interval: 60s\nmonitor_port: {port}\nmonitor_address: 127.0.0.1\n\
             web_config_file: web.yml\n\
             receiver_stream: {{ cluster_id: central, urls: nats://127.0.0.1:1 }}\n\
             push_gateway: {{ url: http://127.0.0.1:1 }}\n"
        ),
    )
    .expect("write the config");
    let path = |p: &PathBuf| p.display().to_string();
    for (text, expected) in BAD_FILES {
        let text = text
            .replace("CERT", &path(&server.cert))
            .replace("OTHER_KEY", &path(&other.key))
            .replace("KEY", &path(&server.key));
        std::fs::write(&web, &text).expect("write the web config");
        let (ok, output) = cli(&["check-config"], &config, &[]);
        assert!(!ok, "check-config accepted:\n{text}\n{output}");
        assert!(
            output.contains(expected),
            "for\n{text}\nexpected {expected:?} in:\n{output}"
        );
        assert!(output.contains("web_config_file"), "{output}");
    }
    // The daemon refuses to start with the same message (the last file).
    let (ok, output) = cli(&["run"], &config, &[]);
    assert!(
        !ok && output.contains("tls_server_config.key_file"),
        "{output}"
    );
    // A good file passes; a relative path is resolved against the config's directory.
    write_web_config(&web, &server, PASSWORD, "");
    let (ok, output) = cli(&["check-config"], &config, &[]);
    assert!(ok, "{output}");
}
