//! Hub and leaf sites (issue 9, item 1): each site's poller publishes into a stream of its own
//! JetStream domain on a leaf nats-server; the hub's receiver sources every site stream into a
//! hub stream without subjects and pushes into a real Pushgateway and a real Prometheus
//! (remote_write, which keeps each scrape's timestamp, so a lost scrape is seen).
//!
//! The nats-servers run the configs `docs/topologies.md` shows (`promrelay_tests::topology`).
//! Loss is counted: the scrapes each target served, the messages of its site stream (one per
//! scrape, the poller stopped first) and the `up` samples Prometheus stored for the site.

use std::time::Duration;

use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::topology::{jsz_stream, LeafTopology};
use promrelay_tests::{
    http, poll_until, poll_until_ok, Behaviour, NatsServer, Prometheus, Pushgateway, Relay,
    TargetServer,
};

/// Long enough for a debug relay on a loaded machine, and for a source to resume after the
/// leaf connection came back (10–20 s on nats-server 2.9).
const SETTLE: Duration = Duration::from_secs(120);

/// One site: its target and its poller, publishing to `stream` in domain `site<N>`.
pub struct Site {
    pub target: TargetServer,
    pub poller: Relay,
    pub stream: String,
    pub identity: String,
}

/// The poller's config at site `index` of `topology`: its own topic, so no other site's stream
/// stores its messages (leaf nodes carry them everywhere).
fn site_yaml(nats: &NatsServer, index: usize, stream: &str, target: &TargetServer) -> String {
    let domain = LeafTopology::site_domain(index);
    format!(
        "identity: {domain}\nscrape_interval: 1s\npoller_stream:\n  cluster_id: {stream}\n  \
         urls: {}\n  domain: {domain}\n  topic: prometheus.{domain}\n  retention: 5m\njobs:\n  app:\n    targets:\n      \
         - name: {domain}\n        url: {:?}\n",
        nats.url(),
        target.url()
    )
}

/// Starts the poller of site `index`.
pub fn start_site(topology: &LeafTopology, index: usize) -> Site {
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.to_string()));
    let stream = promrelay_tests::relay::unique_name(&format!("PROM_SITE{}", index + 1));
    let yaml = site_yaml(&topology.sites[index], index, &stream, &target);
    Site {
        poller: Relay::start_command(&["poller"], &yaml),
        target,
        stream,
        identity: LeafTopology::site_domain(index),
    }
}

/// The hub receiver's config: hub stream `hub_stream` in domain `hub` sourcing `sites`.
pub fn hub_yaml(
    hub: &NatsServer,
    hub_stream: &str,
    consumer: &str,
    sites: &[&Site],
    sinks: &str,
) -> String {
    let sources: String = sites
        .iter()
        .map(|site| {
            format!(
                "    - stream: {}\n      domain: {}\n",
                site.stream, site.identity
            )
        })
        .collect();
    format!(
        "scrape_interval: 1s\nmax_age: 600\nreceiver_stream:\n  cluster_id: {hub_stream}\n  \
         urls: {}\n  domain: hub\n  client_id: {consumer}\n  retention: 5m\n  sources:\n\
         {sources}{sinks}",
        hub.url()
    )
}

fn pushgateway_sink(pushgateway: &Pushgateway) -> String {
    format!(
        "push_gateway:\n  url: {:?}\n  publisher_label: true\n",
        pushgateway.url()
    )
}

/// Waits until the Pushgateway holds `up 1` of job app from publisher `identity`.
fn wait_pushed(pushgateway: &Pushgateway, receiver: &mut Relay, identity: &str) {
    poll_until(
        SETTLE,
        &format!("job app of {identity} in the Pushgateway"),
        || {
            if let Err(error) = receiver.ensure_running() {
                panic!("{error:#}");
            }
            pushgateway
                .pushed_series_for("app")
                .iter()
                .any(|sample| {
                    sample.name == "up"
                        && sample.value == 1.0
                        && sample.label("publisher") == Some(identity)
                })
                .then_some(())
        },
    );
}

/// The hub stream as the hub's `/jsz` reports it, with its config.
fn hub_stream_info(hub: &NatsServer, name: &str) -> serde_json::Value {
    let url = format!("{}/jsz?streams=true&config=true", hub.monitor_url());
    poll_until_ok(SETTLE, &format!("stream {name} in the hub's /jsz"), || {
        let jsz: serde_json::Value = serde_json::from_str(&http::get_ok(&url)?)?;
        jsz_stream(&jsz, name).ok_or_else(|| anyhow::anyhow!("no stream {name} yet"))
    })
}

/// The names of the hub stream's sources, sorted.
fn source_names(info: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = info["config"]["sources"]
        .as_array()
        .map(|sources| {
            sources
                .iter()
                .filter_map(|source| source["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn two_leaf_sites_arrive_at_the_hub_pushgateway_through_a_hub_stream_sourcing_both() {
    let topology = LeafTopology::start(2);
    let pushgateway = Pushgateway::start();
    let site1 = start_site(&topology, 0);
    let site2 = start_site(&topology, 1);
    let hub_stream = promrelay_tests::relay::unique_name("PROM_ALL");
    let yaml = hub_yaml(
        &topology.hub,
        &hub_stream,
        "hub_receiver",
        &[&site1, &site2],
        &pushgateway_sink(&pushgateway),
    );
    let mut receiver = Relay::start_command(&["receiver"], &yaml);
    wait_pushed(&pushgateway, &mut receiver, "site1");
    wait_pushed(&pushgateway, &mut receiver, "site2");

    // Each site stream lives in its site's domain only; the hub stream has no subjects.
    for (index, site) in [&site1, &site2].iter().enumerate() {
        assert!(
            topology.sites[index]
                .stream_messages(&site.stream)
                .is_some(),
            "{} is in site{}'s JetStream",
            site.stream,
            index + 1
        );
        assert_eq!(topology.hub.stream_messages(&site.stream), None);
    }
    let info = hub_stream_info(&topology.hub, &hub_stream);
    let subjects = info["config"]["subjects"].as_array().map_or(0, Vec::len);
    assert_eq!(subjects, 0, "the hub stream has no subjects: {info}");
    let mut expected = vec![site1.stream.clone(), site2.stream.clone()];
    expected.sort();
    assert_eq!(source_names(&info), expected);
    assert_eq!(info["config"]["retention"], "limits", "{info}");

    // Every scrape once at the hub: the hub stream ends up with exactly the site streams' messages.
    let mut sites = [site1, site2];
    let mut published = 0;
    for (index, site) in sites.iter_mut().enumerate() {
        published += stop_and_count(site, &topology.sites[index]).1;
    }
    poll_until(
        SETTLE,
        "the hub stream holding each site message once",
        || {
            let hub = topology.hub.stream_messages(&hub_stream).unwrap_or(0);
            assert!(
                hub <= published,
                "{hub} hub messages for {published} site messages"
            );
            (hub == published).then_some(())
        },
    );
}

/// Scrape counts of one site, once its poller stopped: (served, in the site stream).
fn stop_and_count(site: &mut Site, nats: &NatsServer) -> (u64, u64) {
    let status = site.poller.sigterm();
    assert!(status.success(), "the poller exited with {status}");
    let served = site.target.requests();
    let published = nats
        .stream_messages(&site.stream)
        .expect("the poller created its site stream");
    // SIGTERM may interrupt one scrape before its answer was read; none is published twice.
    assert!(
        published <= served && published + 1 >= served,
        "{served} scrapes served, {published} in the site stream {}",
        site.stream
    );
    (served, published)
}

/// Waits until Prometheus stored exactly `count` `up` samples of job app from `identity`.
pub fn wait_stored_exactly(prometheus: &Prometheus, identity: &str, count: u64) {
    let query = format!("count_over_time(up{{job=\"app\",publisher=\"{identity}\"}}[1h])");
    poll_until_ok(
        SETTLE,
        &format!("{count} scrapes of {identity} in Prometheus"),
        || {
            let stored = prometheus.query_number(&query)?.unwrap_or(0.0) as u64;
            if stored == count {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "{stored} of {count} stored: {} lost",
                    count.saturating_sub(stored)
                ))
            }
        },
    );
}

/// Prometheus' stored `up` samples of job app from `identity`.
pub fn stored(prometheus: &Prometheus, identity: &str) -> u64 {
    let query = format!("count_over_time(up{{job=\"app\",publisher=\"{identity}\"}}[1h])");
    prometheus
        .query_number(&query)
        .ok()
        .flatten()
        .unwrap_or(0.0) as u64
}

#[test]
fn scrapes_published_at_a_site_while_the_hub_is_down_all_arrive_when_it_is_back() {
    let mut topology = LeafTopology::start(1);
    let prometheus = Prometheus::start_remote_write_receiver();
    let mut site = start_site(&topology, 0);
    let hub_stream = promrelay_tests::relay::unique_name("PROM_ALL");
    let sinks = format!(
        "remote_write:\n  - url: {:?}\n",
        prometheus.remote_write_url()
    );
    let yaml = hub_yaml(&topology.hub, &hub_stream, "hub_receiver", &[&site], &sinks);
    let mut receiver = Relay::start_command(&["receiver"], &yaml);
    poll_until(SETTLE, "3 scrapes of site1 in Prometheus", || {
        if let Err(error) = receiver.ensure_running() {
            panic!("{error:#}");
        }
        (stored(&prometheus, "site1") >= 3).then_some(())
    });

    // The hub goes away (SIGKILL: the leaf link is cut too); the site keeps every scrape.
    topology.hub.kill9();
    let before = topology.sites[0].stream_messages(&site.stream).unwrap_or(0);
    poll_until(
        SETTLE,
        "5 scrapes published at site1 while the hub is down",
        || {
            let now = topology.sites[0].stream_messages(&site.stream).unwrap_or(0);
            (now >= before + 5).then_some(())
        },
    );
    topology.hub.restart();
    topology.wait_leaves(1);
    poll_until(SETTLE, "3 more scrapes after the hub is back", || {
        let now = topology.sites[0].stream_messages(&site.stream).unwrap_or(0);
        (now >= before + 8).then_some(())
    });

    let (served, published) = stop_and_count(&mut site, &topology.sites[0]);
    assert!(
        published >= 10,
        "only {published} scrapes ({served} served)"
    );
    wait_stored_exactly(&prometheus, "site1", published);
    eprintln!(
        "hub down: {served} scrapes served at site1, {published} in the site stream, {published} \
         stored in Prometheus through the hub, 0 lost"
    );
    if let Err(error) = receiver.ensure_running() {
        panic!("{error:#}");
    }
}

#[test]
fn a_source_added_on_reload_flows_without_recreating_the_hub_stream() {
    let topology = LeafTopology::start(2);
    let pushgateway = Pushgateway::start();
    let site1 = start_site(&topology, 0);
    let site2 = start_site(&topology, 1);
    let hub_stream = promrelay_tests::relay::unique_name("PROM_ALL");
    let sinks = pushgateway_sink(&pushgateway);
    let one = hub_yaml(
        &topology.hub,
        &hub_stream,
        "hub_receiver",
        &[&site1],
        &sinks,
    );
    let mut receiver = Relay::start_command(&["receiver"], &one);
    wait_pushed(&pushgateway, &mut receiver, "site1");
    let before = hub_stream_info(&topology.hub, &hub_stream);
    assert_eq!(source_names(&before), std::slice::from_ref(&site1.stream));
    assert!(
        !pushgateway
            .pushed_series_for("app")
            .iter()
            .any(|sample| sample.label("publisher") == Some("site2")),
        "site2 is not sourced yet"
    );

    let both = hub_yaml(
        &topology.hub,
        &hub_stream,
        "hub_receiver",
        &[&site1, &site2],
        &sinks,
    );
    receiver.rewrite_config(&both);
    receiver.sighup();
    wait_pushed(&pushgateway, &mut receiver, "site2");

    let after = hub_stream_info(&topology.hub, &hub_stream);
    let mut expected = vec![site1.stream.clone(), site2.stream.clone()];
    expected.sort();
    assert_eq!(source_names(&after), expected);
    // The same stream: created once, its first message still the first, its sequence going on.
    assert_eq!(after["created"], before["created"], "{before}\n{after}");
    assert_eq!(after["state"]["first_seq"], before["state"]["first_seq"]);
    let last = |info: &serde_json::Value| info["state"]["last_seq"].as_u64().unwrap_or(0);
    assert!(last(&after) > last(&before), "{before}\n{after}");
    receiver.wait_for_log("hub stream sources up to date", SETTLE);
}
