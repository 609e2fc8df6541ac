//! `static_configs`, `file_sd_configs`, `scheme` and `metrics_path` of a job, and the file_sd
//! file format: what loads, what it means, and every problem with its key and line.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::model::Label;

/// BASE with its job's targets replaced by `job` (lines indented under `node:`).
fn with_job(job: &str) -> String {
    let job: String = job.lines().map(|line| format!("    {line}\n")).collect();
    BASE.replace(
        "    targets:\n      - url: http://127.0.0.1:9100/metrics\n",
        &job,
    )
}

#[test]
fn static_configs_give_targets_named_by_address_with_their_labels_beside_the_originals() {
    let config = load_text(&with_job(
        "\
targets:
  - url: http://127.0.0.1:9100/metrics
static_configs:
  - targets: [127.0.0.2:9100, 'host3']
    labels: { rack: r1, dc: fra1, empty: '' }
  - targets: [127.0.0.4:9100]
",
    ));
    let targets = &config.jobs[0].targets;
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "127.0.0.1:9100",
            "127.0.0.2:9100",
            "host3:80",
            "127.0.0.4:9100"
        ]
    );
    assert_eq!(targets[1].url.as_str(), "http://127.0.0.2:9100/metrics");
    assert_eq!(targets[2].url.as_str(), "http://host3/metrics");
    assert_eq!(
        targets[1].labels,
        [Label::new("dc", "fra1"), Label::new("rack", "r1")],
        "sorted, the empty one is no label"
    );
    assert!(targets[0].labels.is_empty() && targets[3].labels.is_empty());
}

#[test]
fn job_scheme_and_metrics_path_are_the_defaults_that_group_labels_override() {
    let config = load_text(&with_job(
        "\
scheme: https
metrics_path: probe
static_configs:
  - targets: [a.example:9115]
  - targets: [b.example]
    labels:
      __scheme__: http
      __metrics_path__: /snmp
      __param_module: if_mib
      __param_target: 10.0.0.1
      instance: switch-1
      __hidden: x
",
    ));
    let job = &config.jobs[0];
    assert_eq!(
        (job.scheme.as_str(), job.metrics_path.as_str()),
        ("https", "probe")
    );
    assert_eq!(job.targets[0].url.as_str(), "https://a.example:9115/probe");
    assert_eq!(job.targets[0].name, "a.example:9115");
    assert_eq!(
        job.targets[1].url.as_str(),
        "http://b.example/snmp?module=if_mib&target=10.0.0.1"
    );
    assert_eq!(
        job.targets[1].name, "switch-1",
        "the instance label names it"
    );
    assert!(
        job.targets[1].labels.is_empty(),
        "__ labels are not target labels"
    );
}

#[test]
fn a_job_with_only_file_sd_configs_loads_with_default_refresh_and_resolved_paths() {
    let text = with_job(
        "\
file_sd_configs:
  - files: [targets/*.json, /etc/sd/node.yml]
  - files: extra.yaml
    refresh_interval: 30s
",
    );
    let config = parse_with_base(&text, "test.yaml", Some(Path::new("/etc/promrelay")))
        .expect("a valid config");
    let job = &config.jobs[0];
    assert!(job.targets.is_empty());
    assert_eq!(
        job.file_sd,
        [
            FileSdConfig {
                files: vec![
                    PathBuf::from("/etc/promrelay/targets/*.json"),
                    PathBuf::from("/etc/sd/node.yml")
                ],
                refresh_interval: Duration::from_secs(300),
            },
            FileSdConfig {
                files: vec![PathBuf::from("/etc/promrelay/extra.yaml")],
                refresh_interval: Duration::from_secs(30),
            },
        ]
    );
}

#[test]
fn target_section_problems_name_key_and_line() {
    let problems = problems_of(&with_job(
        "\
static_configs:
  - targets: [http://127.0.0.2:9100/metrics]
  - targets: [127.0.0.3:9100]
    labels: { job: other, 0bad: x, __scheme__: ftp }
  - targets: 127.0.0.4:9100
    lables: {}
file_sd_configs:
  - files: [sd/*/node.json, node.txt]
  - refresh_interval: 0s
",
    ));
    let shown: Vec<String> = problems
        .iter()
        .map(|p| ConfigError::format_problem("t.yaml", p))
        .collect();
    let expected = [
        "t.yaml:13: jobs.node.static_configs[0].targets[0]: \"http://127.0.0.2:9100/metrics\" is \
         not a host:port address (write the scheme and the path as __scheme__ and \
         __metrics_path__ labels, or as the job's scheme and metrics_path)",
        "t.yaml:15: jobs.node.static_configs[1].labels.job: the job label is the job's name (it \
         routes the scrape): move these targets to a job of that name instead",
        "t.yaml:15: jobs.node.static_configs[1].labels.0bad: \"0bad\" is not a label name \
         (letters, digits and _, not starting with a digit)",
        "t.yaml:16: jobs.node.static_configs[2].targets: expected a list, found \"127.0.0.4:9100\"",
        "t.yaml:17: jobs.node.static_configs[2].lables: unknown key \"lables\" in \
         jobs.node.static_configs[2]; did you mean labels?",
        "t.yaml:19: jobs.node.file_sd_configs[0].files[0]: \"sd/*/node.json\": wildcards are \
         allowed only in the file name, not in directories",
        "t.yaml:19: jobs.node.file_sd_configs[0].files[1]: \"node.txt\": file_sd files must end \
         in .json, .yml or .yaml (as in Prometheus)",
        "t.yaml:20: jobs.node.file_sd_configs[1].refresh_interval: must be greater than zero",
        "t.yaml:20: jobs.node.file_sd_configs[1].files: is required (a list of file patterns \
         such as targets/*.json)",
    ];
    for line in expected {
        assert!(
            shown.contains(&line.to_string()),
            "missing {line}\nin {shown:#?}"
        );
    }
    assert_eq!(shown.len(), expected.len(), "{shown:#?}");
}

#[test]
fn a_job_without_any_target_section_says_which_keys_give_targets() {
    let problems = problems_of(&with_job("scrape_interval: 10s\n"));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "jobs.node.targets");
    assert!(
        problems[0]
            .message
            .contains("static_configs or file_sd_configs"),
        "{}",
        problems[0].message
    );
}

#[test]
fn an_instance_in_static_configs_and_targets_is_refused() {
    let problems = problems_of(&with_job(
        "\
targets:
  - url: http://127.0.0.1:9100/metrics
static_configs:
  - targets: [127.0.0.1:9100]
",
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0]
        .message
        .contains("\"127.0.0.1:9100\" is already a target"));
}

#[test]
fn file_sd_files_parse_as_json_and_yaml_alike() {
    let json = r#"[
	{"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"dc": "fra1"}},
	{"targets": ["10.0.0.3:9100"]}
]"#;
    let yaml = "\
- targets:
    - 10.0.0.1:9100
    - 10.0.0.2:9100
  labels:
    dc: fra1
- targets: ['10.0.0.3:9100']
";
    let from_json = parse_target_groups(json, "a.json").expect("valid JSON");
    let from_yaml = parse_target_groups(yaml, "a.yml").expect("valid YAML");
    type Plain = Vec<(Vec<String>, Vec<(String, String)>)>;
    let strip = |groups: Vec<TargetGroup>| -> Plain {
        groups
            .into_iter()
            .map(|g| {
                (
                    g.targets.into_iter().map(|(t, _)| t).collect(),
                    g.labels.into_iter().collect(),
                )
            })
            .collect()
    };
    assert_eq!(strip(from_json), strip(from_yaml));
    assert_eq!(parse_target_groups("", "empty.yml"), Ok(Vec::new()));
    assert_eq!(parse_target_groups("[]", "empty.json"), Ok(Vec::new()));
}

#[test]
fn broken_file_sd_files_name_the_line() {
    let cases = [
        ("[{\"targets\": [\"a:1\"]", "a.json:1: YAML syntax"),
        (
            "{targets: [a:1]}\n",
            "b.yml:1: expected a list, found a mapping",
        ),
        (
            "- targets: [a:1]\n  labels: {dc: [x]}\n",
            "c.yml:2: [0].labels.dc: a label value is a string, found a list",
        ),
        (
            "- targets: [a:1]\n- targets: [b:1]\n  label: {}\n",
            "d.yml:3: [1].label: unknown key \"label\" in [1]; did you mean labels?",
        ),
    ];
    for (text, expected) in cases {
        let origin = expected.split(':').next().expect("origin");
        let error = parse_target_groups(text, origin).expect_err(text);
        assert!(error.to_string().starts_with(expected), "{text:?}: {error}");
    }
}
