use super::*;
use crate::status::{
    Connection, GroupPush, Health, PublisherState, ReceiverState, RolePause, SinkPushes,
    TargetStatus,
};

const HOSTILE: &str = "<script>alert(\"x\")</script>&'";

fn target(job: &str, instance: &str, health: Health, error: Option<&str>) -> TargetStatus {
    TargetStatus {
        job: job.to_owned(),
        instance: instance.to_owned(),
        url: format!("http://{instance}/metrics?a=1&b=\"2\""),
        interval_seconds: 1.0,
        health,
        last_scrape_ms: Some(1_764_608_100_000),
        last_duration_seconds: Some(0.0123),
        last_samples: Some(512),
        last_error: error.map(str::to_owned),
        last_error_ms: error.map(|_| 1_764_608_100_000),
        scrapes: 3,
        failures: u64::from(error.is_some()),
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        identity: format!("site{HOSTILE}"),
        component: "relay".into(),
        version: "0.1.0".into(),
        config_path: format!("/etc/{HOSTILE}.yaml"),
        now_ms: 1_764_608_102_500,
        pause: vec![
            RolePause {
                role: "poller".into(),
                paused: true,
            },
            RolePause {
                role: "receiver".into(),
                paused: false,
            },
        ],
        targets: Some(vec![
            target("a", "up1", Health::Up, None),
            target("a", "down1", Health::Down, Some(HOSTILE)),
            target(HOSTILE, HOSTILE, Health::Unknown, None),
        ]),
        filters: serde_json::json!({
            "filters": [{ "name": HOSTILE, "scope": "global", "module": HOSTILE,
                "hash": "0123456789abcdef", "loaded_at": "2026-12-01T16:55:00Z",
                "on_error": "pass", "calls": 4, "errors": 1, "last_error": HOSTILE }],
            "reload": { "last_attempt": "2026-12-01T16:55:00Z", "last_success": null,
                "last_error": HOSTILE, "last_duration_ms": 12.5 },
        }),
        publisher: Some(PublisherState {
            stream: HOSTILE.into(),
            topic: HOSTILE.into(),
            urls: vec![HOSTILE.into()],
            connection: Some(Connection {
                state: "connected".into(),
                server: HOSTILE.into(),
                server_name: HOSTILE.into(),
                server_version: "2.9.10".into(),
            }),
            last_error: Some(HOSTILE.into()),
            ..PublisherState::default()
        }),
        receiver: Some(ReceiverState {
            consumer: HOSTILE.into(),
            sinks: vec![SinkPushes {
                sink: HOSTILE.into(),
                pushed: 2,
                errors: 1,
                last_error: Some(HOSTILE.into()),
                last_error_ms: Some(1_764_608_100_000),
            }],
            groups: vec![GroupPush {
                sink: "pushgateway".into(),
                job: HOSTILE.into(),
                instance: HOSTILE.into(),
                publisher: HOSTILE.into(),
                scrape_ms: 1_764_608_100_000,
                pushed_ms: 1_764_608_101_000,
            }],
            ..ReceiverState::default()
        }),
    }
}

#[test]
fn escape_replaces_every_character_that_could_end_text_or_an_attribute() {
    for (input, expected) in [
        ("plain", "plain"),
        ("a<b>c", "a&lt;b&gt;c"),
        ("x&y", "x&amp;y"),
        ("say \"hi\"", "say &quot;hi&quot;"),
        ("it's", "it&#39;s"),
        ("&amp;", "&amp;amp;"),
        ("ünï", "ünï"),
    ] {
        assert_eq!(escape(input), expected, "{input}");
    }
}

#[test]
fn no_string_from_the_pipeline_reaches_the_page_unescaped() {
    let page = page(&snapshot());
    assert!(!page.contains("<script"), "raw markup on the page:\n{page}");
    assert!(!page.contains("\"x\""), "raw quote on the page");
    assert!(!page.contains("</script>&'"));
    assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
    // The only quotes left are the page's own attribute delimiters: every attribute is closed.
    assert_eq!(page.matches('"').count() % 2, 0);
}

#[test]
fn targets_are_grouped_by_job_with_their_health_and_last_error() {
    let page = page(&snapshot());
    assert!(page.contains("data-instance=\"up1\" data-health=\"up\""));
    assert!(page.contains("data-instance=\"down1\" data-health=\"down\""));
    assert!(page.contains("<span class=\"count\">1 of 2 up</span>"));
    assert!(page.contains("<span class=\"health unknown\">unknown</span>"));
    assert_eq!(page.matches("<table class=\"targets\"").count(), 2);
    assert!(
        page.contains("2.5 s ago"),
        "ages relative to the page's time"
    );
    assert!(page.contains("12.3 ms"));
}

#[test]
fn the_page_is_one_self_contained_document_linking_every_section() {
    let page = page(&snapshot());
    assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    assert!(page.ends_with("</html>\n"));
    for link in [
        "#pause",
        "#targets",
        "#filters",
        "#publisher",
        "#receiver",
        "/explain",
        "/api/v1/status",
    ] {
        assert!(page.contains(&format!("href=\"{link}\"")), "{link}");
    }
    for external in ["<script", "<link", "src=", "http://fonts", "https://"] {
        assert!(!page.contains(external), "{external}");
    }
    // Tags open and close in balance (the e2e test runs tidy over the served page too).
    for tag in ["section", "table", "tbody", "tr", "dl", "h2", "h3"] {
        let opened =
            page.matches(&format!("<{tag}>")).count() + page.matches(&format!("<{tag} ")).count();
        assert_eq!(
            opened,
            page.matches(&format!("</{tag}>")).count(),
            "<{tag}>"
        );
    }
}

#[test]
fn a_process_without_poller_or_receiver_says_so() {
    let mut snapshot = snapshot();
    snapshot.targets = None;
    snapshot.publisher = None;
    snapshot.receiver = None;
    snapshot.filters = serde_json::json!({ "filters": [], "reload": null });
    let page = page(&snapshot);
    assert_eq!(page.matches("This process runs no poller.").count(), 2);
    assert!(page.contains("This process runs no receiver."));
    assert!(page.contains("No filters configured."));
}

#[test]
fn ages_read_in_the_unit_that_fits() {
    for (ms, text) in [
        (850, "850 ms"),
        (3_200, "3.2 s"),
        (250_000, "4 min 10 s"),
        (7_500_000, "2 h 5 min"),
        (-5, "0 ms"),
    ] {
        assert_eq!(age(ms), text);
    }
}
