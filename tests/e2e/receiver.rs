//! The receiver against real servers: scrapes encoded with `promrelay::wire` are published into a
//! real nats-server with async-nats, `promrelay::receive::run` runs in-process, and what arrives is
//! read back from a real Pushgateway (or Prometheus for remote_write) with the harness' own parser.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use promrelay::model::{Family, Label, MetricType, Scrape, ScrapeMeta, Series};
use promrelay::receive::{self, MessageOutcome, ReceiverSettings, Stats};
use promrelay::sink::{Pushgateway as PushgatewaySink, RemoteWrite, Sink};
use promrelay::wire::{self, StreamSettings};
use promrelay_tests::{poll_until, NatsServer, Prometheus, Pushgateway, Sample};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub(crate) const TOPIC: &str = "prometheus";
pub(crate) const STREAM: &str = "RECEIVER_TEST";
pub(crate) const METRIC: &str = "relay_test_value";
pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

/// A scrape as the poller publishes it: one gauge series with the target labels added.
pub(crate) fn scrape(instance: &str, time_ms: i64, value: f64) -> Scrape {
    Scrape {
        meta: ScrapeMeta {
            publisher: "site1.example.net".into(),
            job: "node".into(),
            instance: instance.into(),
            time_ms,
        },
        families: vec![Family {
            name: METRIC.into(),
            help: Some("A value the receiver tests relay.".into()),
            unit: None,
            kind: MetricType::Gauge,
            series: vec![Series {
                name: METRIC.into(),
                labels: vec![
                    Label::new("a", "1"),
                    Label::new("instance", instance),
                    Label::new("job", "node"),
                ],
                value,
                timestamp_ms: None,
            }],
        }],
    }
}

/// One test's servers, NATS client and receiver (also used by `remote_write`).
pub(crate) struct Rig {
    pub(crate) runtime: Runtime,
    pub(crate) nats: NatsServer,
    pub(crate) js: jetstream::Context,
    pub(crate) shutdown: CancellationToken,
    pub(crate) pause: watch::Sender<bool>,
    pub(crate) stats: Option<Arc<Stats>>,
    pub(crate) receiver: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Rig {
    pub(crate) fn new() -> Rig {
        let runtime = Runtime::new().expect("a tokio runtime");
        let nats = NatsServer::start();
        let js = runtime.block_on(async {
            let client = async_nats::connect(nats.url())
                .await
                .expect("the test connects to nats-server");
            jetstream::new(client)
        });
        runtime
            .block_on(wire::ensure_stream(
                &js,
                &StreamSettings::new(STREAM, TOPIC),
            ))
            .expect("the stream is created");
        Rig {
            runtime,
            nats,
            js,
            shutdown: CancellationToken::new(),
            pause: watch::channel(false).0,
            stats: None,
            receiver: None,
        }
    }

    pub(crate) fn settings(&self, sinks: Vec<Sink>) -> ReceiverSettings {
        let mut settings = ReceiverSettings::new(
            vec![self.nats.url()],
            StreamSettings::new(STREAM, TOPIC),
            "receiver_test",
            sinks,
        );
        settings.fetch_wait = Duration::from_millis(200);
        settings.ack_wait = Duration::from_secs(5);
        settings
    }

    pub(crate) fn pushgateway_sink(pushgateway: &Pushgateway) -> Sink {
        let url = url::Url::parse(&pushgateway.url()).expect("the harness gives a valid URL");
        Sink::Pushgateway(
            PushgatewaySink::new(url, true, Duration::from_secs(5)).expect("a Pushgateway sink"),
        )
    }

    pub(crate) fn start(&mut self, settings: ReceiverSettings) {
        self.stats = Some(Arc::clone(&settings.stats));
        let paused = self.pause.subscribe();
        let shutdown = self.shutdown.clone();
        self.receiver = Some(self.runtime.spawn(receive::run(settings, shutdown, paused)));
    }

    pub(crate) fn stat(&self, outcome: MessageOutcome) -> u64 {
        self.stats
            .as_ref()
            .expect("the receiver was started")
            .get(outcome)
    }

    /// Publishes a scrape and waits for JetStream's ack; retries while the server restarts.
    pub(crate) fn publish(&self, scrape: &Scrape) {
        self.publish_as(scrape, wire::WireFormat::Batch);
    }

    /// [`Rig::publish`] with a body of this format.
    pub(crate) fn publish_as(&self, scrape: &Scrape, format: wire::WireFormat) {
        let message = wire::encode_as(scrape, TOPIC, format).expect("the scrape encodes");
        poll_until(WAIT, "JetStream to acknowledge a publish", || {
            self.runtime.block_on(async {
                let ack = self
                    .js
                    .send_publish(
                        message.subject.clone(),
                        jetstream::message::PublishMessage::build()
                            .headers(message.headers.clone())
                            .payload(message.payload.clone()),
                    )
                    .await
                    .ok()?;
                ack.await.ok()
            })
        });
    }

    fn publish_raw(&self, subject: &str, payload: &'static [u8]) {
        self.runtime.block_on(async {
            self.js
                .publish(subject.to_string(), payload.into())
                .await
                .expect("publish")
                .await
                .expect("JetStream acknowledges")
        });
    }

    /// The consumer's `num_ack_pending` and `num_pending` from the server's `/jsz`.
    pub(crate) fn consumer_pending(&self) -> Option<(u64, u64)> {
        let jsz = self.nats.jsz();
        let consumers = jsz["account_details"]
            .as_array()?
            .iter()
            .filter_map(|account| account["stream_detail"].as_array())
            .flatten()
            .filter_map(|stream| stream["consumer_detail"].as_array())
            .flatten()
            .find(|consumer| consumer["name"] == "receiver_test")?
            .clone();
        Some((
            consumers["num_ack_pending"].as_u64()?,
            consumers["num_pending"].as_u64()?,
        ))
    }

    pub(crate) fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(receiver) = self.receiver.take() {
            self.runtime
                .block_on(async { tokio::time::timeout(WAIT, receiver).await })
                .expect("the receiver stops within its drain timeout")
                .expect("the receiver task does not panic")
                .expect("the receiver returns Ok");
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The pushed `relay_test_value` series of `instance`, if present.
pub(crate) fn pushed(pushgateway: &Pushgateway, instance: &str) -> Option<Sample> {
    pushgateway
        .try_metrics_text()
        .ok()
        .and_then(|text| promrelay_tests::parse_samples(&text).ok())?
        .into_iter()
        .find(|sample| sample.name == METRIC && sample.label("instance") == Some(instance))
}

pub(crate) fn wait_for_value(pushgateway: &Pushgateway, instance: &str, value: f64) -> Sample {
    poll_until(
        WAIT,
        &format!("{METRIC}{{instance={instance:?}}} = {value} in the Pushgateway"),
        || pushed(pushgateway, instance).filter(|sample| sample.value == value),
    )
}

#[test]
fn a_published_scrape_arrives_in_the_pushgateway_with_job_instance_and_publisher_labels() {
    let pushgateway = Pushgateway::start();
    let mut rig = Rig::new();
    rig.start(rig.settings(vec![Rig::pushgateway_sink(&pushgateway)]));

    rig.publish(&scrape("h1:9100", now_ms(), 42.5));
    // An instance with a `/` travels in the Pushgateway's @base64 form.
    rig.publish(&scrape("http://h2/metrics", now_ms(), 7.0));

    let sample = wait_for_value(&pushgateway, "h1:9100", 42.5);
    assert_eq!(sample.label("job"), Some("node"));
    assert_eq!(sample.label("publisher"), Some("site1.example.net"));
    assert_eq!(sample.label("a"), Some("1"));
    let slashed = wait_for_value(&pushgateway, "http://h2/metrics", 7.0);
    assert_eq!(slashed.label("publisher"), Some("site1.example.net"));
    rig.stop();
    assert_eq!(rig.stat(MessageOutcome::Pushed), 2);
    assert_eq!(rig.consumer_pending(), Some((0, 0)), "everything acked");
}

#[test]
fn a_scrape_older_than_max_age_is_never_pushed_and_only_the_newest_of_a_group_is() {
    let pushgateway = Pushgateway::start();
    let mut rig = Rig::new();
    let now = now_ms();
    rig.publish(&scrape("old", now - 600_000, 1.0));
    rig.publish(&scrape("busy", now - 3_000, 1.0));
    rig.publish(&scrape("busy", now - 2_000, 2.0));
    rig.publish(&scrape("busy", now - 1_000, 3.0));
    // Published before the receiver starts, all four land in its first batch.
    let mut settings = rig.settings(vec![Rig::pushgateway_sink(&pushgateway)]);
    settings.max_age = Some(Duration::from_secs(60));
    rig.start(settings);

    wait_for_value(&pushgateway, "busy", 3.0);
    poll_until(WAIT, "all four messages accounted for", || {
        let done = rig.stat(MessageOutcome::Pushed)
            + rig.stat(MessageOutcome::Coalesced)
            + rig.stat(MessageOutcome::Aged);
        (done == 4).then_some(())
    });
    assert_eq!(rig.stat(MessageOutcome::Aged), 1);
    assert_eq!(rig.stat(MessageOutcome::Coalesced), 2);
    assert_eq!(rig.stat(MessageOutcome::Pushed), 1);
    assert!(
        pushed(&pushgateway, "old").is_none(),
        "the aged scrape was pushed"
    );

    // A scrape older than what was already pushed for its group is coalesced, not pushed.
    rig.publish(&scrape("busy", now - 1_500, 9.0));
    poll_until(WAIT, "the late older scrape to be coalesced", || {
        (rig.stat(MessageOutcome::Coalesced) == 3).then_some(())
    });
    assert_eq!(pushed(&pushgateway, "busy").map(|s| s.value), Some(3.0));
    rig.stop();
}

#[test]
fn a_pushgateway_outage_loses_no_scrape_younger_than_max_age() {
    let mut pushgateway = Pushgateway::start();
    let mut rig = Rig::new();
    let mut settings = rig.settings(vec![Rig::pushgateway_sink(&pushgateway)]);
    settings.max_age = Some(Duration::from_secs(600));
    rig.start(settings);
    rig.publish(&scrape("before", now_ms(), 1.0));
    wait_for_value(&pushgateway, "before", 1.0);

    pushgateway.stop();
    rig.publish(&scrape("during-1", now_ms(), 2.0));
    rig.publish(&scrape("during-2", now_ms(), 3.0));
    poll_until(WAIT, "a push to fail and be left for retry", || {
        (rig.stat(MessageOutcome::Retried) > 0).then_some(())
    });
    pushgateway.start_again();

    wait_for_value(&pushgateway, "during-1", 2.0);
    wait_for_value(&pushgateway, "during-2", 3.0);
    wait_for_value(&pushgateway, "before", 1.0);
    poll_until(WAIT, "every message acked", || {
        (rig.consumer_pending() == Some((0, 0))).then_some(())
    });
    rig.stop();
}

#[test]
fn a_refused_or_undecodable_scrape_is_acked_counted_and_does_not_block_the_stream() {
    let pushgateway = Pushgateway::start();
    let mut rig = Rig::new();
    rig.start(rig.settings(vec![Rig::pushgateway_sink(&pushgateway)]));
    rig.publish(&scrape("first", now_ms(), 1.0));
    wait_for_value(&pushgateway, "first", 1.0);
    // The same metric name as another group's gauge, typed counter: the Pushgateway answers 400
    // (its metrics must stay consistent across groups).
    let mut refused = scrape("conflict", now_ms(), 2.0);
    refused.families[0].kind = MetricType::Counter;
    rig.publish(&refused);
    rig.publish_raw(&format!("{TOPIC}.garbage.node"), b"\x00 not a scrape");

    poll_until(WAIT, "the refused scrape to be counted", || {
        (rig.stat(MessageOutcome::Rejected) == 1).then_some(())
    });
    poll_until(WAIT, "the garbage message to be counted", || {
        (rig.stat(MessageOutcome::DecodeError) == 1).then_some(())
    });
    rig.publish(&scrape("after", now_ms(), 5.0));
    wait_for_value(&pushgateway, "after", 5.0);
    poll_until(WAIT, "every message acked", || {
        (rig.consumer_pending() == Some((0, 0))).then_some(())
    });
    assert!(pushed(&pushgateway, "conflict").is_none());
    rig.stop();
}

#[test]
fn the_receiver_resumes_after_nats_server_is_killed_and_restarted_on_the_same_store() {
    let pushgateway = Pushgateway::start();
    let mut rig = Rig::new();
    rig.start(rig.settings(vec![Rig::pushgateway_sink(&pushgateway)]));
    rig.publish(&scrape("h1", now_ms(), 1.0));
    wait_for_value(&pushgateway, "h1", 1.0);

    rig.nats.kill9();
    rig.nats.restart();
    rig.publish(&scrape("h1", now_ms(), 2.0));
    rig.publish(&scrape("h2", now_ms(), 3.0));

    wait_for_value(&pushgateway, "h1", 2.0);
    wait_for_value(&pushgateway, "h2", 3.0);
    rig.stop();
}

#[test]
fn a_paused_receiver_leaves_messages_on_the_stream_until_resumed() {
    let pushgateway = Pushgateway::start();
    let mut rig = Rig::new();
    rig.pause.send_replace(true);
    rig.start(rig.settings(vec![Rig::pushgateway_sink(&pushgateway)]));
    rig.publish(&scrape("held", now_ms(), 4.0));
    // The consumer exists (created before pausing takes effect) and holds the message.
    poll_until(WAIT, "the consumer to hold one pending message", || {
        (rig.consumer_pending() == Some((0, 1))).then_some(())
    });
    assert_eq!(rig.stat(MessageOutcome::Pushed), 0);
    rig.pause.send_replace(false);
    wait_for_value(&pushgateway, "held", 4.0);
    rig.stop();
}

#[test]
fn remote_write_delivers_scrapes_into_prometheus() {
    let prometheus = Prometheus::start_remote_write_receiver();
    let mut rig = Rig::new();
    let url = url::Url::parse(&prometheus.remote_write_url()).expect("a valid URL");
    let sink = RemoteWrite::new(url, true, Duration::from_secs(5)).expect("a remote_write sink");
    rig.start(rig.settings(vec![Sink::RemoteWrite(sink)]));
    rig.publish(&scrape("rw1", now_ms(), 12.5));

    let query = format!("{METRIC}{{instance=\"rw1\"}}");
    let result = poll_until(WAIT, "Prometheus to return the written sample", || {
        prometheus
            .query(&query)
            .ok()
            .filter(|result| !result.is_empty())
    });
    let series = &result[0];
    assert_eq!(series["metric"]["job"], "node");
    assert_eq!(series["metric"]["publisher"], "site1.example.net");
    assert_eq!(series["metric"]["a"], "1");
    assert_eq!(series["value"][1], "12.5");
    rig.stop();
    assert_eq!(rig.stat(MessageOutcome::Pushed), 1);
}

#[test]
fn a_prometheus_streams_json_message_of_a_whole_node_exporter_scrape_arrives_series_for_series() {
    use std::io::Write as _;

    let pushgateway = Pushgateway::start();
    let mut rig = Rig::new();
    let text = include_str!("../data/node_exporter.prom");
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(text.as_bytes()).expect("gzip into a Vec");
    let scrape = base64_standard(&gzip.finish().expect("gzip into a Vec"));
    let message = serde_json::json!({
        "job": "legacy",
        "instance": "choria1",
        "time": now_ms() / 1000,
        "publisher": "USDC1",
        "scrape": scrape,
    });
    let payload = serde_json::to_vec(&message).expect("JSON");
    rig.runtime.block_on(async {
        rig.js
            .publish(format!("{TOPIC}.USDC1.legacy"), payload.into())
            .await
            .expect("publish")
            .await
            .expect("JetStream acknowledges")
    });
    rig.start(rig.settings(vec![Rig::pushgateway_sink(&pushgateway)]));

    let expected = promrelay_tests::parse_samples(text).expect("the captured scrape parses");
    let arrived = poll_until(WAIT, "the legacy scrape in the Pushgateway", || {
        let pushed = pushgateway.pushed_series_for("legacy");
        (!pushed.is_empty()).then_some(pushed)
    });
    assert_eq!(arrived.len(), expected.len(), "every series arrives");
    for sample in &arrived {
        assert_eq!(sample.label("instance"), Some("choria1"));
        assert_eq!(sample.label("publisher"), Some("USDC1"));
        let key = sample.key_without(&["instance", "job", "publisher"]);
        let original = expected
            .iter()
            .find(|candidate| candidate.key() == key)
            .unwrap_or_else(|| panic!("{key} was not in the scrape"));
        assert!(
            sample.same_value(original),
            "{key}: {} != {}",
            sample.value,
            original.value
        );
    }
    rig.stop();
}

#[test]
fn a_text_message_of_an_earlier_promrelay_and_a_batch_message_both_arrive_series_for_series() {
    let pushgateway = Pushgateway::start();
    let mut rig = Rig::new();
    let text = include_str!("../data/node_exporter.prom");
    let families = promrelay::exposition::parse(text.as_bytes()).expect("the capture parses");
    for (instance, format) in [
        ("old-poller", wire::WireFormat::Text),
        ("new-poller", wire::WireFormat::Batch),
    ] {
        let mut scrape = Scrape {
            meta: promrelay::model::ScrapeMeta {
                publisher: "P1".into(),
                job: "formats".into(),
                instance: instance.into(),
                time_ms: now_ms(),
            },
            families: families.clone(),
        };
        scrape.add_target_labels("formats", instance);
        rig.publish_as(&scrape, format);
    }
    rig.start(rig.settings(vec![Rig::pushgateway_sink(&pushgateway)]));
    let expected = promrelay_tests::parse_samples(text).expect("the captured scrape parses");
    let arrived = poll_until(WAIT, "both scrapes in the Pushgateway", || {
        let pushed = pushgateway.pushed_series_for("formats");
        let count = |instance: &str| {
            pushed
                .iter()
                .filter(|s| s.label("instance") == Some(instance))
                .count()
        };
        (count("old-poller") == expected.len() && count("new-poller") == expected.len())
            .then_some(pushed)
    });
    for sample in &arrived {
        let key = sample.key_without(&["instance", "job", "publisher"]);
        let original = expected
            .iter()
            .find(|candidate| candidate.key() == key)
            .unwrap_or_else(|| panic!("{key} was not in the scrape"));
        assert!(sample.same_value(original), "{key}");
    }
    rig.stop();
}

/// Standard base64, as Go's JSON encodes a `[]byte`.
fn base64_standard(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn an_existing_stream_with_other_subjects_or_storage_is_refused_naming_the_difference() {
    let rig = Rig::new();
    // Same name as the rig's stream (subjects `prometheus.>`, file storage), other topic.
    let other_topic = StreamSettings::new(STREAM, "metrics");
    let error = rig
        .runtime
        .block_on(wire::ensure_stream(&rig.js, &other_topic))
        .expect_err("a stream without metrics.> is refused");
    let text = format!("{error:#}");
    assert!(
        text.contains("metrics.>") && text.contains("prometheus.>"),
        "{text}"
    );

    let mut in_memory = StreamSettings::new(STREAM, TOPIC);
    in_memory.storage = async_nats::jetstream::stream::StorageType::Memory;
    let error = rig
        .runtime
        .block_on(wire::ensure_stream(&rig.js, &in_memory))
        .expect_err("another storage is refused");
    assert!(format!("{error:#}").contains("storage"), "{error:#}");

    // The matching definition is accepted as it is.
    rig.runtime
        .block_on(wire::ensure_stream(
            &rig.js,
            &StreamSettings::new(STREAM, TOPIC),
        ))
        .expect("the same settings are accepted");
}
