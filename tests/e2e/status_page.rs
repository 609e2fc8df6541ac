//! The status page (issue 10, item 1), end to end: a combined relay scrapes a real node_exporter
//! (healthy) and a closed port (failing) through a real nats-server into a real Pushgateway;
//! headless Chromium loads `GET /` and the DOM must show both targets with their health; a
//! screenshot is kept as an artefact; HTML Tidy checks every HTML page the monitor port links,
//! and every JSON endpoint must parse. Then a pause shows per role, and a reload that removes a
//! target removes it from the page.

use std::time::Duration;

use promrelay_tests::browser::{artefacts_dir, tidy_check, Browser};
use promrelay_tests::http;
use promrelay_tests::relay::wait_up;
use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, poll_until, Behaviour, NatsServer, NodeExporter, Pushgateway, Relay, RelayConfig,
    TargetServer,
};

use crate::filters::{filter_yaml, shipped};

const TOKEN: &str = "status-page-token";

const ARRIVAL: Duration = Duration::from_secs(30);

/// The `GET /api/v1/status` answer.
fn status_of(relay: &Relay) -> serde_json::Value {
    let body = http::get_ok(&format!("{}/api/v1/status", relay.monitor_url()))
        .unwrap_or_else(|error| panic!("{error:#}"));
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"))
}

/// The target of that instance in a status answer.
fn target<'a>(status: &'a serde_json::Value, instance: &str) -> Option<&'a serde_json::Value> {
    status["targets"]
        .as_array()?
        .iter()
        .find(|target| target["instance"] == instance)
}

/// The `href="/…"` links of a page, in order, without repeats.
fn local_links(html: &str) -> Vec<String> {
    let mut links: Vec<String> = Vec::new();
    for piece in html.split("href=\"").skip(1) {
        let link = piece.split('"').next().unwrap_or_default();
        if link.starts_with('/') && !links.iter().any(|seen| seen == link) {
            links.push(link.to_owned());
        }
    }
    links
}

#[test]
fn the_status_page_shows_a_healthy_and_a_failing_target_in_a_real_browser() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let node = NodeExporter::start();
    // Nothing listens here: every scrape fails with a connection error. `&` in the URL must be
    // escaped on the page.
    let closed = format!(
        "http://127.0.0.1:{}/metrics?probe=1&why=closed",
        free_port()
    );
    let filter = filter_yaml("  ", "keep-all", &shipped("identity"), "pass", "");
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .monitor_port(free_port())
        .extra(&format!(
            "filters:\n{filter}management:\n  token: {TOKEN}\n"
        ));
    let both = config
        .clone()
        .job("node", &[("n1", &node.metrics_url()), ("closed", &closed)]);
    let mut relay = Relay::start_config(&both);
    relay.wait_healthy();
    wait_up(&pushgateway, &mut relay, "node", 1.0, ARRIVAL);

    // The data comes from the pipeline: scrapes, the publisher's acks, the receiver's pushes.
    let status = poll_until(
        ARRIVAL,
        "both targets scraped, a publish acked, a push",
        || {
            let status = status_of(&relay);
            let up = target(&status, "n1")?["health"] == "up";
            let down = target(&status, "closed")?["health"] == "down";
            let acked = !status["publisher"]["last_ack_ms"].is_null();
            let pushed = status["receiver"]["groups"]
                .as_array()
                .is_some_and(|groups| groups.iter().any(|g| g["instance"] == "n1"));
            (up && down && acked && pushed).then_some(status)
        },
    );
    let healthy = target(&status, "n1").expect("n1 listed");
    assert!(
        healthy["last_samples"].as_u64().unwrap_or(0) > 100,
        "{healthy}"
    );
    assert!(healthy["last_error"].is_null(), "{healthy}");
    let failing = target(&status, "closed").expect("closed listed");
    let error = failing["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("connection failed"), "{failing}");
    assert_eq!(status["identity"], "site1");
    assert_eq!(
        status["config_path"],
        relay.config_path().display().to_string()
    );
    assert_eq!(
        status["pause"][0],
        serde_json::json!({"role": "poller", "paused": false})
    );
    assert_eq!(status["publisher"]["connection"]["state"], "connected");
    assert!(
        status["receiver"]["sinks"][0]["pushed"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    );
    let filter = &status["filters"]["filters"][0];
    assert_eq!(filter["name"], "keep-all");
    assert!(filter["calls"].as_u64().unwrap_or(0) >= 1, "{filter}");

    let page_url = format!("{}/", relay.monitor_url());
    let browser = Browser::new();
    let dom = browser.dump_dom(&page_url);
    for (instance, health) in [("n1", "up"), ("closed", "down")] {
        let row =
            format!("data-job=\"node\" data-instance=\"{instance}\" data-health=\"{health}\"");
        assert!(dom.contains(&row), "no {row} in the DOM:\n{dom}");
    }
    assert!(
        dom.contains("probe=1&amp;why=closed"),
        "the URL's & is escaped"
    );
    assert!(
        dom.contains(&escape_text(error)),
        "the failing target's error is shown"
    );
    assert!(dom.contains("<span class=\"count\">1 of 2 up</span>"));
    assert!(
        dom.contains("data-name=\"keep-all\""),
        "the filter is listed"
    );

    let screenshot = artefacts_dir().join("status-page.png");
    browser.screenshot(&page_url, &screenshot, 1280, 1600);
    println!("status page screenshot: {}", screenshot.display());

    // Every page the monitor port links from its status page: HTML is tidy, JSON parses.
    let page = http::get_ok(&page_url).unwrap_or_else(|error| panic!("{error:#}"));
    tidy_check(&page, "GET /").unwrap_or_else(|error| panic!("{error:#}"));
    let mut checked = 0;
    for link in local_links(&page) {
        let link = link.split('#').next().unwrap_or_default().to_owned();
        if link.is_empty() || link == "/" {
            continue;
        }
        let url = format!("{}{link}", relay.monitor_url());
        let answer = http::get(&url).unwrap_or_else(|error| panic!("{error:#}"));
        // The filter explain page (issue 10, item 2) is built beside this one; until it is
        // merged its link answers 404. Every other link must answer.
        if link == "/explain" && answer.status == 404 {
            continue;
        }
        assert_eq!(answer.status, 200, "GET {link}: {}", answer.body);
        let kind = answer.header("content-type").unwrap_or_default().to_owned();
        if kind.starts_with("text/html") {
            tidy_check(&answer.body, &format!("GET {link}")).unwrap_or_else(|e| panic!("{e:#}"));
        } else if kind.starts_with("application/json") {
            serde_json::from_str::<serde_json::Value>(&answer.body).unwrap_or_else(|error| {
                panic!("GET {link} is not JSON ({error}): {}", answer.body)
            });
        }
        checked += 1;
    }
    assert!(
        checked >= 6,
        "the page links the JSON endpoints and /metrics"
    );

    // Pause state per role: pausing the receiver shows on the page, the poller still runs.
    promrelay::tls::install_crypto_provider();
    let answer = reqwest::blocking::Client::new()
        .post(format!(
            "{}/api/v1/pause?role=receiver",
            relay.monitor_url()
        ))
        .bearer_auth(TOKEN)
        .send()
        .expect("the monitor port answers the pause");
    assert_eq!(answer.status().as_u16(), 200, "{:?}", answer.text());
    let page = http::get_ok(&page_url).unwrap_or_else(|error| panic!("{error:#}"));
    assert!(page.contains("data-role=\"receiver\" data-paused=\"true\""));
    assert!(page.contains("data-role=\"poller\" data-paused=\"false\""));

    // Targets come and go with their scrape tasks: a reload without `closed` removes it.
    relay.rewrite_config(&config.job("node", &[("n1", &node.metrics_url())]).to_yaml());
    relay.sighup();
    poll_until(ARRIVAL, "target closed gone after the reload", || {
        let status = status_of(&relay);
        (target(&status, "closed").is_none() && target(&status, "n1").is_some()).then_some(())
    });
    let page = http::get_ok(&page_url).unwrap_or_else(|error| panic!("{error:#}"));
    assert!(!page.contains("data-instance=\"closed\""));
}

#[test]
fn the_status_shows_push_errors_per_sink_and_the_outage_buffer_while_servers_are_down() {
    let mut nats = NatsServer::start();
    let mut pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("one", &target.url())])
        .monitor_port(free_port());
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    let pushed = |status: &serde_json::Value| {
        status["receiver"]["groups"]
            .as_array()
            .is_some_and(|groups| groups.iter().any(|g| g["instance"] == "one"))
    };
    poll_until(ARRIVAL, "a push of app/one", || {
        pushed(&status_of(&relay)).then_some(())
    });

    // The Pushgateway down: the receiver counts push errors against that sink, with its answer.
    pushgateway.stop();
    let sink = poll_until(ARRIVAL, "a push error of the pushgateway sink", || {
        let sink = status_of(&relay)["receiver"]["sinks"][0].clone();
        (sink["errors"].as_u64()? >= 1 && sink["last_error"].is_string()).then_some(sink)
    });
    assert_eq!(sink["sink"], "pushgateway");

    // NATS down: the publisher shows the connection lost and the scrapes it is holding.
    nats.stop();
    let publisher = poll_until(ARRIVAL, "scrapes held in the outage buffer", || {
        let publisher = status_of(&relay)["publisher"].clone();
        let held =
            publisher["buffer_scrapes"].as_u64()? >= 2 && publisher["buffer_bytes"].as_u64()? > 0;
        let lost = publisher["connection"]["state"] != "connected";
        (held && lost).then_some(publisher)
    });
    assert!(
        publisher["buffer_limit_bytes"].as_u64().unwrap_or(0) > 0,
        "{publisher}"
    );
    let page_url = format!("{}/", relay.monitor_url());
    let page = http::get_ok(&page_url).unwrap_or_else(|error| panic!("{error:#}"));
    assert!(
        page.contains("<span class=\"health down\">disconnected</span>"),
        "{page}"
    );
    tidy_check(&page, "GET / with servers down").unwrap_or_else(|error| panic!("{error:#}"));
    let screenshot = artefacts_dir().join("status-page-outage.png");
    Browser::new().screenshot(&page_url, &screenshot, 1280, 1600);
    println!(
        "status page screenshot (NATS and Pushgateway down): {}",
        screenshot.display()
    );

    // Both back: the buffer drains and pushes resume.
    nats.restart();
    pushgateway.start_again();
    poll_until(
        ARRIVAL,
        "the outage buffer drained, connected again",
        || {
            let publisher = status_of(&relay)["publisher"].clone();
            (publisher["buffer_scrapes"] == 0 && publisher["connection"]["state"] == "connected")
                .then_some(())
        },
    );
    let before = sink["pushed"].as_u64().unwrap_or(0);
    poll_until(ARRIVAL, "pushes to the Pushgateway again", || {
        let pushed = status_of(&relay)["receiver"]["sinks"][0]["pushed"].as_u64()?;
        (pushed > before).then_some(())
    });
}

/// What the page shows for `text`, the way the status page escapes it.
fn escape_text(text: &str) -> String {
    promrelay::status::html::escape(text)
        // Chromium's DOM serialiser writes quotes in text as they are.
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}
