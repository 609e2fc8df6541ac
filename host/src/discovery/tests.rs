//! File discovery: glob matching, target labels on every series, and a job's task against
//! real files in a temp directory (new files, rewritten, broken, removed and missing ones).

use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::glob::{expand, matches};
use super::{Discovery, JobTargets, METRICS};
use crate::model::{Family, Label, MetricType, Scrape, Series};

#[test]
fn wildcards_match_within_the_file_name_and_skip_hidden_files() {
    let cases = [
        ("*.json", "node.json", true),
        ("*.json", "node.yml", false),
        ("*.json", ".node.json", false),
        (".*.json", ".node.json", true),
        ("node-*.yml", "node-fra1.yml", true),
        ("node-*.yml", "node-.yml", true),
        ("node-?.yml", "node-12.yml", false),
        ("*-*-*.yaml", "a-b-c.yaml", true),
        ("*-*-*.yaml", "a-b.yaml", false),
        ("node.json", "node.json", true),
        ("*", "anything", true),
    ];
    for (pattern, name, expected) in cases {
        assert_eq!(matches(pattern, name), expected, "{pattern} ~ {name}");
    }
}

#[test]
fn expand_lists_matching_files_sorted_and_keeps_a_literal_path_even_if_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["b.json", "a.json", "c.yml", ".tmp.json"] {
        std::fs::write(dir.path().join(name), "[]").expect("write");
    }
    std::fs::create_dir(dir.path().join("d.json")).expect("a directory named like a file");
    let found = expand(&dir.path().join("*.json"));
    assert_eq!(
        found,
        [dir.path().join("a.json"), dir.path().join("b.json")]
    );
    let literal = dir.path().join("missing.yml");
    assert_eq!(expand(&literal), std::slice::from_ref(&literal));
    assert!(expand(&dir.path().join("nowhere").join("*.json")).is_empty());
}

#[test]
fn a_targets_own_labels_reach_every_series_like_job_and_instance() {
    let series = |labels: Vec<Label>| Series {
        name: "x".into(),
        labels,
        value: 1.0,
        timestamp_ms: None,
    };
    let mut scrape = Scrape {
        families: vec![Family {
            name: "x".into(),
            help: None,
            unit: None,
            kind: MetricType::Gauge,
            series: vec![series(vec![]), series(vec![Label::new("dc", "exposed")])],
        }],
        ..Scrape::default()
    };
    let own = [Label::new("dc", "fra1"), Label::new("rack", "r1")];
    scrape.add_target_labels_with("node", "h:9100", &own);
    let labels: Vec<Vec<(String, String)>> = scrape.families[0]
        .series
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect()
        })
        .collect();
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        labels[0],
        pairs(&[
            ("dc", "fra1"),
            ("instance", "h:9100"),
            ("job", "node"),
            ("rack", "r1")
        ])
    );
    assert_eq!(
        labels[1],
        pairs(&[
            ("dc", "fra1"),
            ("exported_dc", "exposed"),
            ("instance", "h:9100"),
            ("job", "node"),
            ("rack", "r1")
        ]),
        "an exposed label of the same name is kept as exported_<name>, as Prometheus does"
    );
}

/// A config whose job `node` discovers from `patterns` (YAML list items), refreshed hourly so
/// that only watching can explain a prompt change.
fn config_with(patterns: &[&Path]) -> crate::config::Config {
    let files: Vec<String> = patterns
        .iter()
        .map(|p| serde_json::to_string(&p.display().to_string()).expect("json"))
        .collect();
    let text = format!(
        "scrape_interval: 60s\npoller_stream: {{ cluster_id: s, urls: nats://127.0.0.1:4222 }}\n\
         jobs:\n  node:\n    file_sd_configs:\n      - files: [{}]\n        refresh_interval: 1h\n",
        files.join(", ")
    );
    crate::config::parse(&text, "test.yaml").expect("valid config")
}

/// The next report of the job's task, within a generous bound.
async fn next(reports: &mut mpsc::Receiver<JobTargets>) -> Vec<String> {
    let report = tokio::time::timeout(Duration::from_secs(20), reports.recv())
        .await
        .expect("a report within 20 s")
        .expect("the channel is open");
    assert_eq!(report.job, "node");
    report.targets.into_iter().map(|t| t.name).collect()
}

fn write(path: &Path, text: &str) {
    // Written beside and renamed into place, as configuration managers do.
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write");
    std::fs::rename(&temporary, path).expect("rename into place");
}

fn file_errors() -> u64 {
    METRICS
        .file_errors
        .get_or_create(&super::JobLabel { job: "node".into() })
        .get()
}

#[tokio::test]
async fn a_job_follows_its_files_and_a_broken_or_missing_one_keeps_its_last_good_targets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let literal = dir.path().join("fixed.yml");
    write(&literal, "- targets: ['10.0.0.9:9100']\n");
    let config = config_with(&[&dir.path().join("*.json"), &literal]);
    let (sender, mut reports) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut discovery = Discovery::new(sender, stop.clone());
    discovery.apply(&config);
    assert_eq!(next(&mut reports).await, ["10.0.0.9:9100"]);

    // A new file matching the wildcard is picked up by watching (the refresh is an hour).
    write(
        &dir.path().join("a.json"),
        r#"[{"targets": ["10.0.0.1:9100"], "labels": {"dc": "fra1"}}]"#,
    );
    assert_eq!(next(&mut reports).await, ["10.0.0.1:9100", "10.0.0.9:9100"]);

    // Broken: the file keeps its targets, and says why in the view and the metric.
    let errors_before = file_errors();
    write(
        &dir.path().join("a.json"),
        r#"[{"targets": ["10.0.0.1:9100"]"#,
    );
    let view = discovery.view();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let broken = loop {
        let jobs = view.jobs();
        let file = jobs["node"]
            .files
            .iter()
            .find(|f| f.path.ends_with("a.json"))
            .cloned();
        if let Some(file) = file.filter(|f| f.error.is_some()) {
            break file;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the view never showed the error"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(broken.targets, 1, "its last good target is kept");
    let error = broken.error.unwrap_or_default();
    assert!(error.contains("a.json:1: YAML syntax"), "{error}");
    assert!(file_errors() > errors_before);

    // Repaired with another target: reported; then the literal file goes missing: kept.
    write(
        &dir.path().join("a.json"),
        r#"[{"targets": ["10.0.0.2:9100"]}]"#,
    );
    assert_eq!(next(&mut reports).await, ["10.0.0.2:9100", "10.0.0.9:9100"]);
    std::fs::remove_file(&literal).expect("remove");
    // A file the wildcard matched and that is removed takes its targets with it.
    std::fs::remove_file(dir.path().join("a.json")).expect("remove");
    assert_eq!(next(&mut reports).await, ["10.0.0.9:9100"]);
    let snapshot = view.snapshot();
    assert_eq!(
        snapshot[0].targets[0].labels["__meta_filepath"],
        literal.display().to_string()
    );
    let missing = &snapshot[0].files[0];
    assert!(
        missing
            .error
            .as_deref()
            .is_some_and(|e| e.contains("cannot read")),
        "{missing:?}"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_reload_keeps_an_unchanged_jobs_task_and_forgets_a_job_that_stopped_discovering() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("node.yml");
    write(&file, "- targets: ['10.0.0.1:9100']\n");
    let config = config_with(&[&file]);
    let (sender, mut reports) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut discovery = Discovery::new(sender, stop.clone());
    discovery.apply(&config);
    let report = tokio::time::timeout(Duration::from_secs(20), reports.recv())
        .await
        .expect("a first report")
        .expect("open");
    assert!(
        discovery.update(report.clone()),
        "the first report changes the targets"
    );
    assert!(
        !discovery.update(report),
        "the same list again changes nothing"
    );

    // Same settings: the task stays (no second first-read report).
    discovery.apply(&config);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), reports.recv())
            .await
            .is_err(),
        "an unchanged job's task was restarted"
    );
    assert_eq!(discovery.targets()["node"][0].name, "10.0.0.1:9100");

    // The job drops file_sd_configs: its targets and its view go.
    let text =
        "scrape_interval: 60s\npoller_stream: { cluster_id: s, urls: nats://127.0.0.1:4222 }\n\
                jobs:\n  node:\n    targets: [http://127.0.0.1:9100/metrics]\n";
    discovery.apply(&crate::config::parse(text, "t.yaml").expect("valid"));
    assert!(discovery.targets().is_empty());
    assert!(discovery.view().snapshot().is_empty());
    stop.cancel();
}

#[test]
fn a_discovered_instance_that_the_job_already_has_is_left_out() {
    let text =
        "scrape_interval: 60s\npoller_stream: { cluster_id: s, urls: nats://127.0.0.1:4222 }\n\
                jobs:\n  node:\n    targets: [http://10.0.0.1:9100/metrics]\n    \
                file_sd_configs: [{ files: [x.json] }]\n";
    let config = crate::config::parse(text, "t.yaml").expect("valid");
    let discovered = |address: &str, dc: &str| crate::config::Target {
        name: address.to_string(),
        url: url::Url::parse(&format!("http://{address}/metrics")).expect("url"),
        labels: vec![Label::new("dc", dc)],
    };
    let found = std::collections::HashMap::from([(
        "node".to_string(),
        vec![
            discovered("10.0.0.1:9100", "a"),
            discovered("10.0.0.2:9100", "b"),
            discovered("10.0.0.2:9100", "c"),
        ],
    )]);
    let specs = crate::daemon::target_specs_with(&config, &found);
    let shown: Vec<(String, usize)> = specs
        .iter()
        .map(|spec| (spec.instance.clone(), spec.labels.len()))
        .collect();
    assert_eq!(
        shown,
        [
            ("10.0.0.1:9100".to_string(), 0),
            ("10.0.0.2:9100".to_string(), 1)
        ],
        "the static target wins, then the first file entry"
    );
    assert_eq!(specs[1].labels, [Label::new("dc", "b")]);
}

#[tokio::test]
async fn a_directory_made_after_the_start_is_found_on_the_refresh_interval() {
    let dir = tempfile::tempdir().expect("temp dir");
    let later = dir.path().join("later");
    let pattern = later.join("*.json");
    let text = format!(
        "scrape_interval: 60s\npoller_stream: {{ cluster_id: s, urls: nats://127.0.0.1:4222 }}\n\
         jobs:\n  node:\n    file_sd_configs:\n      - files: [{}]\n        \
         refresh_interval: 100ms\n",
        serde_json::to_string(&pattern.display().to_string()).expect("json")
    );
    let config = crate::config::parse(&text, "t.yaml").expect("valid");
    let (sender, mut reports) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let mut discovery = Discovery::new(sender, stop.clone());
    discovery.apply(&config);
    assert!(next(&mut reports).await.is_empty(), "nothing matches yet");
    // Nothing watches a directory that did not exist: only the refresh can find this file.
    std::fs::create_dir(&later).expect("mkdir");
    std::fs::write(
        later.join("node.json"),
        r#"[{"targets": ["10.0.0.5:9100"]}]"#,
    )
    .expect("write");
    assert_eq!(next(&mut reports).await, ["10.0.0.5:9100"]);
    stop.cancel();
}
