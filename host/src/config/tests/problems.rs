//! Problems: every key's bad value, bad sections, unknown keys, several problems at once, and
//! property tests that parsing never panics.

use super::*;

/// (yaml, expected key, a fragment of the message, expected line)
const BAD_VALUES: &[(&str, &str, &str, usize)] = &[
    ("verbose: maybe\n", "verbose", "not a boolean", 14),
    ("debug: 2\n", "debug", "not a boolean", 14),
    ("logfile: ''\n", "logfile", "must not be empty", 14),
    (
        "identity: \"us\\u0007dc1\"\n",
        "identity",
        "control character",
        14,
    ),
    (
        "monitor_address: nowhere\n",
        "monitor_address",
        "is not an IP address",
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
        "spool_dir: /var/spool/promrelay\nspool_sync: sometimes\n",
        "spool_sync",
        "is not one of always, interval, never",
        15,
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
        "scrape_interval: 1m\npoller_stream:\n  cluster_id: s\n  urls: nats://127.0.0.1:4222\njobs:\n  \"a\\tb\":\n    targets: [http://127.0.0.1:1/]\n",
        "jobs.a\tb",
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
