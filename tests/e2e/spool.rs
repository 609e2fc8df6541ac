//! The durable spool (`spool_dir`, issue 9 item 2) and the stage-by-stage SIGTERM drain (item 5).
//!
//! The outage scenarios run the operator's processes: `promrelay poller` with a spool scraping a
//! target every second, `promrelay receiver` (its own process, left running) writing to a real
//! Prometheus through remote_write, and a real nats-server that is stopped while the poller is
//! SIGKILLed or SIGTERMed, then started again with the poller. Loss is counted, not assumed:
//! Prometheus keeps each scrape's timestamp, so the `up` samples it holds from before the stop
//! (`count_over_time(...[1h] @ STOP)`) are the scrapes of the first run that arrived, against
//! the scrapes the poller made (its `promrelay_scrapes_total`, read at a moment when no request
//! was in flight, and no more than the requests the target answered).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, parse_samples, poll_until, poll_until_ok, Behaviour, NatsServer, Prometheus, Relay,
    RelayConfig, TargetServer,
};

/// Only reached when something is broken.
const WAIT: Duration = Duration::from_secs(90);

fn metric(relay: &Relay, name: &str) -> Option<f64> {
    let text = relay.metrics_text().ok()?;
    let samples = parse_samples(&text).ok()?;
    samples.iter().find(|s| s.name == name).map(|s| s.value)
}

/// Scrapes of job app the poller made (`promrelay_scrapes_total`, every outcome).
fn app_scrapes(relay: &Relay) -> Option<u64> {
    let text = relay.metrics_text().ok()?;
    let samples = parse_samples(&text).ok()?;
    let total: f64 = samples
        .iter()
        .filter(|s| s.name == "promrelay_scrapes_total" && s.label("job") == Some("app"))
        .map(|s| s.value)
        .sum();
    Some(total as u64)
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// nats-server, Prometheus, a target, a receiver, and a poller spooling into its own directory.
struct Rig {
    nats: NatsServer,
    prometheus: Prometheus,
    target: TargetServer,
    _receiver: Relay,
    poller: Relay,
    _spool: tempfile::TempDir,
}

impl Rig {
    fn start() -> Rig {
        let nats = NatsServer::start();
        let prometheus = Prometheus::start_remote_write_receiver();
        let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
        let spool = tempfile::tempdir().expect("a temp dir for the spool");
        let mut config = RelayConfig::pipeline(&nats.url(), "http://127.0.0.1:1")
            .job("app", &[("one", &target.url())])
            .extra(&format!(
                "remote_write:\n  - url: {:?}\nspool_dir: {:?}\n",
                prometheus.remote_write_url(),
                spool.path().join("poller")
            ));
        config.push_gateway = None;
        // Nothing ages out while the broker is down.
        config.max_age = Some("600".into());
        let receiver = Relay::start_command(&["receiver"], &config.to_yaml());
        let mut poller =
            Relay::start_command(&["poller"], &config.monitor_port(free_port()).to_yaml());
        poller.wait_healthy();
        Rig {
            nats,
            prometheus,
            target,
            _receiver: receiver,
            poller,
            _spool: spool,
        }
    }

    /// `up` samples of job app Prometheus holds, those stamped at or before `at` if given.
    fn stored(&self, at: Option<f64>) -> u64 {
        let query = match at {
            Some(at) => format!("count_over_time(up{{job=\"app\"}}[1h] @ {at:.3})"),
            None => "count_over_time(up{job=\"app\"}[1h])".to_owned(),
        };
        self.prometheus
            .query_number(&query)
            .ok()
            .flatten()
            .unwrap_or(0.0) as u64
    }

    fn wait_stored(&mut self, count: u64, what: &str) {
        poll_until(WAIT, what, || {
            if let Err(error) = self.poller.ensure_running() {
                panic!("{error:#}");
            }
            (self.stored(None) >= count).then_some(())
        });
    }

    /// Runs the broker outage: NATS down, five scrapes spooled, the poller stopped by `stop`,
    /// NATS and the poller started again; asserts that every scrape made before the stop arrived.
    fn outage_with(mut self, stop: impl FnOnce(&mut Relay)) {
        self.wait_stored(3, "3 scrapes in Prometheus before the outage");
        self.nats.stop();
        let before = self.target.requests();
        // Stopped at a moment when no scrape is in flight: every request the target answered is
        // a scrape the poller made (counted once fetched and parsed).
        let made = poll_until(WAIT, "5 scrapes spooled while NATS is down", || {
            let spooled = metric(&self.poller, "promrelay_spool_records")?;
            let made = app_scrapes(&self.poller)?;
            let requested = self.target.requests();
            (requested >= before + 5 && spooled >= 5.0 && made == requested).then_some(made)
        });
        stop(&mut self.poller);
        let stopped_at = unix_seconds();
        // A request after the check is interrupted by the stop: not a scrape made.
        let requested = self.target.requests();

        self.nats.restart();
        self.poller.restart();
        poll_until_ok(
            WAIT,
            "every scrape made before the stop in Prometheus",
            || {
                if let Err(error) = self.poller.ensure_running() {
                    panic!("{error:#}");
                }
                let stored = self.stored(Some(stopped_at));
                if stored >= made && stored <= requested {
                    eprintln!("{stored} of the {made} scrapes made before the stop stored");
                    Ok(())
                } else {
                    Err(format!(
                        "{stored} of the {made} scrapes made before the stop stored: {} missing",
                        made.saturating_sub(stored)
                    ))
                }
            },
        );
        let log = self.poller.log();
        assert!(
            log.contains("scrapes left by an earlier run are published first"),
            "the restarted poller found nothing in its spool; log:\n{log}"
        );
        // And the poller goes on as usual after the replay.
        let now = self.stored(None);
        self.wait_stored(now + 2, "2 scrapes after the replay");
        let dropped = metric(&self.poller, "promrelay_spool_dropped_total").unwrap_or(0.0);
        assert_eq!(dropped, 0.0, "nothing dropped from a spool far from full");
    }
}

#[test]
fn with_a_spool_every_scrape_made_before_a_sigkill_during_a_broker_outage_arrives_after_a_restart()
{
    Rig::start().outage_with(|poller| poller.kill9());
}

#[test]
fn with_a_spool_every_scrape_made_before_a_sigterm_during_a_broker_outage_arrives_after_a_restart()
{
    Rig::start().outage_with(|poller| {
        let status = poller.sigterm();
        assert!(status.success(), "the poller exited with {status}");
        let log = poller.log();
        assert!(
            log.contains("stay in the spool"),
            "the poller did not say what it left in the spool; log:\n{log}"
        );
    });
}

/// A poller config with job app on `target`, publishing to `nats_url`, spooling into `dir`.
fn poller_yaml(nats_url: &str, target: &TargetServer, dir: &Path) -> (String, String) {
    let config = RelayConfig::poller_only(nats_url)
        .job("app", &[("one", &target.url())])
        .extra(&format!("spool_dir: {dir:?}\n"));
    let stream = config.poller_stream_name();
    (config.to_yaml(), stream)
}

/// A segment as a poller killed while writing its second record leaves it.
fn torn_segment(dir: &Path) -> PathBuf {
    use promrelay::spool::segment;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "earlier-run-1");
    let earlier = promrelay::wire::WireMessage {
        subject: "prometheus.site1.app".into(),
        headers,
        payload: b"written before the crash".to_vec().into(),
        msg_id: "earlier-run-1".into(),
    };
    let mut bytes = segment::header().to_vec();
    bytes.extend_from_slice(&segment::encode(&earlier));
    let second = segment::encode(&earlier);
    bytes.extend_from_slice(&second[..second.len() / 2]);
    std::fs::create_dir_all(dir).expect("create the spool dir");
    let path = dir.join(segment::file_name(1));
    std::fs::write(&path, bytes).expect("write the segment");
    path
}

#[test]
fn a_torn_spool_file_at_start_is_skipped_with_a_warning_and_the_relay_runs() {
    let nats = NatsServer::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let spool = tempfile::tempdir().expect("tempdir");
    let file = torn_segment(spool.path());
    let (yaml, stream) = poller_yaml(&nats.url(), &target, spool.path());
    let mut poller = Relay::start_command(&["poller"], &yaml);
    // The intact record of the earlier run, then new scrapes.
    poll_until(
        WAIT,
        "the earlier record and 2 new scrapes in the stream",
        || {
            if let Err(error) = poller.ensure_running() {
                panic!("{error:#}");
            }
            nats.stream_messages(&stream).filter(|n| *n >= 3)
        },
    );
    let log = poller.log();
    assert!(
        log.contains("the last record is torn"),
        "no warning; log:\n{log}"
    );
    assert!(
        log.contains(&file.display().to_string()),
        "the warning names no file; log:\n{log}"
    );
    poller.sigterm_and_assert_one_message_per_scrape_plus(&nats, &stream, &target, 1);
}

#[test]
fn a_spool_written_by_another_format_version_stops_the_start_naming_the_file() {
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let spool = tempfile::tempdir().expect("tempdir");
    let file = torn_segment(spool.path());
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
    std::fs::write(&file, &bytes).expect("write");
    let (yaml, _) = poller_yaml("nats://127.0.0.1:1", &target, spool.path());
    let mut poller = Relay::start_command(&["poller"], &yaml);
    let status = poller
        .wait_exit(WAIT)
        .expect("the poller stops when it cannot read its spool");
    assert!(!status.success(), "the poller exited with {status}");
    let log = poller.log();
    assert!(log.contains(&file.display().to_string()), "log:\n{log}");
    assert!(log.contains("spool format version 9"), "log:\n{log}");
    assert_eq!(
        std::fs::read(&file).expect("read"),
        bytes,
        "the file is left as it was"
    );
}

#[test]
fn a_sigterm_while_scrapes_are_inside_a_slow_filter_loses_none() {
    let nats = NatsServer::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    // Every call runs into its 1 s time limit and then passes the scrape on unchanged: a filter
    // exactly 1 s slow, whatever the machine's speed. Three targets scraped every second into
    // two calls at a time: scrapes queue up inside the filter stage.
    let module = crate::filters::wat("endless_loop.wat");
    let config = RelayConfig::poller_only(&nats.url())
        .job(
            "app",
            &[
                ("a", &target.url()),
                ("b", &target.url()),
                ("c", &target.url()),
            ],
        )
        .extra(&format!(
            "filters:\n  - name: slow\n    module: {module:?}\n    on_error: pass\n    \
             limits: {{ time: 1s }}\n"
        ));
    let stream = config.poller_stream_name();
    let mut poller = Relay::start_command(&["poller"], &config.to_yaml());
    poll_until(WAIT, "3 filtered scrapes in the stream", || {
        if let Err(error) = poller.ensure_running() {
            panic!("{error:#}");
        }
        nats.stream_messages(&stream).filter(|n| *n >= 3)
    });
    // Scrapes are inside the filter stage now: three more made than published.
    poll_until(WAIT, "3 scrapes inside the filter stage", || {
        let published = nats.stream_messages(&stream)?;
        (target.requests() >= published + 3).then_some(())
    });
    poller.sigterm_and_assert_one_message_per_scrape(&nats, &stream, &target);
}
