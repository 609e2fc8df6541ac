//! Leaf-node topology keys: `poller_stream.domain`, `receiver_stream.domain` and
//! `receiver_stream.sources`, and the mistakes check-config explains.

use super::*;

const SITE: &str = "\
scrape_interval: 10s
poller_stream:
  cluster_id: PROM_SITE1
  urls: nats://127.0.0.1:4223
  domain: site1
jobs:
  node:
    targets:
      - url: http://127.0.0.1:9100/metrics
";

fn hub(receiver_stream: &str) -> String {
    format!(
        "scrape_interval: 10s\nreceiver_stream:\n{receiver_stream}push_gateway:\n  url: http://127.0.0.1:9091\n"
    )
}

#[test]
fn a_site_poller_publishes_in_its_domain() {
    let config = load_text(&SITE.replace(
        "  domain: site1\n",
        "  domain: site1\n  topic: prometheus.site1\n",
    ));
    let poller = config.poller_stream.as_ref().expect("poller_stream");
    assert_eq!(poller.domain.as_deref(), Some("site1"));
    assert!(poller.sources.is_empty());
    assert!(config.warnings().is_empty(), "{:#?}", config.warnings());
}

#[test]
fn a_site_on_the_shared_default_topic_is_warned_about() {
    let warnings = load_text(SITE).warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0].key, "poller_stream.topic");
    assert!(
        warnings[0].message.contains("e.g. prometheus.site1"),
        "{}",
        warnings[0].message
    );
}

#[test]
fn a_hub_receiver_sources_each_site_stream_from_its_domain() {
    let config = load_text(&hub("  cluster_id: PROM_ALL
  urls: nats://127.0.0.1:4222
  domain: hub
  sources:
    - stream: PROM_SITE1
      domain: site1
    - {stream: PROM_SITE2, domain: site2}
"));
    let receiver = config.receiver_stream.as_ref().expect("receiver_stream");
    assert_eq!(receiver.domain.as_deref(), Some("hub"));
    assert_eq!(
        receiver.sources,
        [
            StreamSource {
                stream: "PROM_SITE1".into(),
                domain: "site1".into()
            },
            StreamSource {
                stream: "PROM_SITE2".into(),
                domain: "site2".into()
            },
        ]
    );
}

/// (receiver_stream body, expected key, a fragment of the message, expected line)
const MISTAKES: &[(&str, &str, &str, usize)] = &[
    (
        "  cluster_id: PROM_ALL\n  urls: nats://127.0.0.1:4222\n  sources:\n    - {stream: PROM_SITE1, domain: site1}\n",
        "receiver_stream.sources",
        "sources needs receiver_stream.domain, the hub's JetStream domain",
        5,
    ),
    (
        "  cluster_id: PROM_ALL\n  urls: nats://127.0.0.1:4222\n  domain: hub\n  sources:\n    - stream: PROM_SITE1\n",
        "receiver_stream.sources[0].domain",
        "the site's JetStream domain",
        7,
    ),
    (
        "  cluster_id: PROM_ALL\n  urls: nats://127.0.0.1:4222\n  domain: hub\n  sources:\n    - {stream: PROM_SITE1, domain: hub}\n",
        "receiver_stream.sources",
        "is in domain \"hub\", the hub's own",
        6,
    ),
    (
        "  cluster_id: PROM_ALL\n  urls: nats://127.0.0.1:4222\n  domain: hub\n  sources:\n    - {stream: PROM_ALL, domain: site1}\n",
        "receiver_stream.sources",
        "has the hub stream's own name",
        6,
    ),
    (
        "  cluster_id: PROM_ALL\n  urls: nats://127.0.0.1:4222\n  domain: hub\n  sources:\n    - {stream: S1, domain: site1}\n    - {stream: S1, domain: site1}\n",
        "receiver_stream.sources[1]",
        "is listed twice",
        8,
    ),
    (
        "  cluster_id: PROM_ALL\n  urls: nats://127.0.0.1:4222\n  domain: 'my hub'\n",
        "receiver_stream.domain",
        "a JetStream domain is one subject token",
        5,
    ),
    (
        "  cluster_id: PROM_ALL\n  urls: nats://127.0.0.1:4222\n  domain: hub\n  sources: PROM_SITE1\n",
        "receiver_stream.sources",
        "list",
        6,
    ),
];

#[test]
fn check_config_explains_each_domain_and_sources_mistake() {
    for (body, key, fragment, line) in MISTAKES {
        let problems = problems_of(&hub(body));
        let problem = problems
            .iter()
            .find(|problem| problem.key == *key)
            .unwrap_or_else(|| panic!("no problem at {key} for\n{body}\n{problems:#?}"));
        assert!(
            problem.message.contains(fragment),
            "{key}: {:?} lacks {fragment:?}",
            problem.message
        );
        assert_eq!(problem.line, Some(*line), "{key}: {problem:?}");
    }
}

#[test]
fn sources_in_a_poller_stream_say_where_they_belong() {
    let text = SITE.replace(
        "  domain: site1\n",
        "  domain: site1\n  sources:\n    - {stream: X, domain: y}\n",
    );
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "poller_stream.sources");
    assert!(problems[0].message.contains("belongs in receiver_stream"));
}

#[test]
fn a_hub_stream_named_like_the_site_stream_is_refused() {
    let text = format!(
        "{SITE}receiver_stream:\n  cluster_id: PROM_SITE1\n  urls: nats://127.0.0.1:4222\n  domain: hub\n  sources:\n    - {{stream: PROM_SITE2, domain: site2}}\npush_gateway:\n  url: http://127.0.0.1:9091\n"
    );
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "receiver_stream.cluster_id");
    assert!(
        problems[0]
            .message
            .contains("has the name of this poller's site stream"),
        "{}",
        problems[0].message
    );
}

#[test]
fn one_stream_name_in_two_domains_without_sources_is_refused() {
    let text = format!(
        "{SITE}receiver_stream:\n  cluster_id: PROM_SITE1\n  urls: nats://127.0.0.1:4222\n  domain: hub\npush_gateway:\n  url: http://127.0.0.1:9091\n"
    );
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].key, "receiver_stream.cluster_id");
    assert!(
        problems[0]
            .message
            .contains("list the site stream in receiver_stream.sources"),
        "{}",
        problems[0].message
    );
}

#[test]
fn receivers_that_scale_out_share_a_named_consumer_with_their_ack_wait() {
    let base = "  cluster_id: HUB\n  urls: nats://127.0.0.1:4222\n";
    let config = load_text(&hub(&format!(
        "{base}  client_id: central\n  ack_wait: 10s\n  shared_order: true\n"
    )));
    let receiver = config.receiver_stream.as_ref().expect("receiver_stream");
    assert_eq!(receiver.ack_wait, std::time::Duration::from_secs(10));
    assert!(receiver.shared_order);
    let defaults = load_text(&hub(base));
    let receiver = defaults.receiver_stream.as_ref().expect("receiver_stream");
    assert_eq!(receiver.ack_wait, std::time::Duration::from_secs(60));
    assert!(!receiver.shared_order);

    // (config, key of the one problem, what its message says)
    let table = [
        (
            hub(&format!("{base}  shared_order: true\n")),
            "receiver_stream.shared_order",
            "needs client_id",
        ),
        (
            SITE.replace("  domain: site1\n", "  domain: site1\n  ack_wait: 5s\n"),
            "poller_stream.ack_wait",
            "belongs in receiver_stream",
        ),
        (
            SITE.replace(
                "  domain: site1\n",
                "  domain: site1\n  shared_order: true\n",
            ),
            "poller_stream.shared_order",
            "belongs in receiver_stream",
        ),
    ];
    for (text, key, says) in table {
        let problems = problems_of(&text);
        assert_eq!(problems.len(), 1, "{text}\n{problems:#?}");
        assert_eq!(problems[0].key, key);
        assert!(problems[0].message.contains(says), "{:?}", problems[0]);
    }
}
