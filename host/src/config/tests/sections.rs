//! Sections: TLS, management, filters, jobs, HTTP client settings, NATS credentials, YAML
//! features, warnings.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

#[test]
fn top_level_tls_applies_to_sections_without_their_own() {
    let text = with(
        "\
tls:
  scheme: puppet
  identity: site1.example.net
management:
  brokers: nats://127.0.0.1:4222
",
    )
    .replace(
        "  cluster_id: central\n",
        "  cluster_id: central\n  tls:\n    scheme: file\n    ca: /etc/ca.pem\n    cert: /etc/c.pem\n    key: /etc/k.pem\n",
    );
    let config = load_text(&text);
    let top = config.tls.clone().expect("top-level tls");
    assert_eq!(top.scheme(), TlsScheme::Puppet);
    assert_eq!(
        top.files(),
        TlsFiles {
            ca: PathBuf::from("/etc/puppetlabs/puppet/ssl/certs/ca.pem"),
            cert: PathBuf::from("/etc/puppetlabs/puppet/ssl/certs/site1.example.net.pem"),
            key: PathBuf::from("/etc/puppetlabs/puppet/ssl/private_keys/site1.example.net.pem"),
        }
    );
    let poller = config.poller_stream.as_ref().expect("poller_stream");
    assert_eq!(poller.tls.as_ref(), Some(&top), "copied into poller_stream");
    let management = config.management.as_ref().expect("management");
    assert_eq!(
        management.tls.as_ref(),
        Some(&top),
        "copied into management"
    );
    let receiver = config.receiver_stream.as_ref().expect("receiver_stream");
    let own = receiver.tls.as_ref().expect("receiver's own tls");
    assert_eq!(own.scheme(), TlsScheme::Manual);
    assert_eq!(own.files().ca, PathBuf::from("/etc/ca.pem"));
    // The TLS identity defaults to the config's identity.
    assert_eq!(own.identity, config.identity);

    let unsupported: Vec<String> = config
        .unsupported()
        .iter()
        .map(|problem| problem.key.clone())
        .collect();
    assert!(unsupported.is_empty(), "{unsupported:?}");
}

#[test]
fn a_stream_tls_without_a_top_level_one_is_supported() {
    let text = BASE.replace(
        "  cluster_id: site\n",
        "  cluster_id: site\n  tls: { scheme: puppet, ssl_dir: /ssl }\n",
    );
    let config = load_text(&text);
    let keys: Vec<String> = config.unsupported().into_iter().map(|p| p.key).collect();
    assert!(keys.is_empty(), "{keys:?}");
}

#[test]
fn management_section_is_parsed() {
    let config = load_text(&with(
        "\
management:
  name: promrelay_dc1
  brokers: 'nats://127.0.0.1:4222,nats://127.0.0.1:4223'
  logfile: /var/log/mgmt.log
  loglevel: warn
  token: s3cret
  auth:
    full: ['^ops\\..+$']
    read_only:
      - '.+\\.monitoring$'
      - 'a{1,3}'
",
    ));
    let management = config.management.expect("management");
    assert_eq!(management.name, "promrelay_dc1");
    assert_eq!(management.brokers.len(), 2);
    assert_eq!(management.loglevel, LogLevel::Warn);
    assert_eq!(management.auth.full, vec!["^ops\\..+$".to_string()]);
    assert_eq!(management.auth.read_only.len(), 2);
    assert!(!management.auth.insecure);
    let token = management.token.expect("token");
    assert_eq!(token.expose(), "s3cret");
    assert_eq!(format!("{token:?}"), "<secret>");
}

#[test]
fn filters_are_parsed_with_defaults_and_json_config() {
    let text = "\
scrape_interval: 60s
filters:
  - name: site-relabel
    module: /etc/promrelay/filters/relabel.wasm
    on_error: pass
    limits: { time: 20ms, memory: 32MiB }
    config:
      relabel_configs:
        - source_labels: [__name__]
          regex: go_.*
          action: drop
        - target_label: site
          replacement: '1'
          modulus: 8
          keep: true
          none: ~
          ratio: 0.5
          tagged: !!str 8
          quoted: '8'
poller_stream:
  cluster_id: site
  urls: nats://127.0.0.1:4222
jobs:
  node:
    filters:
      - name: drop
        module: drop.wasm
    targets:
      - url: http://127.0.0.1:9100/metrics
";
    let config = load_text(text);
    assert_eq!(config.filters.len(), 1);
    let filter = &config.filters[0];
    assert_eq!(filter.name, "site-relabel");
    assert_eq!(
        filter.module,
        PathBuf::from("/etc/promrelay/filters/relabel.wasm")
    );
    assert_eq!(filter.on_error, OnError::Pass);
    assert_eq!(
        filter.limits,
        FilterLimits {
            time: Duration::from_millis(20),
            memory: 32 << 20
        }
    );
    assert_eq!(
        filter.config,
        serde_json::json!({
            "relabel_configs": [
                {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"},
                {"target_label": "site", "replacement": "1", "modulus": 8, "keep": true,
                 "none": null, "ratio": 0.5, "tagged": "8", "quoted": "8"},
            ]
        })
    );
    let job_filter = &config.jobs[0].filters[0];
    assert_eq!(job_filter.name, "drop");
    assert_eq!(job_filter.on_error, OnError::Drop);
    assert_eq!(job_filter.limits, FilterLimits::default());
    assert_eq!(job_filter.config, serde_json::json!({}));
}

#[test]
fn jobs_inherit_and_override_scrape_settings() {
    let text = "\
scrape_interval: 1m
scrape_timeout: 30s
scrape_body_limit: 1MiB
poller_stream:
  cluster_id: site
  urls: nats://127.0.0.1:4222
jobs:
  inherits:
    targets: [http://127.0.0.1:9100/metrics]
  fast:
    scrape_interval: 15s
    targets: [https://127.0.0.1/metrics]
  own:
    scrape_interval: 2m
    scrape_timeout: 90s
    scrape_body_limit: 10MB
    targets: ['http://[::1]:9100/metrics']
";
    let config = load_text(text);
    let summary: Vec<(&str, u64, u64, u64, &str)> = config
        .jobs
        .iter()
        .map(|job| {
            (
                job.name.as_str(),
                job.scrape_interval.as_secs(),
                job.scrape_timeout.as_secs(),
                job.scrape_body_limit,
                job.targets[0].name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("inherits", 60, 30, 1 << 20, "127.0.0.1:9100"),
            ("fast", 15, 15, 1 << 20, "127.0.0.1:443"),
            ("own", 120, 90, 10_000_000, "[::1]:9100"),
        ],
        "file order kept, timeout capped to the job's interval, default port by scheme"
    );
    assert_eq!(
        config.describe_jobs(),
        "inherits (1 targets), fast (1 targets), own (1 targets)"
    );
}

#[test]
fn default_timeout_is_capped_to_the_interval() {
    let config = load_text(&BASE.replace("scrape_interval: 60s", "scrape_interval: 5s"));
    assert_eq!(config.scrape_timeout, Duration::from_secs(5));
    assert_eq!(config.jobs[0].scrape_timeout, Duration::from_secs(5));
}

#[test]
fn http_client_settings_use_prometheus_key_names() {
    let text = BASE.replace(
        "    targets:\n",
        concat!(
            "    tls_config:\n",
            "      ca_file: ca.pem\n",
            "      cert_file: /c.pem\n",
            "      key_file: /k.pem\n",
            "      server_name: node.example.net\n",
            "      insecure_skip_verify: false\n",
            "    authorization:\n",
            "      credentials_file: /token\n",
            "    targets:\n",
        ),
    ) + concat!(
        "  other:\n",
        "    basic_auth:\n",
        "      username: prometheus\n",
        "      password: hunter2\n",
        "    targets: [http://127.0.0.1:9101/metrics]\n",
    );
    let config = load_text(&text);
    let http = &config.jobs[0].http;
    let tls = http.tls.as_ref().expect("tls_config");
    assert_eq!(
        tls.ca_file,
        Some(PathBuf::from("ca.pem")),
        "parse keeps relative paths"
    );
    assert_eq!(tls.server_name.as_deref(), Some("node.example.net"));
    let authorization = http.authorization.as_ref().expect("authorization");
    assert_eq!(authorization.kind, "Bearer");
    assert_eq!(
        authorization.credentials,
        SecretSource::File("/token".into())
    );
    let basic = config.jobs[1].http.basic_auth.as_ref().expect("basic_auth");
    assert_eq!(basic.username, "prometheus");
    assert_eq!(
        basic.password,
        Some(SecretSource::Inline(Secret::new("hunter2")))
    );
    assert!(
        !format!("{config:?}").contains("hunter2"),
        "secrets never in Debug"
    );
}

#[test]
fn nats_credentials_are_parsed() {
    let cases: &[(&str, NatsAuth)] = &[
        (
            "  user: relay\n  password: pw\n",
            NatsAuth::UserPassword {
                user: "relay".into(),
                password: Secret::new("pw"),
            },
        ),
        ("  token: tok\n", NatsAuth::Token(Secret::new("tok"))),
        (
            "  nkey: /etc/relay.nk\n",
            NatsAuth::NkeySeedFile("/etc/relay.nk".into()),
        ),
        (
            "  creds: /etc/relay.creds\n",
            NatsAuth::CredsFile("/etc/relay.creds".into()),
        ),
    ];
    for (extra, expected) in cases {
        let text = BASE.replace(
            "  cluster_id: site\n",
            &format!("  cluster_id: site\n{extra}"),
        );
        let config = load_text(&text);
        assert_eq!(
            &config.poller_stream.expect("poller_stream").auth,
            expected,
            "{extra}"
        );
    }
}

#[test]
fn yaml_features_and_syntax_errors() {
    // Anchors, aliases and merge keys work; `!!str` and quotes keep strings.
    let text = "\
scrape_interval: 60s
identity: !!str 1234
poller_stream: &stream
  cluster_id: site
  urls: nats://127.0.0.1:4222
receiver_stream:
  <<: *stream
  cluster_id: central
  client_id: '0042'
push_gateway:
  url: http://127.0.0.1:9091
jobs:
  node:
    targets: [http://127.0.0.1:9100/metrics]
";
    let config = load_text(text);
    assert_eq!(config.identity, "1234");
    let receiver = config.receiver_stream.expect("receiver_stream");
    assert_eq!(receiver.stream, "central");
    assert_eq!(receiver.urls, vec!["nats://127.0.0.1:4222".to_string()]);
    assert_eq!(receiver.client_id, "0042");

    // A duplicate key does not hide the other problems.
    let duplicate = with("scrape_interval: soon\nno_such_key: 1\n");
    let problems = problems_of(&duplicate);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(problems[0].key, "scrape_interval");
    assert_eq!(problems[0].line, Some(14));
    assert!(problems[0]
        .message
        .contains("duplicate key \"scrape_interval\" (first at line 1)"));
    assert_eq!(problems[1].key, "no_such_key");

    let nested = BASE.replace(
        "  cluster_id: site\n",
        "  cluster_id: site\n  cluster_id: again\n",
    );
    let problems = problems_of(&nested);
    assert_eq!(problems[0].key, "poller_stream.cluster_id", "{problems:#?}");
    assert_eq!(problems[0].line, Some(4));

    let broken = "scrape_interval: 60s\njobs:\n  node: [unclosed\n";
    let problems = problems_of(broken);
    assert!(
        problems[0].message.starts_with("YAML syntax:"),
        "{problems:#?}"
    );
    assert!(problems[0].line.is_some());

    let two_documents = format!("{BASE}---\nscrape_interval: 1s\n");
    let problems = problems_of(&two_documents);
    assert!(problems[0].message.contains("only one YAML document"));

    let problems = problems_of("");
    assert_eq!(problems[0].key, "scrape_interval");
}

#[test]
fn warnings_point_at_sections_without_effect_and_weak_security() {
    assert!(load_text(ORIGINAL).warnings().is_empty());

    let text = "\
scrape_interval: 60s
poller_stream:
  cluster_id: site
  urls: nats://127.0.0.1:4222
receiver_stream:
  cluster_id: central
  urls: nats://127.0.0.1:4223
remote_write:
  - url: http://127.0.0.1:9090/api/v1/write
    authorization: { credentials: token }
    tls_config: { insecure_skip_verify: true }
management:
  auth: { insecure: true }
max_age: 1h
";
    let keys: Vec<String> = load_text(text)
        .warnings()
        .into_iter()
        .map(|warning| warning.key)
        .collect();
    assert_eq!(
        keys,
        vec![
            "poller_stream",
            "receiver_stream.retention",
            "remote_write[0]",
            "remote_write[0].tls_config.insecure_skip_verify",
            "management.auth.insecure",
        ]
    );
}
