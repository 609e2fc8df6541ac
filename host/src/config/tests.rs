//! Tests of the config module: the original's sample, every key's bad value, unknown keys,
//! several problems at once, and the value syntaxes. Table-driven where the cases are alike.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

const ORIGINAL: &str = include_str!("../../../tests/data/config/original.yaml");

fn load_text(text: &str) -> Config {
    match parse(text, "test.yaml") {
        Ok(config) => config,
        Err(error) => panic!("config should load:\n{error}"),
    }
}

fn problems_of(text: &str) -> Vec<Problem> {
    match parse(text, "test.yaml") {
        Ok(config) => panic!("config should not load: {config:#?}"),
        Err(error) => error.problems,
    }
}

#[test]
fn original_sample_loads_with_the_same_meaning() {
    let config = load_text(ORIGINAL);
    assert_eq!(config.log.level, LogLevel::Info);
    assert_eq!(
        config.log.file,
        Some(PathBuf::from("/var/log/prometheus-streams.log"))
    );
    assert_eq!(config.identity, "USDC1");
    assert_eq!(config.scrape_interval, Duration::from_secs(60));
    assert_eq!(config.scrape_timeout, Duration::from_secs(10));
    assert_eq!(config.scrape_body_limit, 16 * 1024 * 1024);
    assert_eq!(config.max_age, Some(Duration::from_secs(80)));
    assert_eq!(config.monitor_port, Some(10000));
    assert_eq!(config.outage_buffer, 64 * 1024 * 1024);

    let poller = config.poller_stream.as_ref().expect("poller_stream");
    assert_eq!(poller.stream, "dc1_stream");
    assert_eq!(poller.urls, vec!["nats://127.0.0.1:4222".to_string()]);
    assert_eq!(poller.topic, "prometheus");
    assert_eq!(poller.client_id, "");
    assert_eq!(poller.durable_name(), None);
    assert_eq!(poller.retention, Duration::from_secs(600));
    assert_eq!(poller.storage, Storage::File);
    assert_eq!(poller.replicas, 1);
    assert_eq!(poller.tls, None);
    assert_eq!(poller.auth, NatsAuth::None);

    let receiver = config.receiver_stream.as_ref().expect("receiver_stream");
    assert_eq!(receiver.stream, "global_stream");
    assert_eq!(receiver.urls, vec!["nats://127.0.0.1:4223".to_string()]);
    assert_eq!(receiver.durable_name(), Some("prometheus_receiver"));

    let push = config.push_gateway.as_ref().expect("push_gateway");
    assert_eq!(push.url.as_str(), "http://127.0.0.1:9091/");
    assert!(push.publisher_label);
    assert!(push.http.is_default());
    assert!(config.remote_write.is_empty());

    assert_eq!(config.jobs.len(), 1);
    let job = &config.jobs[0];
    assert_eq!(job.name, "choria");
    assert_eq!(job.scrape_interval, Duration::from_secs(60));
    assert_eq!(job.scrape_timeout, Duration::from_secs(10));
    let targets: Vec<(&str, &str)> = job
        .targets
        .iter()
        .map(|target| (target.name.as_str(), target.url.as_str()))
        .collect();
    assert_eq!(
        targets,
        vec![
            ("choria1", "http://127.0.0.1:8222/choria/prometheus"),
            ("choria2", "http://127.0.0.2:8222/choria/prometheus"),
        ]
    );
    assert!(config.filters.is_empty());
    assert_eq!(config.tls, None);
    assert_eq!(config.management, None);
    assert!(config.runs_poller());
    assert!(config.runs_receiver());
    assert!(config.unsupported().is_empty());
}

/// A minimal valid poller + receiver config; cases below append or replace keys.
const BASE: &str = "\
scrape_interval: 60s
poller_stream:
  cluster_id: site
  urls: nats://127.0.0.1:4222
receiver_stream:
  cluster_id: central
  urls: nats://127.0.0.1:4223
push_gateway:
  url: http://127.0.0.1:9091
jobs:
  node:
    targets:
      - url: http://127.0.0.1:9100/metrics
";

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn base_config_loads_with_defaults() {
    let config = load_text(BASE);
    assert_eq!(config.log.level, LogLevel::Warn);
    assert_eq!(config.log.file, None);
    assert!(!config.identity.is_empty());
    assert!(values::check_subject_token(&config.identity).is_ok());
    assert_eq!(config.max_age, None);
    assert_eq!(config.monitor_port, None);
    let poller = config.poller_stream.as_ref().expect("poller_stream");
    assert_eq!(poller.topic, "prometheus");
    assert_eq!(config.jobs[0].targets[0].name, "127.0.0.1:9100");
    assert!(
        !config
            .push_gateway
            .as_ref()
            .expect("push_gateway")
            .publisher_label
    );
}

/// (yaml, expected key, a fragment of the message, expected line)
const BAD_VALUES: &[(&str, &str, &str, usize)] = &[
    ("verbose: maybe\n", "verbose", "not a boolean", 14),
    ("debug: 2\n", "debug", "not a boolean", 14),
    ("logfile: ''\n", "logfile", "must not be empty", 14),
    (
        "identity: us.dc1\n",
        "identity",
        "cannot be used in a NATS subject",
        14,
    ),
    (
        "identity: 'a b'\n",
        "identity",
        "cannot be used in a NATS subject",
        14,
    ),
    (
        "scrape_timeout: 5x\n",
        "scrape_timeout",
        "\"5x\" is not a duration (use 10s, 1m30s or seconds)",
        14,
    ),
    (
        "scrape_timeout: 2m\n",
        "scrape_timeout",
        "longer than scrape_interval",
        14,
    ),
    (
        "scrape_body_limit: lots\n",
        "scrape_body_limit",
        "is not a size",
        14,
    ),
    (
        "scrape_body_limit: 0\n",
        "scrape_body_limit",
        "greater than zero",
        14,
    ),
    ("max_age: -5\n", "max_age", "is not a duration", 14),
    ("monitor_port: 70000\n", "monitor_port", "out of range", 14),
    (
        "monitor_port: http\n",
        "monitor_port",
        "not a whole number",
        14,
    ),
    (
        "outage_buffer: 12 parsecs\n",
        "outage_buffer",
        "is not a size",
        14,
    ),
    (
        "remote_write: http://x\n",
        "remote_write",
        "expected a list",
        14,
    ),
    (
        "remote_write:\n  - url: ftp://127.0.0.1/\n",
        "remote_write[0].url",
        "scheme must be http or https",
        15,
    ),
    (
        "remote_write:\n  - timeout: 5s\n",
        "remote_write[0].url",
        "is required",
        15,
    ),
    ("filters: relabel\n", "filters", "expected a list", 14),
    (
        "filters:\n  - name: a b\n    module: x.wasm\n",
        "filters[0].name",
        "letters, digits",
        15,
    ),
    (
        "filters:\n  - name: a\n",
        "filters[0].module",
        "is required",
        15,
    ),
    (
        "filters:\n  - name: a\n    module: x.wasm\n    on_error: ignore\n",
        "filters[0].on_error",
        "use pass, drop or fail",
        17,
    ),
    (
        "filters:\n  - name: a\n    module: x.wasm\n    limits: { time: forever }\n",
        "filters[0].limits.time",
        "not a duration",
        17,
    ),
    (
        "filters:\n  - name: a\n    module: x.wasm\n    limits: { memory: 1KiB }\n",
        "filters[0].limits.memory",
        "between 64KiB",
        17,
    ),
    (
        "filters:\n  - name: a\n    module: x.wasm\n  - name: a\n    module: y.wasm\n",
        "filters[1].name",
        "used twice",
        17,
    ),
    (
        "tls:\n  scheme: magic\n",
        "tls.scheme",
        "not a TLS scheme",
        15,
    ),
    ("tls:\n  ca: /ca.pem\n", "tls.scheme", "is required", 15),
    (
        "tls:\n  scheme: file\n  ca: /ca.pem\n  cert: /c.pem\n",
        "tls.key",
        "is required",
        15,
    ),
    (
        "tls:\n  scheme: puppet\n  cert: /c.pem\n",
        "tls.cert",
        "not used by scheme puppet",
        16,
    ),
    (
        "tls:\n  scheme: manual\n  ca: a\n  cert: b\n  key: c\n  ssl_dir: /x\n",
        "tls.ssl_dir",
        "not used by scheme manual",
        19,
    ),
    (
        "management:\n  auth:\n    full: ['(']\n",
        "management.auth.full",
        "not a regular expression",
        16,
    ),
    (
        "management:\n  loglevel: loud\n",
        "management.loglevel",
        "not a log level",
        15,
    ),
    (
        "management:\n  brokers: 'http://127.0.0.1:4222'\n",
        "management.brokers",
        "not a NATS URL",
        15,
    ),
    (
        "management:\n  auth:\n    insecure: sure\n",
        "management.auth.insecure",
        "not a boolean",
        16,
    ),
];

#[test]
fn each_bad_value_is_reported_with_its_key_and_line() {
    for (extra, key, fragment, line) in BAD_VALUES {
        let text = with(extra);
        let problems = match parse(&text, "test.yaml") {
            Ok(_) => panic!("{extra:?} should be refused"),
            Err(error) => error.problems,
        };
        let found = problems.iter().find(|problem| problem.key == *key);
        let Some(problem) = found else {
            panic!("{extra:?}: no problem names {key:?}; got {problems:#?}")
        };
        assert!(
            problem.message.contains(fragment),
            "{extra:?}: message {:?} lacks {fragment:?}",
            problem.message
        );
        assert_eq!(problem.line, Some(*line), "{extra:?}: {problem:?}");
    }
}

/// (yaml replacing BASE entirely, expected key, message fragment)
const BAD_SECTIONS: &[(&str, &str, &str)] = &[
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: a.b\n  urls: nats://127.0.0.1:4222\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.cluster_id",
        "not a valid JetStream name",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: 'my stream'\n  urls: nats://127.0.0.1:4222\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.cluster_id",
        "not a valid JetStream name",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  urls: nats://127.0.0.1:4222\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.cluster_id",
        "is required",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\n  topic: 'metrics.>'\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.topic",
        "not a valid subject prefix",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\n  topic: 'metrics.'\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.topic",
        "empty token",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: 'nats://127.0.0.1:4222, http://127.0.0.1:80'\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.urls",
        "not a NATS URL",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: []\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.urls",
        "at least one",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\n  storage: tape\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.storage",
        "use file or memory",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\n  replicas: 7\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.replicas",
        "out of range",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\n  retention: 0\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.retention",
        "greater than zero",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\n  user: me\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream.password",
        "is required",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\n  token: t\n  creds: /x.creds\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "poller_stream",
        "only one NATS authentication method",
    ),
    (
        "scrape_interval: 1m\nreceiver_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\n  client_id: 'a.b'\npush_gateway:\n  url: http://127.0.0.1:9091\n",
        "receiver_stream.client_id",
        "not a valid JetStream name",
    ),
    (
        "scrape_interval: 1m\nreceiver_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\npush_gateway:\n  url: 127.0.0.1:9091\n",
        "push_gateway.url",
        "",
    ),
    (
        "scrape_interval: 1m\nreceiver_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\npush_gateway:\n  publisher_label: true\n",
        "push_gateway.url",
        "is required",
    ),
    (
        "scrape_interval: 1m\nreceiver_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\npush_gateway:\n  url: http://127.0.0.1:9091\n  publisher_label: 'perhaps'\n",
        "push_gateway.publisher_label",
        "not a boolean",
    ),
    (
        "scrape_interval: 1m\nreceiver_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\npush_gateway:\n  url: http://127.0.0.1:9091\n  basic_auth: { username: u, password: p }\n  authorization: { credentials: t }\n",
        "push_gateway.authorization",
        "mutually exclusive",
    ),
    (
        "scrape_interval: 1m\nreceiver_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\npush_gateway:\n  url: http://127.0.0.1:9091\n  basic_auth: { username: u, password: p, password_file: /p }\n",
        "push_gateway.basic_auth.password_file",
        "mutually exclusive",
    ),
    (
        "scrape_interval: 1m\nreceiver_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\npush_gateway:\n  url: http://127.0.0.1:9091\n  authorization: { type: Bearer }\n",
        "push_gateway.authorization.credentials",
        "is required",
    ),
    (
        "scrape_interval: 1m\nreceiver_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\npush_gateway:\n  url: http://127.0.0.1:9091\n  tls_config: { cert_file: /c.pem }\n",
        "push_gateway.tls_config.key_file",
        "is required",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\njobs:\n  'a.b':\n    targets: [http://127.0.0.1:1/]\n",
        "jobs.a.b",
        "job name",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\njobs:\n  n:\n",
        "jobs.n",
        "needs targets",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\njobs:\n  n:\n    targets: []\n",
        "jobs.n.targets",
        "at least one target",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\njobs:\n  n:\n    scrape_interval: 10s\n    scrape_timeout: 20s\n    targets: [http://127.0.0.1:1/]\n",
        "jobs.n.scrape_timeout",
        "longer than the job's scrape_interval",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\njobs:\n  n:\n    targets:\n      - url: http://127.0.0.1:1/\n      - name: x\n        url: 'not a url'\n",
        "jobs.n.targets[1].url",
        "is not a URL",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\njobs:\n  n:\n    targets:\n      - url: http://127.0.0.1:80/a\n      - url: http://127.0.0.1/b\n",
        "jobs.n.targets[1]",
        "already used by target [0]",
    ),
    (
        "scrape_interval: 1m\nmonitor_port: 9999\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\njobs:\n  promrelay:\n    targets: [http://127.0.0.1:1/]\n",
        "jobs.promrelay",
        "reserved",
    ),
    (
        "scrape_interval: 1m\nfilters:\n  - name: f\n    module: f.wasm\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n    filters:\n      - name: f\n        module: g.wasm\n",
        "jobs.n.filters",
        "already used by the global chain",
    ),
    (
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\n  retention: 5m\nreceiver_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\npush_gateway:\n  url: http://127.0.0.1:9091\njobs:\n  n:\n    targets: [http://127.0.0.1:1/]\n",
        "receiver_stream",
        "differ in retention",
    ),
    ("scrape_interval: 1m\n", "", "runs nothing"),
    ("- a\n- b\n", "", "expected a mapping"),
];

#[test]
fn each_bad_section_is_reported_with_its_key() {
    for (text, key, fragment) in BAD_SECTIONS {
        let problems = match parse(text, "test.yaml") {
            Ok(_) => panic!("{text:?} should be refused"),
            Err(error) => error.problems,
        };
        assert!(
            problems
                .iter()
                .any(|problem| problem.key == *key && problem.message.contains(fragment)),
            "{text:?}: expected a problem at {key:?} containing {fragment:?}; got {problems:#?}"
        );
        assert!(
            problems.iter().all(|problem| problem.line.is_some()),
            "{text:?}: every problem has a line: {problems:#?}"
        );
    }
}

#[test]
fn unknown_keys_are_rejected_with_their_line_and_a_suggestion() {
    let text = with("scrape_intervall: 30s\n");
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "scrape_intervall");
    assert_eq!(problems[0].line, Some(14));
    assert!(problems[0].message.contains("unknown key"));
    assert!(problems[0]
        .message
        .contains("did you mean scrape_interval?"));

    let nested = BASE.replace(
        "  cluster_id: site\n",
        "  cluster_id: site\n  clusterid: x\n",
    );
    let problems = problems_of(&nested);
    assert_eq!(problems[0].key, "poller_stream.clusterid");
    assert_eq!(problems[0].line, Some(4));

    let in_target = BASE.replace(
        "      - url: http://127.0.0.1:9100/metrics\n",
        "      - url: http://127.0.0.1:9100/metrics\n        labels: {a: b}\n",
    );
    let problems = problems_of(&in_target);
    assert_eq!(problems[0].key, "jobs.node.targets[0].labels");
    assert_eq!(problems[0].line, Some(14));
}

#[test]
fn several_problems_are_reported_at_once_in_line_order() {
    let text = "\
verbose: loud
scrape_interval: 60s
scrape_timeout: 5x
bogus: 1
poller_stream:
  cluster_id: 'a b'
  urls: nats://127.0.0.1:4222
jobs:
  node:
    targets:
      - url: gopher://127.0.0.1/
";
    let error = parse(text, "promrelay.yaml").expect_err("five problems");
    let lines: Vec<Option<usize>> = error.problems.iter().map(|problem| problem.line).collect();
    assert_eq!(
        lines,
        vec![Some(1), Some(3), Some(4), Some(6), Some(11)],
        "{error}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains(
            "promrelay.yaml:3: scrape_timeout: \"5x\" is not a duration (use 10s, 1m30s or seconds)"
        ),
        "{shown}"
    );
    // The same text is shown in docs/config.md.
    assert_eq!(
        shown,
        r#"promrelay.yaml:1: verbose: "loud" is not a boolean (use true or false)
promrelay.yaml:3: scrape_timeout: "5x" is not a duration (use 10s, 1m30s or seconds)
promrelay.yaml:4: bogus: unknown key "bogus" at the top level
promrelay.yaml:6: poller_stream.cluster_id: "a b" is not a valid JetStream name: it contains ' ' (spaces, '.', '*', '>', '/' and '\' are not allowed)
promrelay.yaml:11: jobs.node.targets[0].url: "gopher://127.0.0.1/": the scheme must be http or https"#
    );
}

#[test]
fn scrape_interval_is_required_even_for_a_receiver() {
    let text = "\
receiver_stream:
  cluster_id: central
  urls: nats://127.0.0.1:4222
push_gateway:
  url: http://127.0.0.1:9091
";
    let problems = problems_of(text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "scrape_interval");
    assert!(problems[0].message.contains("is required"));
}

#[test]
fn a_receiver_only_config_loads() {
    let text = "\
scrape_interval: 60s
max_age: 0
receiver_stream:
  cluster_id: central
  urls: [nats://127.0.0.1:4222, 'nats://127.0.0.1:4223']
  client_id: ''
push_gateway:
  url: https://127.0.0.1:9091
  timeout: 5s
remote_write:
  - url: http://127.0.0.1:9090/api/v1/write
";
    let config = load_text(text);
    assert!(config.runs_receiver());
    assert!(!config.runs_poller());
    assert_eq!(config.max_age, None);
    let receiver = config.receiver_stream.as_ref().expect("receiver_stream");
    assert_eq!(receiver.durable_name(), None);
    assert_eq!(receiver.urls.len(), 2);
    assert_eq!(
        config.push_gateway.as_ref().expect("push_gateway").timeout,
        Duration::from_secs(5)
    );
    assert_eq!(config.remote_write.len(), 1);
    assert_eq!(config.remote_write[0].timeout, Duration::from_secs(30));
}

#[test]
fn durations_take_go_style_and_bare_seconds() {
    let cases: &[(&str, Option<Duration>)] = &[
        ("60s", Some(Duration::from_secs(60))),
        ("1m30s", Some(Duration::from_secs(90))),
        ("90", Some(Duration::from_secs(90))),
        ("0", Some(Duration::ZERO)),
        ("1h", Some(Duration::from_secs(3600))),
        ("500ms", Some(Duration::from_millis(500))),
        ("1.5s", Some(Duration::from_millis(1500))),
        ("2.5", Some(Duration::from_millis(2500))),
        ("1d", Some(Duration::from_secs(86400))),
        ("5x", None),
        ("-1s", None),
        ("-3", None),
        ("", None),
        ("s", None),
        ("1m30", None),
        ("inf", None),
    ];
    for (text, expected) in cases {
        assert_eq!(values::parse_duration(text), *expected, "{text:?}");
    }
    for (text, expected) in [("80", Some(80)), ("1m20s", Some(80)), ("0", None)] {
        let config = load_text(&with(&format!("max_age: {text}\n")));
        assert_eq!(
            config.max_age,
            expected.map(Duration::from_secs),
            "max_age {text}"
        );
    }
}

#[test]
fn sizes_take_units_and_bytes() {
    let cases: &[(&str, Option<u64>)] = &[
        ("16MiB", Some(16 << 20)),
        ("10MB", Some(10_000_000)),
        ("512KiB", Some(512 << 10)),
        ("1GiB", Some(1 << 30)),
        ("1 kb", Some(1000)),
        ("1.5MiB", Some(3 << 19)),
        ("12345", Some(12345)),
        ("0", Some(0)),
        ("12 parsecs", None),
        ("MiB", None),
        ("-1", None),
    ];
    for (text, expected) in cases {
        assert_eq!(values::parse_bytes(text), *expected, "{text:?}");
    }
}

#[test]
fn urls_take_a_string_a_comma_string_or_a_list() {
    let cases: &[(&str, &[&str])] = &[
        ("nats://127.0.0.1:4222", &["nats://127.0.0.1:4222"]),
        (
            "'nats://127.0.0.1:4222,nats://127.0.0.1:4223'",
            &["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"],
        ),
        (
            "'nats://127.0.0.1:4222, tls://127.0.0.1:4223 '",
            &["nats://127.0.0.1:4222", "tls://127.0.0.1:4223"],
        ),
        (
            "[nats://127.0.0.1:4222, nats://127.0.0.1:4223]",
            &["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"],
        ),
        ("\n    - 127.0.0.1:4222", &["nats://127.0.0.1:4222"]),
    ];
    for (urls, expected) in cases {
        let text = BASE.replace("urls: nats://127.0.0.1:4222\n", &format!("urls: {urls}\n"));
        let config = load_text(&text);
        let poller = config.poller_stream.expect("poller_stream");
        assert_eq!(poller.urls, *expected, "urls: {urls}");
    }
}

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
    assert_eq!(unsupported, vec!["tls", "management"]);
    assert!(config.unsupported()[0]
        .message
        .contains("not supported yet"));
}

#[test]
fn a_stream_tls_without_a_top_level_one_is_unsupported_too() {
    let text = BASE.replace(
        "  cluster_id: site\n",
        "  cluster_id: site\n  tls: { scheme: puppet, ssl_dir: /ssl }\n",
    );
    let config = load_text(&text);
    let keys: Vec<String> = config.unsupported().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, vec!["poller_stream.tls"]);
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

    let duplicate = with("scrape_interval: 30s\n");
    let problems = problems_of(&duplicate);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].line, Some(14));
    assert!(problems[0]
        .message
        .contains("duplicate key \"scrape_interval\" (first at line 1)"));

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
fn load_reads_the_file_and_resolves_relative_paths() {
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("promrelay.yaml");
    let text = BASE.replace(
        "    targets:\n",
        "    filters:\n      - name: f\n        module: filters/f.wasm\n    targets:\n",
    );
    std::fs::write(&path, text).expect("write config");
    let config = load(&path).expect("loads");
    assert_eq!(
        config.jobs[0].filters[0].module,
        directory.path().join("filters/f.wasm")
    );

    let error = load(&directory.path().join("missing.yaml")).expect_err("no such file");
    assert!(
        error
            .to_string()
            .contains("missing.yaml: cannot read the config file"),
        "{error}"
    );

    let original = load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/config/original.yaml"
    )))
    .expect("original sample loads from its file");
    assert_eq!(original, parse(ORIGINAL, "x").expect("parses"));
}

#[test]
fn the_full_sample_loads() {
    let config = load_text(include_str!("../../../tests/data/config/full.yaml"));
    assert_eq!(config.identity, "dc1");
    assert_eq!(config.max_age, Some(Duration::from_secs(300)));
    assert_eq!(config.jobs[0].targets[1].name, "127.0.0.2:9100");
    assert_eq!(
        config
            .poller_stream
            .as_ref()
            .map(|stream| stream.urls.len()),
        Some(2)
    );
    assert_eq!(config.remote_write.len(), 1);
    assert_eq!(config.filters[0].on_error, OnError::Drop);
    assert!(config.runs_poller() && config.runs_receiver());
}

#[test]
fn keys_match_case_insensitively_as_in_the_original() {
    // The original decoded YAML through JSON into Go structs, which matches keys ignoring case;
    // its Puppet module wrote `Full` and `RO` under `management.auth`.
    let text = with(
        "Verbose: true\nmanagement:\n  brokers: [127.0.0.1:4222]\n  auth:\n    insecure: false\n    Full: ['^ops$']\n    RO: ['^monitor$']\n",
    );
    let config = load_text(&text);
    assert_eq!(config.log.level, LogLevel::Info);
    let auth = config.management.expect("management").auth;
    assert_eq!(auth.full, vec!["^ops$".to_string()]);
    assert_eq!(auth.read_only, vec!["^monitor$".to_string()]);

    let problems = problems_of(&with("Scrape_Interval: 30s\n"));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "Scrape_Interval");
    assert!(
        problems[0]
            .message
            .contains("same key as \"scrape_interval\" on line 1"),
        "{problems:#?}"
    );
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
            "remote_write[0]",
            "remote_write[0].tls_config.insecure_skip_verify",
            "management.auth.insecure",
        ]
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever the bytes, parsing answers Ok or a list of problems; it never panics.
    #[test]
    fn parse_never_panics(text in "[ -~\n]{0,200}") {
        let _ = parse(&text, "fuzz.yaml");
    }

    /// Dropping any one line of the original sample gives a config or problems, never a panic,
    /// and every problem of a mutilated file carries a line.
    #[test]
    fn mutilated_samples_report_problems_with_lines(drop_line in 0usize..27) {
        let text: String = ORIGINAL
            .lines()
            .enumerate()
            .filter(|(index, _)| *index != drop_line)
            .map(|(_, line)| format!("{line}\n"))
            .collect();
        if let Err(error) = parse(&text, "fuzz.yaml") {
            for problem in &error.problems {
                proptest::prop_assert!(problem.line.is_some(), "{problem:?}");
            }
        }
    }
}
