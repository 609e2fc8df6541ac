//! Receivers that scale out: several `promrelay receiver` processes with the same config share
//! one durable consumer (`client_id`) with `shared_order: true`, against a real nats-server and a
//! real Pushgateway. Scrapes are published with `promrelay::wire` (as the poller does), so the
//! test knows every scrape made; a watcher polls the Pushgateway while it runs and fails if a
//! group's pushed value (its scrape round) ever goes down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use promrelay_tests::{parse_samples, poll_until, Pushgateway, Relay};

use crate::receiver::{now_ms, scrape, Rig, METRIC, STREAM, TOPIC, WAIT};

const GROUPS: usize = 12;

/// The receiver config every instance runs: one consumer shared through `shared_order`.
fn receiver_yaml(rig: &Rig, pushgateway: &Pushgateway) -> String {
    format!(
        "identity: hub\nscrape_interval: 10s\n\
         receiver_stream:\n  cluster_id: {STREAM}\n  urls: {}\n  topic: {TOPIC}\n  \
         client_id: receiver_test\n  ack_wait: 2s\n  shared_order: true\n\
         push_gateway:\n  url: {}\n  publisher_label: true\n  timeout: 5s\n",
        rig.nats.url(),
        pushgateway.url()
    )
}

fn start_receivers(yaml: &str, count: usize) -> Vec<Relay> {
    (0..count)
        .map(|_| {
            let relay = Relay::start_command(&["receiver"], yaml);
            relay.wait_for_log("receiver consuming", WAIT);
            relay
        })
        .collect()
}

/// Per instance, the pushed value (the scrape round) as the Pushgateway shows it now.
fn pushed_rounds(pushgateway: &Pushgateway) -> HashMap<String, f64> {
    let Ok(text) = pushgateway.try_metrics_text() else {
        return HashMap::new();
    };
    parse_samples(&text)
        .unwrap_or_default()
        .into_iter()
        .filter(|sample| sample.name == METRIC)
        .filter_map(|sample| Some((sample.label("instance")?.to_string(), sample.value)))
        .collect()
}

/// Polls the Pushgateway until stopped; records every time a group's round went down.
struct Watcher {
    stop: Arc<AtomicBool>,
    backwards: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Watcher {
    fn start(pushgateway_url: String) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let backwards = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, backwards) = (Arc::clone(&stop), Arc::clone(&backwards));
            std::thread::spawn(move || {
                let mut newest: HashMap<String, f64> = HashMap::new();
                let mut polls = 0;
                while !stop.load(Ordering::SeqCst) {
                    let Ok(text) =
                        promrelay_tests::http::get_ok(&format!("{pushgateway_url}/metrics"))
                    else {
                        continue;
                    };
                    polls += 1;
                    for sample in parse_samples(&text).unwrap_or_default() {
                        let Some(instance) = sample.label("instance") else {
                            continue;
                        };
                        if sample.name != METRIC {
                            continue;
                        }
                        let seen = newest.entry(instance.to_string()).or_insert(sample.value);
                        let mut backwards = backwards.lock().expect("not poisoned");
                        if sample.value < *seen && backwards.len() < 20 {
                            backwards.push(format!(
                                "{instance}: round {} after round {seen}",
                                sample.value
                            ));
                        }
                        *seen = seen.max(sample.value);
                    }
                }
                polls
            })
        };
        Watcher {
            stop,
            backwards,
            thread: Some(thread),
        }
    }

    /// Stops polling; returns how many polls it made and every backwards step seen.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let polls = self
            .thread
            .take()
            .map(|thread| thread.join().expect("the watcher does not panic"))
            .unwrap_or_default();
        let backwards = self.backwards.lock().expect("not poisoned").clone();
        (polls, backwards)
    }
}

/// Publishes `rounds` rounds of one scrape per group, scrape times growing by round.
fn publish_rounds(rig: &Rig, rounds: std::ops::Range<usize>, base_ms: i64) {
    for round in rounds {
        for group in 0..GROUPS {
            let time_ms = base_ms + round as i64 * 1000;
            rig.publish(&scrape(&format!("target-{group}"), time_ms, round as f64));
        }
    }
}

/// Waits until every group shows `round` and the consumer has nothing unacked or pending.
fn wait_all_at(rig: &Rig, pushgateway: &Pushgateway, round: usize) {
    poll_until(
        WAIT,
        &format!("every group at round {round} in the Pushgateway"),
        || {
            let rounds = pushed_rounds(pushgateway);
            (0..GROUPS)
                .all(|group| rounds.get(&format!("target-{group}")) == Some(&(round as f64)))
                .then_some(())
        },
    );
    poll_until(WAIT, "the consumer to have every message acked", || {
        (rig.consumer_pending() == Some((0, 0))).then_some(())
    });
}

#[test]
fn three_receivers_on_one_consumer_push_every_group_and_never_an_older_scrape_after_a_newer_one() {
    let rig = Rig::new();
    let pushgateway = Pushgateway::start();
    let base_ms = now_ms() - 60_000;
    // A backlog first: the receivers' first batches hold different rounds of the same groups.
    publish_rounds(&rig, 0..20, base_ms);
    let watcher = Watcher::start(pushgateway.url());
    let _receivers = start_receivers(&receiver_yaml(&rig, &pushgateway), 3);
    publish_rounds(&rig, 20..40, base_ms);
    wait_all_at(&rig, &pushgateway, 39);
    let (polls, backwards) = watcher.finish();
    assert!(polls > 0, "the watcher polled the Pushgateway");
    assert!(
        backwards.is_empty(),
        "pushed rounds went back: {backwards:?}"
    );
}

#[test]
fn a_receiver_killed_mid_run_loses_nothing_and_its_scrapes_go_to_the_others_in_order() {
    let rig = Rig::new();
    let pushgateway = Pushgateway::start();
    let base_ms = now_ms() - 60_000;
    let watcher = Watcher::start(pushgateway.url());
    let mut receivers = start_receivers(&receiver_yaml(&rig, &pushgateway), 3);
    publish_rounds(&rig, 0..15, base_ms);
    // SIGKILL while it holds unacked messages: they come back to the others after ack_wait.
    receivers[0].kill9();
    publish_rounds(&rig, 15..30, base_ms);
    wait_all_at(&rig, &pushgateway, 29);
    let (_, backwards) = watcher.finish();
    assert!(
        backwards.is_empty(),
        "pushed rounds went back: {backwards:?}"
    );
    drop(receivers);
    // Nothing left behind on the stream: every message was acked by a surviving receiver.
    assert_eq!(rig.consumer_pending(), Some((0, 0)));
}
