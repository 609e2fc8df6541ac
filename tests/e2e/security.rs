//! Security and operations (issue 4) end to end: TLS on NATS connections (manual and Puppet
//! schemes, top level and per connection) against a nats-server with `verify: true`, the start
//! errors for bad TLS files, NATS credentials, pause/resume over HTTP and lifecycle events.
//!
//! Certificates are made inside each test with `rcgen`: a CA and leaves it signs (a self-signed
//! leaf is refused by webpki as CaUsedAsEndEntity).

use std::path::Path;
use std::time::Duration;

use promrelay_tests::pki::{Leaf, Pki};
use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{Behaviour, NatsServer, Pushgateway, Relay, RelayConfig, TargetServer};

/// Long enough for a debug-built relay to start and relay on a loaded two-core machine.
const ARRIVAL: Duration = Duration::from_secs(90);

/// nats-server with TLS and client verification by `pki`'s CA.
fn tls_nats(pki: &Pki) -> NatsServer {
    let server = pki.leaf("nats-server", true, false);
    NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n  timeout: 5\n}}\n",
        server.cert.display().to_string(),
        server.key.display().to_string(),
        pki.ca_path().display().to_string()
    ))
}

fn manual_tls(indent: &str, ca: &Path, leaf: &Leaf) -> String {
    format!(
        "{indent}tls:\n{indent}  scheme: manual\n{indent}  ca: {:?}\n{indent}  cert: {:?}\n{indent}  key: {:?}\n",
        ca.display().to_string(),
        leaf.cert.display().to_string(),
        leaf.key.display().to_string()
    )
}

/// Puts `yaml` (already indented by two) at the start of `section` (`poller_stream:`...).
fn into_section(config: &str, section: &str, yaml: &str) -> String {
    let header = format!("{section}:\n");
    assert!(config.contains(&header), "{section} in the config");
    config.replacen(&header, &format!("{header}{yaml}"), 1)
}

/// Waits until the target's `up 1` arrives in the Pushgateway through the relay.
fn wait_relayed(pushgateway: &Pushgateway, relay: &mut Relay) {
    promrelay_tests::relay::wait_up(pushgateway, relay, "app", 1.0, ARRIVAL);
}

/// Waits for the relay to exit with a failure and returns its log.
fn wait_failed(relay: &mut Relay) -> String {
    let status = relay
        .wait_exit(ARRIVAL)
        .unwrap_or_else(|| panic!("the relay kept running:\n{}", relay.log()));
    assert!(!status.success(), "the relay exited 0:\n{}", relay.log());
    let log = relay.log();
    assert!(
        !log.contains("PRIVATE KEY") && !log.contains("BEGIN"),
        "key material in the log:\n{log}"
    );
    log
}

fn pipeline(nats: &NatsServer, pushgateway: &Pushgateway, target: &TargetServer) -> RelayConfig {
    RelayConfig::pipeline(&nats.url(), &pushgateway.url()).job("app", &[("app1", &target.url())])
}

#[test]
fn manual_tls_at_the_top_level_relays_end_to_end() {
    let pki = Pki::new("site");
    let nats = tls_nats(&pki);
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let client = pki.leaf("site1", false, false);
    let config =
        pipeline(&nats, &pushgateway, &target).extra(&manual_tls("", &pki.ca_path(), &client));
    let mut relay = Relay::start_config(&config);
    wait_relayed(&pushgateway, &mut relay);
}

#[test]
fn puppet_and_manual_tls_per_connection_relay_end_to_end() {
    let pki = Pki::new("site");
    let nats = tls_nats(&pki);
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let ssl_dir = pki.puppet_ssl_dir("site1.example.net");
    let receiver = pki.leaf("receiver", false, false);
    // A top-level stanza with a missing file proves each section's own replaces it.
    let broken = Leaf {
        cert: pki.dir().join("absent.pem"),
        key: pki.dir().join("absent-key.pem"),
    };
    let yaml = pipeline(&nats, &pushgateway, &target)
        .extra(&manual_tls("", &pki.ca_path(), &broken))
        .to_yaml();
    let yaml = into_section(
        &yaml,
        "poller_stream",
        &format!(
            "  tls:\n    scheme: puppet\n    identity: site1.example.net\n    ssl_dir: {:?}\n",
            ssl_dir.display().to_string()
        ),
    );
    let yaml = into_section(
        &yaml,
        "receiver_stream",
        &manual_tls("  ", &pki.ca_path(), &receiver),
    );
    let mut relay = Relay::start(&yaml);
    wait_relayed(&pushgateway, &mut relay);
}

#[test]
fn a_wrong_ca_fails_naming_the_ca_file() {
    let pki = Pki::new("site");
    let other = Pki::new("other");
    let nats = tls_nats(&pki);
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let client = pki.leaf("site1", false, false);
    let config =
        pipeline(&nats, &pushgateway, &target).extra(&manual_tls("", &other.ca_path(), &client));
    let mut relay = Relay::start_config(&config);
    let log = wait_failed(&mut relay);
    let expected = format!(
        "the server's certificate is not accepted with the CA in {}",
        other.ca_path().display()
    );
    assert!(log.contains(&expected), "{expected:?} not in:\n{log}");
}

#[test]
fn a_client_certificate_of_another_ca_is_rejected_by_the_server() {
    let pki = Pki::new("site");
    let other = Pki::new("other");
    let nats = tls_nats(&pki);
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let client = other.leaf("site1", false, false);
    let config =
        pipeline(&nats, &pushgateway, &target).extra(&manual_tls("", &pki.ca_path(), &client));
    let mut relay = Relay::start_config(&config);
    let log = wait_failed(&mut relay);
    let expected = format!(
        "the server rejected the client certificate {}",
        client.cert.display()
    );
    assert!(log.contains(&expected), "{expected:?} not in:\n{log}");
}

#[test]
fn a_missing_key_file_fails_at_start_naming_it() {
    let pki = Pki::new("site");
    let client = pki.leaf("site1", false, false);
    let missing = Leaf {
        cert: client.cert.clone(),
        key: pki.dir().join("no-such-key.pem"),
    };
    // No server: the files are checked before any connection.
    let config = RelayConfig::pipeline("nats://127.0.0.1:1", "http://127.0.0.1:1")
        .job("app", &[("app1", "http://127.0.0.1:1/metrics")])
        .extra(&manual_tls("", &pki.ca_path(), &missing));
    let mut relay = Relay::start_config(&config);
    let log = wait_failed(&mut relay);
    let expected = format!(
        "poller_stream.tls: private key {}: cannot read: No such file or directory",
        missing.key.display()
    );
    assert!(log.contains(&expected), "{expected:?} not in:\n{log}");
}

#[test]
fn a_key_of_another_certificate_and_an_expired_certificate_fail_at_start() {
    let pki = Pki::new("site");
    let client = pki.leaf("site1", false, false);
    let stranger = pki.leaf("stranger", false, false);
    let expired = pki.leaf("old", false, true);
    let cases = [
        (
            Leaf {
                cert: client.cert.clone(),
                key: stranger.key.clone(),
            },
            format!(
                "private key {} does not belong to the certificate {}",
                stranger.key.display(),
                client.cert.display()
            ),
        ),
        (
            Leaf {
                cert: expired.cert.clone(),
                key: expired.key.clone(),
            },
            format!("certificate {} has expired", expired.cert.display()),
        ),
    ];
    for (leaf, expected) in cases {
        let config = RelayConfig::pipeline("nats://127.0.0.1:1", "http://127.0.0.1:1")
            .job("app", &[("app1", "http://127.0.0.1:1/metrics")])
            .extra(&manual_tls("", &pki.ca_path(), &leaf));
        let mut relay = Relay::start_config(&config);
        let log = wait_failed(&mut relay);
        assert!(log.contains(&expected), "{expected:?} not in:\n{log}");
    }
}

/// Inserts `yaml` (indented by two) into both stream sections.
fn into_both_streams(config: &RelayConfig, yaml: &str) -> String {
    let text = into_section(&config.to_yaml(), "poller_stream", yaml);
    into_section(&text, "receiver_stream", yaml)
}

#[test]
fn user_password_token_and_nkey_credentials_relay_end_to_end() {
    let user = nkeys::KeyPair::new_user();
    let seed_dir = tempfile::tempdir().expect("temp dir");
    let seed_file = seed_dir.path().join("relay.nk");
    std::fs::write(&seed_file, user.seed().expect("user seed")).expect("write the seed");
    let cases = [
        (
            "authorization {\n  user: relay\n  password: \"pw with spaces\"\n}\n".to_string(),
            "  user: relay\n  password: \"pw with spaces\"\n".to_string(),
        ),
        (
            "authorization {\n  token: \"t0ken\"\n}\n".to_string(),
            "  token: \"t0ken\"\n".to_string(),
        ),
        (
            format!(
                "authorization {{\n  users: [ {{ nkey: {} }} ]\n}}\n",
                user.public_key()
            ),
            format!("  nkey: {:?}\n", seed_file.display().to_string()),
        ),
    ];
    for (server, client) in cases {
        let nats = NatsServer::start_with_config(&server);
        let pushgateway = Pushgateway::start();
        let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
        let yaml = into_both_streams(&pipeline(&nats, &pushgateway, &target), &client);
        let mut relay = Relay::start(&yaml);
        wait_relayed(&pushgateway, &mut relay);
        assert!(
            !relay.log().contains("t0ken") && !relay.log().contains("pw with spaces"),
            "a secret in the log:\n{}",
            relay.log()
        );
    }
}

#[test]
fn a_wrong_password_fails_at_start_naming_the_user() {
    let nats =
        NatsServer::start_with_config("authorization {\n  user: relay\n  password: right\n}\n");
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let yaml = into_both_streams(
        &pipeline(&nats, &pushgateway, &target),
        "  user: relay\n  password: Xyzzy42\n",
    );
    let mut relay = Relay::start(&yaml);
    let log = wait_failed(&mut relay);
    let expected = "the server refused the credentials (user \"relay\" with a password)";
    assert!(log.contains(expected), "{expected:?} not in:\n{log}");
    assert!(!log.contains("Xyzzy42"), "the password in the log:\n{log}");
}

#[test]
fn check_config_reports_a_missing_tls_file() {
    let pki = Pki::new("site");
    let client = pki.leaf("site1", false, false);
    let missing = Leaf {
        cert: pki.dir().join("no-such-cert.pem"),
        key: client.key.clone(),
    };
    let config = RelayConfig::pipeline("nats://127.0.0.1:1", "http://127.0.0.1:1")
        .job("app", &[("app1", "http://127.0.0.1:1/metrics")])
        .extra(&manual_tls("", &pki.ca_path(), &missing));
    let (ok, text) = promrelay_tests::relay::check_config(&config.to_yaml());
    assert!(!ok, "{text}");
    let expected = format!(
        "poller_stream.tls: certificate {}: cannot read",
        missing.cert.display()
    );
    assert!(text.contains(&expected), "{expected:?} not in:\n{text}");
}

use promrelay_tests::nats_jwt::{Account, Operator, UserKind};

/// nats-server in operator (JWT) mode trusting `operator`, knowing `accounts`.
fn operator_nats(operator: &Operator, accounts: &[&Account]) -> NatsServer {
    NatsServer::start_with_config(&operator.server_config(accounts))
}

fn creds_yaml(path: &Path) -> String {
    format!("  creds: {:?}\n", path.display().to_string())
}

#[test]
fn a_creds_file_relays_end_to_end_against_an_operator_mode_server() {
    let operator = Operator::new("site-operator");
    let account = operator.account("relay", true);
    let nats = operator_nats(&operator, &[&account]);
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let creds = operator.write_creds("relay", &account.user_creds("relay", UserKind::Valid));
    let yaml = into_both_streams(&pipeline(&nats, &pushgateway, &target), &creds_yaml(&creds));
    let mut relay = Relay::start(&yaml);
    wait_relayed(&pushgateway, &mut relay);
    let log = relay.log();
    let text = std::fs::read_to_string(&creds).expect("read the creds file back");
    for secret in text
        .lines()
        .filter(|line| line.starts_with("SU") || line.starts_with("eyJ"))
    {
        assert!(!log.contains(secret), "creds material in the log:\n{log}");
    }
}

#[test]
fn refused_creds_files_fail_at_start_naming_the_file() {
    let operator = Operator::new("site-operator");
    let account = operator.account("relay", true);
    // Signed by the same operator but never given to the server: its users are unknown there.
    let stranger = operator.account("stranger", true);
    let nats = operator_nats(&operator, &[&account]);
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let cases = [
        ("stranger", stranger.user_creds("relay", UserKind::Valid)),
        ("expired", account.user_creds("relay", UserKind::Expired)),
        (
            "wrong-seed",
            account.user_creds("relay", UserKind::WrongSeed),
        ),
    ];
    for (name, text) in cases {
        let creds = operator.write_creds(name, &text);
        let yaml = into_both_streams(&pipeline(&nats, &pushgateway, &target), &creds_yaml(&creds));
        let mut relay = Relay::start(&yaml);
        let log = wait_failed(&mut relay);
        let expected = format!(
            "the server refused the credentials (the credentials file {})",
            creds.display()
        );
        assert!(
            log.contains(&expected),
            "{name}: {expected:?} not in:\n{log}"
        );
    }
}

#[test]
fn a_missing_or_unparsable_creds_file_fails_at_start_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such.creds");
    let garbage = dir.path().join("garbage.creds");
    std::fs::write(&garbage, "not a creds file\n").expect("write the garbage file");
    let cases = [
        (&missing, "No such file or directory"),
        (&garbage, "cannot parse user JWT from the credentials file"),
    ];
    for (path, reason) in cases {
        // No server: the file is read before any connection.
        let config = RelayConfig::pipeline("nats://127.0.0.1:1", "http://127.0.0.1:1")
            .job("app", &[("app1", "http://127.0.0.1:1/metrics")]);
        let yaml = into_both_streams(&config, &creds_yaml(path));
        let mut relay = Relay::start(&yaml);
        let log = wait_failed(&mut relay);
        let expected = format!("reading the NATS credentials file {}", path.display());
        assert!(log.contains(&expected), "{expected:?} not in:\n{log}");
        assert!(log.contains(reason), "{reason:?} not in:\n{log}");
    }
}

#[test]
fn the_originals_file_scheme_with_tls_urls_relays_end_to_end() {
    let pki = Pki::new("site");
    let nats = tls_nats(&pki);
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let client = pki.leaf("site1", false, false);
    let url = nats.url().replacen("nats://", "tls://", 1);
    let config = RelayConfig::pipeline(&url, &pushgateway.url())
        .job("app", &[("app1", &target.url())])
        .extra(&format!(
            "tls:\n  identity: site1\n  scheme: file\n  ca: {:?}\n  cert: {:?}\n  key: {:?}\n  cache: {:?}\n",
            pki.ca_path().display().to_string(),
            client.cert.display().to_string(),
            client.key.display().to_string(),
            pki.dir().join("cache").display().to_string()
        ));
    let mut relay = Relay::start_config(&config);
    wait_relayed(&pushgateway, &mut relay);
}
