//! Tests of the config module: the original's sample, every key's bad value, unknown keys,
//! several problems at once, and the value syntaxes. Table-driven where the cases are alike.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

mod discovery;
mod problems;
mod scale;
mod sections;
mod topology;

const ORIGINAL: &str = include_str!("../../../../tests/data/config/original.yaml");

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
    assert!(values::check_name(&config.identity).is_ok());
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
    let config = load_text(include_str!("../../../../tests/data/config/full.yaml"));
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
    assert_eq!(
        config.web_config_file.as_deref(),
        Some(std::path::Path::new("web.yml"))
    );
}

#[test]
fn every_key_the_reader_knows_is_documented() {
    let docs = include_str!("../../../../docs/config.md");
    reader::ASKED.with(|asked| asked.borrow_mut().clear());
    load_text(include_str!("../../../../tests/data/config/full.yaml"));
    let asked = reader::ASKED.with(|asked| asked.borrow().clone());
    assert!(
        asked.len() > 50,
        "the full sample walks every section: {asked:?}"
    );
    let undocumented: Vec<&String> = asked
        .iter()
        .filter(|key| {
            !docs.contains(&format!("`{key}`"))
                && !docs.contains(&format!(".{key}`"))
                && !docs.contains(&format!("`{key},"))
                && !docs.contains(&format!("`{key}."))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/config.md: {undocumented:?}"
    );
}

#[test]
fn spool_dir_and_spool_sync_load_with_interval_as_the_default() {
    assert_eq!(load_text(ORIGINAL).spool, None);
    let config = load_text(&format!("{ORIGINAL}spool_dir: /var/spool/promrelay\n"));
    assert_eq!(
        config.spool,
        Some(SpoolConfig {
            dir: PathBuf::from("/var/spool/promrelay"),
            sync: SpoolSync::Interval(Duration::from_secs(1)),
        })
    );
    for (text, sync) in [
        ("spool_sync: always\n", SpoolSync::Always),
        ("spool_sync: never\n", SpoolSync::Never),
        (
            "spool_sync: interval\nspool_sync_interval: 250ms\n",
            SpoolSync::Interval(Duration::from_millis(250)),
        ),
    ] {
        let config = load_text(&format!("{ORIGINAL}spool_dir: /s\n{text}"));
        assert_eq!(config.spool.map(|spool| spool.sync), Some(sync), "{text}");
    }
}
