//! `promrelay enroll` end to end: the real binary against a small Puppet CA in the test (an
//! `rcgen` CA over HTTPS that signs after a few polls), and against a real `puppetserver` 7.9;
//! then the enrolled files carry a relay over TLS to a nats-server with `verify: true`.
//!
//! The real puppetserver test is skipped (saying so) when the package is not installed, unless
//! `PROMRELAY_REQUIRE_PUPPETSERVER` is set (CI sets it), which makes a missing package a failure.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use promrelay_tests::process::ServerProcess;
use promrelay_tests::puppet_ca::{certificates, PuppetCa, Signing};
use promrelay_tests::puppetserver::{self, PuppetServer};
use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    poll_until, poll_until_ok, relay_binary, Behaviour, NatsServer, Pushgateway, Relay,
    RelayConfig, TargetServer,
};
use tempfile::TempDir;

/// Long enough for a debug-built relay to start and relay on a loaded two-core machine.
const ARRIVAL: Duration = Duration::from_secs(90);
const IDENTITY: &str = "site1.example.net";

/// Runs `promrelay enroll ARGS` to its end.
fn enroll(args: &[&str]) -> Output {
    Command::new(relay_binary())
        .arg("enroll")
        .args(args)
        .output()
        .expect("run promrelay enroll")
}

/// `enroll IDENTITY --dir SSL --ca CA` plus `extra`, polling fast unless `extra` says otherwise.
fn enroll_with(ca: &str, ssl_dir: &Path, identity: &str, extra: &[&str]) -> Output {
    let ssl = ssl_dir.display().to_string();
    let mut args = vec![identity, "--dir", &ssl, "--ca", ca];
    for (flag, value) in [("--poll-interval", "100ms"), ("--max-wait", "60s")] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    enroll(&args)
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn succeeded(output: &Output) -> (String, String) {
    let (stdout, stderr) = text(output);
    assert!(
        output.status.success(),
        "enroll failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

fn failed(output: &Output) -> String {
    let (stdout, stderr) = text(output);
    assert!(
        !output.status.success(),
        "enroll succeeded:\n{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("BEGIN"), "PEM in the error:\n{stderr}");
    format!("{stdout}{stderr}")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn temp() -> TempDir {
    tempfile::Builder::new()
        .prefix("enroll-")
        .tempdir()
        .expect("temp dir")
}

struct Files {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn files(ssl: &Path, identity: &str) -> Files {
    Files {
        ca: ssl.join("certs/ca.pem"),
        cert: ssl.join(format!("certs/{identity}.pem")),
        key: ssl.join(format!("private_keys/{identity}.pem")),
    }
}

/// A relay whose poller and receiver both reach `nats` with `tls: {scheme: puppet}`.
fn relay_over_puppet_tls(nats: &NatsServer, ssl: &Path, identity: &str) {
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("app1", &target.url())])
        .extra(&format!(
            "tls:\n  scheme: puppet\n  identity: {identity}\n  ssl_dir: {:?}\n",
            ssl.display().to_string()
        ));
    let mut relay = Relay::start_config(&config);
    promrelay_tests::relay::wait_up(&pushgateway, &mut relay, "app", 1.0, ARRIVAL);
}

/// nats-server with TLS, `verify: true`, trusting `ca`.
fn tls_nats(ca: &Path, cert: &Path, key: &Path) -> NatsServer {
    NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n  timeout: 5\n}}\n",
        cert.display().to_string(),
        key.display().to_string(),
        ca.display().to_string()
    ))
}

#[test]
fn enroll_waits_for_the_signature_then_stores_a_checked_set_with_tight_modes() {
    let ca = PuppetCa::start(Signing::AfterPolls(3));
    let dir = temp();
    let ssl = dir.path().join("ssl");
    let (stdout, stderr) = succeeded(&enroll_with(&ca.address(), &ssl, IDENTITY, &[]));

    for attempt in 1..=3 {
        let line = format!("waiting for the CA to sign {IDENTITY} (try {attempt}, next in 100ms)");
        assert!(stdout.contains(&line), "{line:?} not in:\n{stdout}");
    }
    assert!(!stdout.contains("(try 4,"), "{stdout}");
    assert_eq!(ca.polls(IDENTITY), 4);
    assert!(
        stdout.contains(&format!("SHA-256 fingerprint {}", ca.ca_fingerprint())),
        "fingerprint not printed:\n{stdout}"
    );
    assert!(stderr.contains("trusted on first use"), "{stderr}");
    assert!(
        stdout.contains(&format!("tls: {{scheme: puppet, identity: {IDENTITY}")),
        "{stdout}"
    );

    let files = files(&ssl, IDENTITY);
    assert_eq!(mode(&ssl.join("private_keys")), 0o750);
    assert_eq!(mode(&ssl.join("certs")), 0o755);
    assert_eq!(mode(&ssl.join("certificate_requests")), 0o755);
    assert_eq!(
        mode(&files.key) & 0o137,
        0,
        "key mode {:o}",
        mode(&files.key)
    );
    assert_eq!(mode(&files.cert) & 0o022, 0);
    assert_eq!(
        std::fs::read_to_string(&files.ca).expect("ca.pem"),
        ca.ca_pem()
    );
    let signed = ca.signed(IDENTITY).expect("the CA signed");
    assert_eq!(
        certificates(&std::fs::read_to_string(&files.cert).expect("certificate")),
        certificates(&signed)
    );
    let key = std::fs::read_to_string(&files.key).expect("key");
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 key");
    let request = std::fs::read_to_string(ssl.join(format!("certificate_requests/{IDENTITY}.pem")))
        .expect("CSR");
    assert_eq!(Some(request), ca.request(IDENTITY));

    // A complete set is never replaced.
    let before = std::fs::read(&files.cert).expect("certificate");
    let output = failed(&enroll_with(&ca.address(), &ssl, IDENTITY, &[]));
    assert!(output.contains("already enrolled"), "{output}");
    assert_eq!(std::fs::read(&files.cert).expect("certificate"), before);
    assert_eq!(ca.submissions(IDENTITY), 1);
}

#[test]
fn a_pinned_fingerprint_in_any_spelling_is_accepted_without_a_trust_warning() {
    let ca = PuppetCa::start(Signing::AfterPolls(0));
    let dir = temp();
    let pin = ca.ca_fingerprint().replace(':', "").to_ascii_lowercase();
    let (stdout, stderr) = succeeded(&enroll_with(
        &ca.address(),
        dir.path(),
        IDENTITY,
        &["--ca-fingerprint", &pin],
    ));
    assert!(stdout.contains("matches --ca-fingerprint"), "{stdout}");
    assert!(!stderr.contains("trusted on first use"), "{stderr}");
    assert!(files(dir.path(), IDENTITY).cert.is_file());
}

#[test]
fn a_wrong_pin_fails_and_writes_nothing() {
    let ca = PuppetCa::start(Signing::AfterPolls(0));
    let dir = temp();
    let ssl = dir.path().join("ssl");
    let wrong = "AB:".repeat(31) + "AB";
    let output = failed(&enroll_with(
        &ca.address(),
        &ssl,
        IDENTITY,
        &["--ca-fingerprint", &wrong],
    ));
    assert!(
        output.contains("does not match --ca-fingerprint") && output.contains(&ca.ca_fingerprint()),
        "{output}"
    );
    assert!(!ssl.exists(), "nothing may be written");
    assert_eq!(ca.submissions(IDENTITY), 0);
}

#[test]
fn an_upper_case_or_path_like_identity_is_refused_before_anything_is_written() {
    let ca = PuppetCa::start(Signing::AfterPolls(0));
    let dir = temp();
    let ssl = dir.path().join("ssl");
    let output = failed(&enroll_with(&ca.address(), &ssl, "Site1.example.net", &[]));
    assert!(
        output.contains("Certificate names must be lower case")
            && output.contains("site1.example.net"),
        "{output}"
    );
    let output = failed(&enroll_with(&ca.address(), &ssl, "../evil", &[]));
    assert!(output.contains("without '/'"), "{output}");
    assert!(!ssl.exists(), "nothing may be written");
    assert_eq!(ca.submissions("Site1.example.net"), 0);
    assert_eq!(ca.polls("Site1.example.net"), 0);
}

#[test]
fn a_ca_that_does_not_sign_in_time_leaves_a_pending_request_that_a_rerun_completes() {
    let ca = PuppetCa::start(Signing::Never);
    let dir = temp();
    let ssl = dir.path().join("ssl");
    let output = failed(&enroll_with(
        &ca.address(),
        &ssl,
        IDENTITY,
        &["--max-wait", "1s", "--poll-interval", "200ms"],
    ));
    assert!(output.contains("still pending"), "{output}");
    assert!(
        output.contains(&format!("puppetserver ca sign --certname {IDENTITY}")),
        "{output}"
    );
    let files = files(&ssl, IDENTITY);
    assert!(!files.cert.exists());
    let key = std::fs::read(&files.key).expect("the key stays for the rerun");

    // As `puppet agent --waitforcert` does: the rerun reuses the key; the CA already has the CSR.
    ca.set_signing(Signing::AfterPolls(0));
    let (stdout, _) = succeeded(&enroll_with(&ca.address(), &ssl, IDENTITY, &[]));
    assert!(stdout.contains("reusing the private key"), "{stdout}");
    assert!(
        stdout.contains("already has a requested certificate"),
        "{stdout}"
    );
    assert_eq!(std::fs::read(&files.key).expect("key"), key);
    assert!(files.cert.is_file());
    assert_eq!(ca.submissions(IDENTITY), 2);
}

#[test]
fn a_certificate_the_ca_signed_for_another_key_is_refused_with_the_clean_command() {
    let ca = PuppetCa::start(Signing::AfterPolls(0));
    let dir = temp();
    let ssl = dir.path().join("ssl");
    succeeded(&enroll_with(&ca.address(), &ssl, IDENTITY, &[]));
    // The key is lost (and so the certificate is useless): a new key meets the old certificate.
    let files = files(&ssl, IDENTITY);
    std::fs::remove_file(&files.cert).expect("remove the certificate");
    std::fs::remove_file(&files.key).expect("remove the key");
    let output = failed(&enroll_with(&ca.address(), &ssl, IDENTITY, &[]));
    assert!(
        output.contains("already has a signed certificate"),
        "{output}"
    );
    assert!(
        output.contains(&format!("puppetserver ca clean --certname {IDENTITY}")),
        "{output}"
    );
    assert!(
        !files.cert.exists(),
        "a certificate for another key is never stored"
    );
}

#[test]
fn enrolled_files_carry_a_relay_over_tls_with_scheme_puppet() {
    let ca = PuppetCa::start(Signing::AfterPolls(1));
    let dir = temp();
    let ssl = dir.path().join("ssl");
    succeeded(&enroll_with(&ca.address(), &ssl, IDENTITY, &[]));
    let server = ca.leaf_files("nats-server", true);
    let nats = tls_nats(&ca.ca_path(), &server.cert, &server.key);
    relay_over_puppet_tls(&nats, &ssl, IDENTITY);
}

/// The slow one: a real puppetserver 7.9 CA, signed through its API as an operator would.
#[test]
fn a_real_puppetserver_signs_and_the_enrolled_files_connect_to_nats() {
    if !puppetserver::installed() {
        if std::env::var_os("PROMRELAY_REQUIRE_PUPPETSERVER").is_some() {
            panic!("puppetserver is not installed, and PROMRELAY_REQUIRE_PUPPETSERVER is set");
        }
        eprintln!("SKIPPED: puppetserver not installed (apt-get install puppetserver)");
        return;
    }
    let start = Instant::now();
    // Building the binary (when PROMRELAY_BIN is not given) overlaps the JVM's start.
    let binary = std::thread::spawn(relay_binary);
    let server = PuppetServer::start().expect("start puppetserver");
    eprintln!("puppetserver answered after {:?}", start.elapsed());
    let binary = binary.join().expect("build promrelay");

    let dir = temp();
    let ssl = dir.path().join("ssl");
    let args: Vec<String> = [
        "enroll",
        IDENTITY,
        "--dir",
        &ssl.display().to_string(),
        "--ca",
        &server.address(),
        "--poll-interval",
        "200ms",
        "--max-wait",
        "120s",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let mut enrolling = ServerProcess::spawn(
        "promrelay enroll",
        binary,
        &args,
        &[],
        dir.path().join("enroll.log"),
    )
    .expect("start promrelay enroll");
    let state = poll_until_ok(ARRIVAL, "the CSR to reach puppetserver", || {
        enrolling.ensure_running()?;
        server
            .certificate_state(IDENTITY)?
            .ok_or_else(|| anyhow::anyhow!("no request yet"))
    });
    assert_eq!(state, "requested");
    eprintln!("request pending after {:?}", start.elapsed());
    server.sign(IDENTITY).expect("sign the request");
    let status = poll_until(ARRIVAL, "promrelay enroll to finish", || {
        enrolling.try_exit()
    });
    let log = enrolling.log();
    assert!(status.success(), "enroll failed ({status}):\n{log}");
    assert!(
        log.contains(&format!("waiting for the CA to sign {IDENTITY} (try 1,")),
        "{log}"
    );
    assert_eq!(
        server.certificate_state(IDENTITY).expect("status"),
        Some("signed".into())
    );
    let files = files(&ssl, IDENTITY);
    assert_eq!(
        std::fs::read(&files.ca).expect("ca.pem"),
        std::fs::read(server.ssl_dir().join("certs/ca.pem")).expect("the server's ca.pem")
    );
    eprintln!("enrolled after {:?}", start.elapsed());

    // The server's own certificate is for localhost and 127.0.0.1, issued by the same CA.
    let server_ssl = server.ssl_dir();
    let nats = tls_nats(
        &server_ssl.join("certs/ca.pem"),
        &server_ssl.join(format!("certs/{}.pem", puppetserver::SERVER_NAME)),
        &server_ssl.join(format!("private_keys/{}.pem", puppetserver::SERVER_NAME)),
    );
    relay_over_puppet_tls(&nats, &ssl, IDENTITY);
    eprintln!("relayed after {:?}", start.elapsed());
}

#[test]
fn with_the_relay_config_identity_and_dir_come_from_its_puppet_tls_stanza() {
    let ca = PuppetCa::start(Signing::AfterPolls(1));
    let dir = temp();
    let ssl = dir.path().join("from-config");
    let config = dir.path().join("promrelay.yaml");
    std::fs::write(
        &config,
        format!(
            "identity: site1\nscrape_interval: 10s\ntls:\n  scheme: puppet\n  identity: {IDENTITY}\n  ssl_dir: {:?}\npoller_stream:\n  cluster_id: x\n  urls: nats://127.0.0.1:4222\n  topic: p\njobs:\n  app:\n    targets: [{{url: \"http://127.0.0.1:9100/metrics\"}}]\n",
            ssl.display().to_string()
        ),
    )
    .expect("write the config");
    let config = config.display().to_string();
    let (stdout, _) = succeeded(&enroll(&[
        "--config",
        &config,
        "--ca",
        &ca.address(),
        "--poll-interval",
        "100ms",
    ]));
    let enrolled = files(&ssl, IDENTITY);
    for file in [&enrolled.ca, &enrolled.cert, &enrolled.key] {
        assert!(
            file.exists(),
            "{} missing; enroll said:\n{stdout}",
            file.display()
        );
    }
    // Without --dir and without a config to take it from, enroll says what it needs.
    let output = failed(&enroll(&[IDENTITY, "--ca", &ca.address()]));
    assert!(output.contains("--dir"), "{output}");
}
