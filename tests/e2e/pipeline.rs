//! The relay core end to end, as an operator runs it: targets → `promrelay run` (poller and
//! receiver in one process) → nats-server (JetStream) → Pushgateway, all real processes.
//!
//! Covers issue 2's "end to end", "bad targets", "SIGHUP adding a target; SIGTERM flushing" and the
//! nats-server SIGKILL-and-restart fault.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, parse_samples, poll_until, poll_until_ok, Behaviour, NatsServer, NodeExporter,
    Pushgateway, Relay, RelayConfig, Sample, TargetServer,
};

/// Long enough for a debug-built relay to start, scrape, publish, consume and push on a loaded
/// two-core machine; only reached when something is broken.
const ARRIVAL: Duration = Duration::from_secs(90);

/// The series the poller adds per target, as Prometheus does.
const SYNTHETIC: [&str; 3] = ["up", "scrape_duration_seconds", "scrape_samples_scraped"];

/// node_exporter series whose value depends on who is looking: the test's own direct scrape
/// opens a connection (fd, goroutine, sockets) next to the relay's idle keep-alive one, and
/// every scrape runs a process. Their values are not compared, only their presence.
const OBSERVER_DEPENDENT: [&str; 8] = [
    "go_goroutines",
    "go_threads",
    "process_open_fds",
    "node_netstat_Tcp_CurrEstab",
    "node_sockstat_",
    "node_procs_running",
    "node_procs_blocked",
    "node_sockstat_sockets_used",
];

/// The grouping labels the Pushgateway adds from the push URL.
const GROUPING: [&str; 3] = ["job", "instance", "publisher"];

/// Pushed samples of one group (job, instance), without the Pushgateway's bookkeeping series.
pub(crate) fn group(pushgateway: &Pushgateway, job: &str, instance: &str) -> Vec<Sample> {
    pushgateway
        .pushed_series_for(job)
        .into_iter()
        .filter(|sample| sample.label("instance") == Some(instance))
        .collect()
}

/// Waits until the group's sample `name` satisfies `accept`, and returns it.
fn wait_for_sample(
    pushgateway: &Pushgateway,
    relay: &mut Relay,
    (job, instance): (&str, &str),
    name: &str,
    accept: impl Fn(&Sample) -> bool,
) -> Sample {
    poll_until(
        ARRIVAL,
        &format!("{name} of job={job} instance={instance} in the Pushgateway"),
        || {
            if let Err(error) = relay.ensure_running() {
                panic!("{error:#}");
            }
            group(pushgateway, job, instance)
                .into_iter()
                .find(|sample| sample.name == name && accept(sample))
        },
    )
}

/// Seconds since the Unix epoch, as the Pushgateway's `push_time_seconds`.
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// When the group (job, instance) was last pushed successfully.
pub(crate) fn push_time(pushgateway: &Pushgateway, job: &str, instance: &str) -> Option<f64> {
    pushgateway
        .series_for(job)
        .into_iter()
        .find(|s| s.name == "push_time_seconds" && s.label("instance") == Some(instance))
        .map(|s| s.value)
}

/// Keys (name and labels, without the grouping labels) of non-synthetic samples.
fn series_keys(samples: &[Sample]) -> BTreeSet<String> {
    samples
        .iter()
        .filter(|sample| !SYNTHETIC.contains(&sample.name.as_str()))
        .map(|sample| sample.key_without(&GROUPING))
        .collect()
}

fn values_by_key(samples: &[Sample]) -> BTreeMap<String, Sample> {
    samples
        .iter()
        .map(|sample| (sample.key_without(&GROUPING), sample.clone()))
        .collect()
}

/// What differs between two key sets, shortened for a panic message.
fn describe_difference(expected: &BTreeSet<String>, actual: &BTreeSet<String>) -> String {
    let missing: Vec<&String> = expected.difference(actual).take(10).collect();
    let extra: Vec<&String> = actual.difference(expected).take(10).collect();
    format!(
        "{} expected, {} present; missing (first 10): {missing:?}; unexpected (first 10): {extra:?}",
        expected.len(),
        actual.len()
    )
}

#[test]
fn every_node_exporter_series_arrives_with_job_instance_and_publisher_labels_and_equal_values() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let node = NodeExporter::start();
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("node", &[("node1", &node.metrics_url())]);
    let mut relay = Relay::start_config(&config);

    let up = wait_for_sample(&pushgateway, &mut relay, ("node", "node1"), "up", |_| true);
    assert_eq!(up.value, 1.0, "node_exporter is up: {up:?}");
    assert_eq!(up.label("publisher"), Some("site1"));

    // node_exporter's series set moves a little between scrapes, and its values more. Take a direct
    // scrape, wait until the group has been pushed again twice over (so the pushed scrape is
    // younger than the direct one), read it, and take a second direct scrape: the pushed group
    // must have the series of one of the direct scrapes, and the value of every series that did
    // not change from the first direct scrape to the second. Retried: a slow hop only delays.
    let compared = poll_until_ok(
        ARRIVAL,
        "the pushed node group to equal a direct scrape",
        || {
            relay
                .ensure_running()
                .map_err(|error| format!("{error:#}"))?;
            let before = parse_samples(&node.metrics_text()).expect("node_exporter parses");
            let taken = unix_seconds();
            poll_until(ARRIVAL, "two pushes of the node group", || {
                push_time(&pushgateway, "node", "node1").filter(|pushed| *pushed > taken + 2.0)
            });
            let pushed = group(&pushgateway, "node", "node1");
            let after = parse_samples(&node.metrics_text()).expect("node_exporter parses");
            let pushed_keys = series_keys(&pushed);
            let direct_keys = series_keys(&after);
            if direct_keys != pushed_keys && series_keys(&before) != pushed_keys {
                return Err(describe_difference(&direct_keys, &pushed_keys));
            }
            for sample in &pushed {
                let labels_ok = sample.label("job") == Some("node")
                    && sample.label("instance") == Some("node1")
                    && sample.label("publisher") == Some("site1");
                assert!(labels_ok, "grouping labels on {sample:?}");
            }
            let before = values_by_key(&before);
            let pushed = values_by_key(&pushed);
            let mut compared = 0;
            let mut differing = Vec::new();
            for (key, now) in values_by_key(&after) {
                let observed = OBSERVER_DEPENDENT
                    .iter()
                    .any(|prefix| now.name.starts_with(prefix));
                let stable = !observed
                    && before
                        .get(&key)
                        .is_some_and(|earlier| earlier.same_value(&now));
                match pushed.get(&key) {
                    Some(relayed) if stable && !relayed.same_value(&now) => {
                        differing.push(format!(
                            "{key}: direct {} relayed {}",
                            now.value, relayed.value
                        ));
                    }
                    Some(_) if stable => compared += 1,
                    _ => {}
                }
            }
            if !differing.is_empty() {
                return Err(format!(
                    "{} of {} stable series differ: {differing:?}",
                    differing.len(),
                    compared + differing.len()
                ));
            }
            Ok(compared)
        },
    );
    assert!(compared > 50, "only {compared} stable series compared");
}

#[test]
fn a_dead_target_shows_up_0_and_a_live_one_up_1() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let live = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let dead_url = format!("http://127.0.0.1:{}/metrics", free_port());
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("live", &live.url()), ("dead", &dead_url)]);
    let mut relay = Relay::start_config(&config);

    let dead = wait_for_sample(&pushgateway, &mut relay, ("app", "dead"), "up", |_| true);
    assert_eq!(dead.value, 0.0, "{dead:?}");
    assert_eq!(dead.label("publisher"), Some("site1"));
    let live_up = wait_for_sample(&pushgateway, &mut relay, ("app", "live"), "up", |_| true);
    assert_eq!(live_up.value, 1.0, "{live_up:?}");
    let requests = wait_for_sample(
        &pushgateway,
        &mut relay,
        ("app", "live"),
        "demo_requests_total",
        |s| s.label("code") == Some("200"),
    );
    assert_eq!(requests.value, 42.0);
}

#[test]
fn the_relay_scrapes_itself_as_job_promrelay_when_monitor_port_is_set() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("one", &target.url())])
        .monitor_port(free_port());
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();

    let own = poll_until(
        ARRIVAL,
        "series of job promrelay in the Pushgateway",
        || {
            relay.ensure_running().expect("promrelay keeps running");
            let own = pushgateway.pushed_series_for("promrelay");
            own.iter()
                .any(|s| s.name.starts_with("promrelay_"))
                .then_some(own)
        },
    );
    let up = own
        .iter()
        .find(|s| s.name == "up")
        .expect("the self job has an up series");
    assert_eq!(up.value, 1.0, "{up:?}");
    assert!(
        own.iter().all(|s| s.label("publisher") == Some("site1")),
        "{own:?}"
    );
}

#[test]
fn bad_targets_do_not_delay_a_good_one_and_each_shows_up_0() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let good = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let good_too = TargetServer::start(Behaviour::Gzip(SMALL_BODY.into()));
    let garbage = TargetServer::start(Behaviour::Garbage);
    let huge = TargetServer::start(Behaviour::huge_100_mib());
    let endless = TargetServer::start(Behaviour::Endless);
    let slow = TargetServer::start(Behaviour::Slow {
        delay: Duration::from_secs(3600),
        body: SMALL_BODY.into(),
    });
    // The bad targets hold a scrape for up to 10 s each; the good job scrapes every second.
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("good", &[("good", &good.url())])
        .job_with(
            "bad",
            "scrape_interval: 10s\nscrape_timeout: 10s\n",
            &[
                ("gzip", &good_too.url()),
                ("garbage", &garbage.url()),
                ("huge", &huge.url()),
                ("endless", &endless.url()),
                ("slow", &slow.url()),
            ],
        )
        .monitor_port(free_port());
    let mut relay = Relay::start_config(&config);

    // Were scrapes serialised behind the slow and endless targets (10 s each), the good target
    // could not be scraped several times while each of them was asked at most twice.
    poll_until(ARRIVAL, "six scrapes of the good target", || {
        relay.ensure_running().expect("promrelay keeps running");
        (good.requests() >= 6).then_some(())
    });
    assert!(
        slow.requests() <= 2,
        "slow target asked {} times",
        slow.requests()
    );
    assert!(
        endless.requests() <= 2,
        "endless target asked {} times",
        endless.requests()
    );

    for bad in ["garbage", "huge", "endless", "slow"] {
        let up = wait_for_sample(&pushgateway, &mut relay, ("bad", bad), "up", |_| true);
        assert_eq!(up.value, 0.0, "{bad}: {up:?}");
    }
    let gzip_up = wait_for_sample(&pushgateway, &mut relay, ("bad", "gzip"), "up", |_| true);
    assert_eq!(gzip_up.value, 1.0, "the gzip target is fine: {gzip_up:?}");
    wait_for_sample(
        &pushgateway,
        &mut relay,
        ("bad", "gzip"),
        "demo_temperature_celsius",
        |s| s.value == 21.5,
    );
    let good_up = wait_for_sample(&pushgateway, &mut relay, ("good", "good"), "up", |_| true);
    assert_eq!(good_up.value, 1.0);

    // Each failure is counted in the relay's own metrics: per target, and by job and outcome.
    let metrics = parse_samples(&relay.metrics_text().expect("GET the relay's /metrics"))
        .expect("the relay's /metrics parses");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        metrics
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.value)
            .sum()
    };
    let counters = || {
        metrics
            .iter()
            .filter(|s| s.name.contains("scrape"))
            .map(|s| format!("{} {}", s.key(), s.value))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for bad in ["garbage", "huge", "endless", "slow"] {
        let errors = value(
            "promrelay_scrape_target_errors_total",
            &[("job", "bad"), ("target", bad)],
        );
        assert!(
            errors >= 1.0,
            "failures of {bad} are counted:\n{}",
            counters()
        );
    }
    assert_eq!(
        value(
            "promrelay_scrape_target_errors_total",
            &[("target", "gzip")]
        ),
        0.0,
        "the gzip target never failed:\n{}",
        counters()
    );
    for (outcome, at_least) in [("parse_error", 1.0), ("too_large", 1.0), ("timeout", 2.0)] {
        let count = value(
            "promrelay_scrapes_total",
            &[("job", "bad"), ("outcome", outcome)],
        );
        assert!(
            count >= at_least,
            "{outcome} counted {count} times:\n{}",
            counters()
        );
    }
    relay
        .ensure_running()
        .expect("promrelay survives every bad target");
}

#[test]
fn sighup_adding_a_target_makes_its_series_arrive_and_keeps_the_others() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let first = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let second = TargetServer::start(Behaviour::Fixed("added_gauge{kind=\"new\"} 7\n".into()));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("first", &first.url())]);
    let mut relay = Relay::start_config(&config);
    wait_for_sample(
        &pushgateway,
        &mut relay,
        ("app", "first"),
        "demo_temperature_celsius",
        |_| true,
    );
    assert_eq!(second.requests(), 0, "not scraped before it is configured");

    let mut grown = config.clone();
    grown.jobs[0]
        .targets
        .push((Some("second".into()), second.url()));
    relay.rewrite_config(&grown.to_yaml());
    let pid = relay.pid();
    relay.sighup();

    let added = wait_for_sample(
        &pushgateway,
        &mut relay,
        ("app", "second"),
        "added_gauge",
        |_| true,
    );
    assert_eq!(added.value, 7.0);
    assert_eq!(added.label("kind"), Some("new"));
    let before = first.requests();
    poll_until(
        ARRIVAL,
        "the first target to be scraped again after the reload",
        || (first.requests() > before + 1).then_some(()),
    );
    assert_eq!(relay.pid(), pid, "reloaded in place, not restarted");
}

#[test]
fn sighup_with_an_invalid_config_keeps_the_old_one_running() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("one", &target.url())]);
    let mut relay = Relay::start_config(&config);
    wait_for_sample(&pushgateway, &mut relay, ("app", "one"), "up", |s| {
        s.value == 1.0
    });

    relay.rewrite_config(&format!(
        "{}no_such_key: 1\nscrape_interval: soon\n",
        config.to_yaml()
    ));
    relay.sighup();
    relay.wait_for_log("no_such_key", ARRIVAL);

    let before = target.requests();
    poll_until(
        ARRIVAL,
        "the target to be scraped on after the rejected reload",
        || {
            relay
                .ensure_running()
                .expect("promrelay keeps running on its old config");
            (target.requests() > before + 1).then_some(())
        },
    );
}

#[test]
fn sigterm_exits_0_after_publishing_what_was_scraped() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("one", &target.url())]);
    let stream = config
        .poller_stream
        .as_ref()
        .expect("pipeline config")
        .cluster_id
        .clone();
    let mut relay = Relay::start_config(&config);
    wait_for_sample(&pushgateway, &mut relay, ("app", "one"), "up", |s| {
        s.value == 1.0
    });
    poll_until(ARRIVAL, "three scrapes", || {
        (target.requests() >= 3).then_some(())
    });

    // One message per completed scrape: nothing scraped was lost on the way out, except at most
    // one scrape that SIGTERM interrupted before its answer was read.
    relay.sigterm_and_assert_one_message_per_scrape(&nats, &stream, &target);
}

#[test]
fn the_pipeline_resumes_after_nats_server_is_killed_and_restarted_on_the_same_store() {
    let mut nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed("resume_marker 1\n".into()));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("one", &target.url())]);
    let mut relay = Relay::start_config(&config);
    let pid = relay.pid();
    wait_for_sample(
        &pushgateway,
        &mut relay,
        ("app", "one"),
        "resume_marker",
        |s| s.value == 1.0,
    );

    nats.kill9();
    target.set_behaviour(Behaviour::Fixed("resume_marker 2\n".into()));
    let during = target.requests();
    poll_until(ARRIVAL, "three scrapes while nats-server is down", || {
        relay
            .ensure_running()
            .expect("promrelay survives losing nats-server");
        (target.requests() >= during + 3).then_some(())
    });
    nats.restart();

    wait_for_sample(
        &pushgateway,
        &mut relay,
        ("app", "one"),
        "resume_marker",
        |s| s.value == 2.0,
    );
    target.set_behaviour(Behaviour::Fixed("resume_marker 3\n".into()));
    wait_for_sample(
        &pushgateway,
        &mut relay,
        ("app", "one"),
        "resume_marker",
        |s| s.value == 3.0,
    );
    assert_eq!(
        relay.pid(),
        pid,
        "the same promrelay process, never restarted"
    );
}
