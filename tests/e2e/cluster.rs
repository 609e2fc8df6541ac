//! A 3-node JetStream cluster (issue 9, item 3): `replicas: 3`, the stream leader SIGKILLed
//! mid-run, then the whole cluster restarted. The poller retries the publishes that fail
//! through the leader change with the same `Nats-Msg-Id`, so nothing is lost and nothing is
//! stored twice: counted with the scrapes the target served, the messages in the stream and the
//! `up` samples a real Prometheus stored through remote_write.
//!
//! The nodes run the config `docs/topologies.md` shows (`promrelay_tests::topology::Cluster`).

use std::time::Duration;

use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::topology::Cluster;
use promrelay_tests::{poll_until, Behaviour, Prometheus, Relay, TargetServer};

use crate::leaf::{stored, wait_stored_exactly};

const SETTLE: Duration = Duration::from_secs(120);

/// Messages in `stream`, read from its leader (followers may lag).
fn stream_messages(cluster: &Cluster, stream: &str) -> u64 {
    let leader = cluster.stream_leader(stream, None);
    cluster.nodes[leader].stream_messages(stream).unwrap_or(0)
}

#[test]
fn stream_leader_sigkill_loses_nothing_and_stores_nothing_twice_and_a_cluster_restart_resumes() {
    let mut cluster = Cluster::start();
    let prometheus = Prometheus::start_remote_write_receiver();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.to_string()));
    let stream = promrelay_tests::relay::unique_name("PROM_R3");
    let section = |role: &str| {
        format!(
            "{role}:\n  cluster_id: {stream}\n  urls: {:?}\n  replicas: 3\n  retention: 5m\n",
            cluster.urls()
        )
    };
    let yaml = format!(
        "identity: site1\nscrape_interval: 1s\nmax_age: 600\n{}  client_id: r3_receiver\n{}\
         remote_write:\n  - url: {:?}\njobs:\n  app:\n    targets:\n      - name: one\n        \
         url: {:?}\n",
        section("receiver_stream"),
        section("poller_stream"),
        prometheus.remote_write_url(),
        target.url()
    );
    let mut receiver = Relay::start_command(&["receiver"], &yaml);
    let mut poller = Relay::start_command(&["poller"], &yaml);
    let running = |relays: [&mut Relay; 2]| {
        for relay in relays {
            if let Err(error) = relay.ensure_running() {
                panic!("{error:#}");
            }
        }
    };
    poll_until(SETTLE, "3 scrapes stored in Prometheus", || {
        running([&mut receiver, &mut poller]);
        (stored(&prometheus, "site1") >= 3).then_some(())
    });

    // SIGKILL the stream's leader while scrapes keep coming; the other two elect a new one.
    let killed = cluster.kill_stream_leader(&stream);
    let at_kill = target.requests();
    poll_until(SETTLE, "5 scrapes published after the leader died", || {
        running([&mut receiver, &mut poller]);
        let leader = cluster.stream_leader(&stream, Some(killed));
        let published = cluster.nodes[leader].stream_messages(&stream).unwrap_or(0);
        (published >= at_kill + 5).then_some(())
    });
    cluster.nodes[killed].restart();

    // The whole cluster stops and starts again on its stores; the pipeline resumes.
    cluster.restart_all();
    let after_restart = target.requests();
    poll_until(
        SETTLE,
        "3 scrapes published after the cluster restart",
        || {
            running([&mut receiver, &mut poller]);
            (stream_messages(&cluster, &stream) >= after_restart + 3).then_some(())
        },
    );

    let status = poller.sigterm();
    assert!(status.success(), "the poller exited with {status}");
    let served = target.requests();
    let published = stream_messages(&cluster, &stream);
    // SIGTERM may interrupt one scrape before its answer was read; a publish retried through the
    // leader change is stored once (Nats-Msg-Id), so never more messages than scrapes.
    assert!(
        published <= served && published + 1 >= served,
        "{served} scrapes served, {published} messages in the R3 stream"
    );
    wait_stored_exactly(&prometheus, "site1", published);
    let retried = poller
        .log()
        .contains("publishing to JetStream failed, buffering and retrying");
    eprintln!(
        "R3 leader n{} SIGKILLed, cluster restarted: {served} scrapes served, {published} in the \
         stream, {published} stored in Prometheus, 0 lost, 0 twice; publishes retried: {retried}",
        killed + 1
    );
    if let Err(error) = receiver.ensure_running() {
        panic!("{error:#}");
    }
}
