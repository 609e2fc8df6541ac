//! Bench: pushes/s with 1, 2 and 3 receivers sharing one durable consumer (`shared_order: true`)
//! against a real nats-server and a real Pushgateway. For each receiver count: a fresh Pushgateway and stream
//! holding `SCRAPES` scrapes of distinct groups (so each is one push, nothing coalesces), the
//! receivers started together, timed until the consumer has every message acked. Never run by the
//! tests: `scripts/bench-receivers.sh` runs it (`PROMRELAY_BIN` picks the binary).

use std::time::{Duration, Instant};

use async_nats::jetstream;
use promrelay::model::{Family, Label, MetricType, Scrape, ScrapeMeta, Series};
use promrelay::wire::{self, StreamSettings};
use promrelay_tests::{poll_until, relay::unique_name, NatsServer, Pushgateway, Relay};

fn scrape(instance: &str, time_ms: i64) -> Scrape {
    let series = (0..5)
        .map(|index| Series {
            name: "bench_value".into(),
            labels: vec![
                Label::new("device", format!("d{index}")),
                Label::new("instance", instance),
                Label::new("job", "bench"),
            ],
            value: index as f64,
            timestamp_ms: None,
        })
        .collect();
    Scrape {
        meta: ScrapeMeta {
            publisher: "site1".into(),
            job: "bench".into(),
            instance: instance.into(),
            time_ms,
        },
        families: vec![Family {
            name: "bench_value".into(),
            help: Some("Receiver bench value.".into()),
            unit: None,
            kind: MetricType::Gauge,
            series,
        }],
    }
}

fn consumer_settled(nats: &NatsServer, consumer: &str, total: u64) -> bool {
    let jsz = nats.jsz();
    let Some(accounts) = jsz["account_details"].as_array() else {
        return false;
    };
    accounts
        .iter()
        .filter_map(|account| account["stream_detail"].as_array())
        .flatten()
        .filter_map(|stream| stream["consumer_detail"].as_array())
        .flatten()
        .find(|detail| detail["name"] == consumer)
        .is_some_and(|detail| {
            detail["num_ack_pending"] == 0
                && detail["num_pending"] == 0
                && detail["ack_floor"]["stream_seq"].as_u64() == Some(total)
        })
}

fn main() -> anyhow::Result<()> {
    let scrapes: usize = std::env::var("SCRAPES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(600);
    let runtime = tokio::runtime::Runtime::new()?;
    let nats = NatsServer::start();
    let client = runtime.block_on(async_nats::connect(nats.url()))?;
    let js = {
        let _entered = runtime.enter();
        jetstream::new(client)
    };
    println!("| receivers | scrapes | seconds | pushes/s |");
    println!("|---:|---:|---:|---:|");
    for receivers in 1..=3 {
        // A fresh Pushgateway each round: its push cost grows with the groups it holds.
        let pushgateway = Pushgateway::start();
        let stream = unique_name("BENCH");
        let consumer = unique_name("bench");
        // Streams on one server may not share subjects.
        let topic = format!("bench{receivers}");
        let topic = topic.as_str();
        runtime.block_on(wire::ensure_stream(
            &js,
            &StreamSettings::new(&stream, topic),
        ))?;
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64;
        runtime.block_on(async {
            let mut acks = Vec::with_capacity(scrapes);
            for index in 0..scrapes {
                let message = wire::encode(
                    &scrape(&format!("r{receivers}-target-{index}"), time_ms),
                    topic,
                )?;
                acks.push(
                    js.send_publish(
                        message.subject,
                        jetstream::message::PublishMessage::build()
                            .headers(message.headers)
                            .payload(message.payload),
                    )
                    .await?,
                );
            }
            for ack in acks {
                ack.await?;
            }
            anyhow::Ok(())
        })?;
        let yaml = format!(
            "identity: hub\nscrape_interval: 10s\nmax_age: 3600\n\
             receiver_stream:\n  cluster_id: {stream}\n  urls: {}\n  topic: {topic}\n  \
             client_id: {consumer}\n  ack_wait: 10s\n  shared_order: true\n\
             push_gateway:\n  url: {}\n  publisher_label: true\n",
            nats.url(),
            pushgateway.url()
        );
        let started = Instant::now();
        let relays: Vec<Relay> = (0..receivers)
            .map(|_| {
                let relay = Relay::start_command(&["receiver"], &yaml);
                relay.wait_for_log("receiver consuming", Duration::from_secs(30));
                relay
            })
            .collect();
        poll_until(
            Duration::from_secs(600),
            "the receivers to push every scrape",
            || consumer_settled(&nats, &consumer, scrapes as u64).then_some(()),
        );
        let seconds = started.elapsed().as_secs_f64();
        drop(relays);
        println!(
            "| {receivers} | {scrapes} | {seconds:.1} | {:.0} |",
            scrapes as f64 / seconds
        );
    }
    Ok(())
}
