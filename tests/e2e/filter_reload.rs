//! Hot swap in a running relay (real nats-server and Pushgateway): reading a module file starts
//! no reload, a reload that finds nothing changed is quiet (watcher, SIGHUP, `POST /-/reload`),
//! real changes still swap, and a refused candidate's errors belong to the reload, never to the
//! running filter.

use std::path::Path;
use std::time::{Duration, Instant};

use promrelay_tests::{
    free_port, parse_samples, poll_until, Behaviour, NatsServer, Pushgateway, Relay, RelayConfig,
    TargetServer,
};

use crate::filters::{filter_yaml, filters_status, install, wait_for, wat, ARRIVAL};
use crate::management::{events, watch, Seen};

const TOKEN: &str = "reload-token";

/// Bound on a module change being swapped in. A swap takes a debounce of 30 ms plus compiling a
/// small WAT module; the bound is wide because the machine may be loaded: the figure measured
/// is printed.
const SWAP: Duration = Duration::from_secs(10);

/// The value of the relay's own metric `name` whose labels include `labels`; 0 when absent.
fn metric(relay: &Relay, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = relay.metrics_text().expect("GET the relay's /metrics");
    parse_samples(&text)
        .expect("the relay's /metrics parses")
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

fn reloads(relay: &Relay, result: &str) -> f64 {
    metric(
        relay,
        "promrelay_filter_reloads_total",
        &[("result", result)],
    )
}

fn lifecycle(seen: &Seen, kind: &str) -> Vec<serde_json::Value> {
    events(seen)
        .into_iter()
        .filter(|event| event["protocol"] == format!("choria:lifecycle:{kind}:1"))
        .collect()
}

fn occurrences(relay: &Relay, needle: &str) -> usize {
    relay.log().matches(needle).count()
}

/// A relay scraping `target` as job `app` through the job's own filter `site` (`module`): a
/// global one would also filter the relay's own job, and its calls would not match `target`'s
/// scrapes.
fn start(
    nats: &NatsServer,
    pushgateway: &Pushgateway,
    target: &TargetServer,
    module: &Path,
) -> Relay {
    let filters = format!("filters:\n{}", filter_yaml("", "site", module, "drop", ""));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .monitor_port(free_port())
        .job_with("app", &filters, &[("one", &target.url())])
        .extra(&format!("management:\n  token: {TOKEN}\n"));
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    relay
}

/// Waits until `/api/v1/filters` shows a module hash other than `old`; returns it and the time
/// it took from `since`.
fn wait_swapped(
    relay: &Relay,
    old: &serde_json::Value,
    since: Instant,
    what: &str,
) -> serde_json::Value {
    let hash = poll_until(SWAP, &format!("{what} to be swapped in"), || {
        let hash = filters_status(relay)["filters"][0]["hash"].clone();
        (hash != *old).then_some(hash)
    });
    eprintln!("{what}: swapped in after {:?}", since.elapsed());
    hash
}

/// Polls until the target served `more` scrapes beyond what it served now.
fn scrapes_later(target: &TargetServer, more: u64) {
    let now = target.requests();
    poll_until(ARRIVAL, &format!("{more} more scrapes"), || {
        (target.requests() >= now + more).then_some(())
    });
}

#[test]
fn reading_a_module_starts_no_reload_and_real_changes_still_swap() {
    let nats = NatsServer::start();
    let (_runtime, seen) = watch(&nats.url(), &["choria.lifecycle.event.>"]);
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed("read_marker 1\n".into()));
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("site.wat");
    install(&wat("pass.wat"), &module);
    let mut relay = start(&nats, &pushgateway, &target, &module);
    wait_for(&pushgateway, &mut relay, "app", "read_marker", 1.0, |_| {
        true
    });
    let loads = poll_until(ARRIVAL, "the filter_load event of the start", || {
        let loads = lifecycle(&seen, "filter_load");
        (!loads.is_empty()).then_some(loads.len())
    });
    let successes = reloads(&relay, "success");
    let logged = occurrences(&relay, "filter chains reloaded");
    assert_eq!(logged, 1, "the start's load");

    for _ in 0..100 {
        std::fs::read(&module).expect("read the module");
    }
    // Several scrapes later the watcher has long seen every event of those reads.
    scrapes_later(&target, 3);
    let calls = metric(
        &relay,
        "promrelay_filter_calls_total",
        &[("filter", "site")],
    );
    let scraped = target.requests() as f64;
    assert!(
        calls <= scraped,
        "{calls} filter calls for {scraped} scrapes: reads started dry runs"
    );
    assert_eq!(
        reloads(&relay, "success"),
        successes,
        "reads started reloads"
    );
    assert_eq!(reloads(&relay, "failure"), 0.0);
    assert_eq!(occurrences(&relay, "filter chains reloaded"), logged);

    // SIGHUP and POST /-/reload with nothing changed: quiet no-ops for the filter chain.
    relay.sighup();
    relay.wait_for_log("filters unchanged", ARRIVAL);
    promrelay::tls::install_crypto_provider();
    let answer = reqwest::blocking::Client::new()
        .post(format!("{}/-/reload", relay.monitor_url()))
        .bearer_auth(TOKEN)
        .send()
        .expect("POST /-/reload");
    assert_eq!(answer.status().as_u16(), 200);
    let text = answer.text().expect("reload answer");
    assert!(text.contains("filters unchanged"), "{text}");
    assert_eq!(reloads(&relay, "success"), successes);
    assert_eq!(occurrences(&relay, "filter chains reloaded"), logged);
    assert_eq!(lifecycle(&seen, "filter_load").len(), loads);
    let calls_after = metric(
        &relay,
        "promrelay_filter_calls_total",
        &[("filter", "site")],
    );
    assert!(calls_after <= target.requests() as f64, "no dry run");

    // Real changes: a different module renamed into place, then one rewritten in place.
    let hash = filters_status(&relay)["filters"][0]["hash"].clone();
    let started = Instant::now();
    install(&wat("mask_even.wat"), &module);
    let hash = wait_swapped(&relay, &hash, started, "a module renamed into place");
    assert_eq!(reloads(&relay, "success"), successes + 1.0);
    let started = Instant::now();
    std::fs::write(&module, std::fs::read(wat("copy.wat")).expect("copy.wat"))
        .expect("rewrite the module in place");
    wait_swapped(&relay, &hash, started, "a module rewritten in place");
    assert_eq!(reloads(&relay, "success"), successes + 2.0);
    assert_eq!(reloads(&relay, "failure"), 0.0);
    relay.ensure_running().expect("the relay keeps running");
}

#[test]
fn a_refused_candidate_is_charged_to_the_reload_never_to_the_running_filter() {
    let nats = NatsServer::start();
    let (_runtime, seen) = watch(&nats.url(), &["choria.lifecycle.event.>"]);
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed("candidate_marker 0\n".into()));
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("site.wat");
    install(&wat("pass.wat"), &module);
    let mut relay = start(&nats, &pushgateway, &target, &module);
    // A scrape went through the chain: the relay has a last scrape to dry-run a candidate on.
    wait_for(
        &pushgateway,
        &mut relay,
        "app",
        "candidate_marker",
        0.0,
        |_| true,
    );
    let good = filters_status(&relay)["filters"][0]["hash"].clone();
    let errors = |relay: &Relay| {
        metric(
            relay,
            "promrelay_filter_errors_total",
            &[("filter", "site")],
        )
    };
    assert_eq!(errors(&relay), 0.0);
    assert_eq!(reloads(&relay, "failure"), 0.0);

    install(&wat("trap_process.wat"), &module);
    let refusal = poll_until(ARRIVAL, "the candidate to be refused", || {
        filters_status(&relay)["reload"]["last_error"]
            .as_str()
            .map(str::to_owned)
    });
    assert!(
        refusal.contains("dry run") && refusal.contains("trapped"),
        "{refusal}"
    );

    // Scrapes still flow through the old chain.
    target.set_behaviour(Behaviour::Fixed("candidate_marker 1\n".into()));
    wait_for(
        &pushgateway,
        &mut relay,
        "app",
        "candidate_marker",
        1.0,
        |_| true,
    );
    let status = filters_status(&relay);
    let running = &status["filters"][0];
    assert_eq!(running["hash"], good, "{status}");
    assert_eq!(running["errors"], 0, "{status}");
    assert_eq!(running["last_error"], serde_json::Value::Null, "{status}");
    assert_eq!(
        errors(&relay),
        0.0,
        "promrelay_filter_errors_total of the running filter"
    );
    assert_eq!(reloads(&relay, "failure"), 1.0);
    let refused: Vec<_> = lifecycle(&seen, "filter_load")
        .into_iter()
        .filter(|event| event["result"] == "failure")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("dry run")),
        "{:#}",
        refused[0]
    );
    assert_eq!(
        lifecycle(&seen, "filter_failure"),
        Vec::<serde_json::Value>::new()
    );
    let log = relay.log();
    assert!(!log.contains("filter call failed"), "{log}");
    assert_eq!(log.matches("filter reload refused").count(), 1, "{log}");
}
