//! remote_write gets every scrape, the Pushgateway the newest (issue 11, item 5).
//!
//! The pipeline scenarios run the operator's processes: `promrelay poller` scraping a real
//! node_exporter every second, `promrelay receiver` (its own process, so it can be killed)
//! writing to a real Prometheus (`--web.enable-remote-write-receiver`) and a real Pushgateway,
//! through a real nats-server. Each counts the scrapes the poller published (the stream's
//! messages: one per scrape, the poller stopped first) against the `up` samples Prometheus
//! stored for the job, and checks that the Pushgateway holds the newest scrape
//! (`node_time_seconds` there equals the last one Prometheus stored).
//!
//! The in-process tests (`receiver::Rig`) pin the rules the scenarios rely on: several
//! remote_write endpoints with one down, a re-sent scrape Prometheus already has, and the
//! messages a killed receiver left unacknowledged.

use std::time::Duration;

use promrelay_tests::{
    poll_until, poll_until_ok, NatsServer, NodeExporter, Prometheus, Pushgateway, Relay,
    RelayConfig,
};

/// Long enough for everything a debug-built relay does on a loaded machine, including a
/// restarted receiver waiting out `ack_wait` (60 s) for its predecessor's messages.
const SETTLE: Duration = Duration::from_secs(150);

/// The real servers and the two relay processes of one scenario.
struct Pipeline {
    nats: NatsServer,
    pushgateway: Pushgateway,
    prometheus: Prometheus,
    _node: NodeExporter,
    poller: Relay,
    receiver: Relay,
    stream: String,
}

impl Pipeline {
    /// Poller and receiver with the Pushgateway and one remote_write endpoint, job `node`
    /// scraping node_exporter every second.
    fn start() -> Pipeline {
        let nats = NatsServer::start();
        let pushgateway = Pushgateway::start();
        let prometheus = Prometheus::start_remote_write_receiver();
        let node = NodeExporter::start();
        let mut config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
            .job("node", &[("node1", &node.metrics_url())])
            .extra(&format!(
                "remote_write:\n  - url: {:?}\n",
                prometheus.remote_write_url()
            ));
        // Long enough that nothing ages out while the receiver waits for a predecessor's messages.
        config.max_age = Some("600".into());
        let stream = config
            .poller_stream
            .as_ref()
            .expect("the pipeline config has a poller_stream")
            .cluster_id
            .clone();
        let yaml = config.to_yaml();
        let receiver = Relay::start_command(&["receiver"], &yaml);
        let poller = Relay::start_command(&["poller"], &yaml);
        Pipeline {
            nats,
            pushgateway,
            prometheus,
            _node: node,
            poller,
            receiver,
            stream,
        }
    }

    /// Scrapes the poller published so far.
    fn published(&self) -> u64 {
        self.nats.stream_messages(&self.stream).unwrap_or(0)
    }

    /// `up` samples of job node Prometheus stored.
    fn stored(&self) -> u64 {
        self.prometheus
            .query_number("count_over_time(up{job=\"node\"}[1h])")
            .ok()
            .flatten()
            .unwrap_or(0.0) as u64
    }

    /// Waits until the poller has published `count` scrapes in all.
    fn wait_published(&mut self, count: u64, what: &str) {
        poll_until(SETTLE, what, || {
            if let Err(error) = self.poller.ensure_running() {
                panic!("{error:#}");
            }
            (self.published() >= count).then_some(())
        });
    }

    /// Waits until Prometheus stored at least `count` scrapes.
    fn wait_stored(&self, count: u64) {
        poll_until(SETTLE, &format!("{count} up samples in Prometheus"), || {
            (self.stored() >= count).then_some(())
        });
    }

    /// The Pushgateway's `node_time_seconds` of job node: which scrape it holds.
    fn pushgateway_node_time(&self) -> Option<f64> {
        self.pushgateway
            .pushed_series_for("node")
            .iter()
            .find(|sample| sample.name == "node_time_seconds")
            .map(|sample| sample.value)
    }

    /// Stops the poller, then waits until Prometheus holds one `up` sample per published scrape
    /// and the Pushgateway the newest scrape; returns the number of scrapes.
    fn stop_poller_and_assert_nothing_lost(mut self) -> u64 {
        let status = self.poller.sigterm();
        assert!(status.success(), "the poller exited with {status}");
        let published = self.published();
        assert!(published >= 10, "only {published} scrapes published");
        let receiver = &mut self.receiver;
        let prometheus = &self.prometheus;
        poll_until_ok(
            SETTLE,
            "every published scrape stored in Prometheus",
            || {
                if let Err(error) = receiver.ensure_running() {
                    panic!("{error:#}");
                }
                let stored = prometheus
                    .query_number("count_over_time(up{job=\"node\"}[1h])")
                    .ok()
                    .flatten()
                    .unwrap_or(0.0) as u64;
                if stored == published {
                    Ok(())
                } else {
                    Err(format!(
                        "{stored} of {published} scrapes stored: {} lost",
                        published.saturating_sub(stored)
                    ))
                }
            },
        );
        let newest = self
            .prometheus
            .query_number("last_over_time(node_time_seconds{job=\"node\"}[1h])")
            .expect("Prometheus answers the query")
            .expect("Prometheus holds node_time_seconds");
        poll_until_ok(
            SETTLE,
            "the Pushgateway to hold the newest scrape",
            || match self.pushgateway_node_time() {
                Some(value) if value == newest => Ok(()),
                other => Err(format!(
                    "Pushgateway node_time_seconds {other:?}, newest scrape {newest}"
                )),
            },
        );
        published
    }
}

#[test]
fn without_faults_remote_write_stores_every_scrape_and_the_pushgateway_the_newest() {
    let mut pipeline = Pipeline::start();
    pipeline.wait_published(30, "30 scrapes published");
    pipeline.stop_poller_and_assert_nothing_lost();
}

#[test]
fn a_receiver_killed_and_restarted_ten_scrapes_later_loses_no_scrape_for_remote_write() {
    let mut pipeline = Pipeline::start();
    pipeline.wait_stored(5);
    pipeline.receiver.kill9();
    let killed_at = pipeline.published();
    pipeline.wait_published(
        killed_at + 10,
        "10 scrapes published while the receiver is down",
    );
    pipeline.receiver.restart();
    pipeline.wait_published(killed_at + 20, "10 more scrapes after the restart");
    pipeline.stop_poller_and_assert_nothing_lost();
}

#[test]
fn prometheus_down_for_twenty_scrapes_loses_none_and_the_pushgateway_keeps_getting_the_newest() {
    let mut pipeline = Pipeline::start();
    pipeline.wait_stored(5);
    pipeline.prometheus.stop();
    let stopped_at = pipeline.published();
    let before = poll_until(SETTLE, "the Pushgateway to hold a scrape", || {
        pipeline.pushgateway_node_time()
    });
    pipeline.wait_published(
        stopped_at + 20,
        "20 scrapes published while Prometheus is down",
    );
    // A remote_write endpoint being down does not hold the Pushgateway back.
    poll_until(
        SETTLE,
        "the Pushgateway to get newer scrapes while Prometheus is down",
        || pipeline.pushgateway_node_time().filter(|now| *now > before),
    );
    pipeline.prometheus.start_again();
    pipeline.wait_published(stopped_at + 25, "5 more scrapes after Prometheus is back");
    pipeline.stop_poller_and_assert_nothing_lost();
}

mod in_process {
    use std::time::Duration;

    use async_nats::jetstream::consumer;
    use futures::StreamExt as _;
    use promrelay::receive::MessageOutcome;
    use promrelay::sink::{Outcome, RemoteWrite, Sink};
    use promrelay_tests::{poll_until, Prometheus, Pushgateway};

    use crate::receiver::{now_ms, scrape, wait_for_value, Rig, METRIC, STREAM, WAIT};

    fn remote_write(prometheus: &Prometheus) -> RemoteWrite {
        let url = url::Url::parse(&prometheus.remote_write_url()).expect("a valid URL");
        RemoteWrite::new(url, true, Duration::from_secs(5)).expect("a remote_write sink")
    }

    /// Samples of `instance` Prometheus stored.
    fn stored(prometheus: &Prometheus, instance: &str) -> u64 {
        prometheus
            .query_number(&format!(
                "count_over_time({METRIC}{{instance=\"{instance}\"}}[1h])"
            ))
            .ok()
            .flatten()
            .unwrap_or(0.0) as u64
    }

    fn wait_stored(prometheus: &Prometheus, instance: &str, count: u64) {
        poll_until(
            WAIT * 2,
            &format!(
                "{count} samples of {instance} in Prometheus at {}",
                prometheus.url()
            ),
            || (stored(prometheus, instance) == count).then_some(()),
        );
    }

    #[test]
    fn with_one_remote_write_endpoint_down_the_others_get_each_scrape_once_and_it_catches_up_in_order(
    ) {
        let pushgateway = Pushgateway::start();
        let up = Prometheus::start_remote_write_receiver();
        let mut down = Prometheus::start_remote_write_receiver();
        down.stop();
        let mut rig = Rig::new();
        let mut settings = rig.settings(vec![
            Rig::pushgateway_sink(&pushgateway),
            Sink::RemoteWrite(remote_write(&up)),
            Sink::RemoteWrite(remote_write(&down)),
        ]);
        settings.max_age = Some(Duration::from_secs(600));
        rig.start(settings);
        let start = now_ms() - 60_000;
        for i in 0..10 {
            rig.publish(&scrape("h1", start + i * 1_000, i as f64));
        }
        wait_stored(&up, "h1", 10);
        wait_for_value(&pushgateway, "h1", 9.0);
        for i in 10..15 {
            rig.publish(&scrape("h1", start + i * 1_000, i as f64));
        }
        wait_stored(&up, "h1", 15);
        wait_for_value(&pushgateway, "h1", 14.0);
        // Nothing is acked while one endpoint still needs it.
        poll_until(
            WAIT,
            "15 unacked messages kept for the endpoint that is down",
            || {
                rig.consumer_pending()
                    .filter(|(ack_pending, pending)| ack_pending + pending == 15)
            },
        );

        down.start_again();
        wait_stored(&down, "h1", 15);
        poll_until(WAIT, "every message acked", || {
            (rig.consumer_pending() == Some((0, 0))).then_some(())
        });
        rig.stop();
        let requests = |prometheus: &Prometheus, code: &str| {
            prometheus
                .write_requests(code)
                .expect("Prometheus' own metrics")
        };
        assert_eq!(
            requests(&up, "204"),
            15,
            "one request per scrape, no duplicates"
        );
        assert_eq!(
            requests(&up, "400"),
            0,
            "nothing re-sent to the endpoint that stayed up"
        );
        assert_eq!(
            requests(&down, "400"),
            0,
            "the endpoint that was down got them in order"
        );
        assert_eq!(rig.stat(MessageOutcome::Pushed), 15);
        wait_for_value(&pushgateway, "h1", 14.0);
    }

    #[test]
    fn scrapes_re_sent_after_a_crash_that_prometheus_already_has_are_acked_not_refused() {
        let prometheus = Prometheus::start_remote_write_receiver();
        let mut rig = Rig::new();
        let sink = remote_write(&prometheus);
        let start = now_ms() - 10_000;
        // A receiver that pushed these and died before acking: Prometheus and the stream have them.
        for i in 0..3 {
            let scrape = scrape("again", start + i * 1_000, i as f64);
            rig.publish(&scrape);
            let batch = promrelay::batch::ScrapeBatch::from_scrape(&scrape).expect("encodes");
            assert_eq!(rig.runtime.block_on(sink.push(&batch)), Outcome::Ok);
        }
        rig.start(rig.settings(vec![Sink::RemoteWrite(sink)]));
        poll_until(WAIT, "the three re-sent scrapes accounted for", || {
            (rig.stat(MessageOutcome::Pushed) == 3).then_some(())
        });
        poll_until(WAIT, "every message acked", || {
            (rig.consumer_pending() == Some((0, 0))).then_some(())
        });
        rig.stop();
        assert_eq!(rig.stat(MessageOutcome::Rejected), 0);
        assert_eq!(
            prometheus
                .write_requests("400")
                .expect("Prometheus' own metrics"),
            2,
            "the two older ones answered 400 out of order (the newest is an accepted exact copy)"
        );
        assert_eq!(stored(&prometheus, "again"), 3);
    }

    #[test]
    fn messages_a_killed_receiver_left_unacknowledged_reach_remote_write_before_newer_ones() {
        let prometheus = Prometheus::start_remote_write_receiver();
        let mut rig = Rig::new();
        let start = now_ms() - 30_000;
        for i in 0..2 {
            rig.publish(&scrape("orphan", start + i * 1_000, i as f64));
        }
        // A receiver that fetched these two and was killed: delivered, never acked.
        rig.runtime.block_on(async {
            let stream = rig.js.get_stream(STREAM).await.expect("the rig's stream");
            let consumer = stream
                .get_or_create_consumer(
                    "receiver_test",
                    consumer::pull::Config {
                        durable_name: Some("receiver_test".into()),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(5),
                        ..consumer::pull::Config::default()
                    },
                )
                .await
                .expect("the durable consumer");
            let mut batch = consumer
                .fetch()
                .max_messages(2)
                .messages()
                .await
                .expect("a fetch");
            let mut fetched = 0;
            while let Some(message) = batch.next().await {
                message.expect("a message");
                fetched += 1;
            }
            assert_eq!(fetched, 2);
        });
        for i in 2..5 {
            rig.publish(&scrape("orphan", start + i * 1_000, i as f64));
        }
        rig.start(rig.settings(vec![Sink::RemoteWrite(remote_write(&prometheus))]));
        wait_stored(&prometheus, "orphan", 5);
        poll_until(WAIT, "every message acked", || {
            (rig.consumer_pending() == Some((0, 0))).then_some(())
        });
        rig.stop();
        assert_eq!(
            prometheus
                .write_requests("400")
                .expect("Prometheus' own metrics"),
            0,
            "nothing arrived out of order"
        );
    }
}
