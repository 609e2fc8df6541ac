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
