//! Filter authoring as a first-time author meets it: every C and WAT example of
//! `guest-sdk/ABI.md` compiled, loaded by the relay and run on a real node_exporter scrape;
//! `promrelay filter run` with the relay's target labels and default limits; where `filter new`
//! finds the SDK; the `filter` help texts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use promrelay::config::{DEFAULT_FILTER_MEMORY, DEFAULT_FILTER_TIME};
use promrelay_tests::relay::workspace_root;
use promrelay_tests::{parse_samples, relay_binary, Behaviour, NodeExporter, Sample, TargetServer};

/// Compiles the C examples; the Debian package `clang-14` (with `lld-14` for `wasm-ld-14`).
const DEFAULT_CLANG: &str = "clang-14";

fn promrelay(args: &[&str]) -> Output {
    Command::new(relay_binary())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run promrelay {}: {e}", args.join(" ")))
}

/// `promrelay ARGS`, which must succeed; its stdout.
fn promrelay_ok(args: &[&str]) -> String {
    let output = promrelay(args);
    assert!(
        output.status.success(),
        "promrelay {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("promrelay prints UTF-8")
}

fn wat(name: &str) -> String {
    workspace_root()
        .join("tests/wat")
        .join(name)
        .display()
        .to_string()
}

/// A fenced block of ABI.md whose info string is `LANGUAGE example=NAME`.
struct Example {
    language: String,
    name: String,
    code: String,
}

/// Every `c` and `wat` block of ABI.md; an unmarked one fails the test, so none goes untested.
fn abi_examples() -> Vec<Example> {
    let path = workspace_root().join("guest-sdk/ABI.md");
    let text = std::fs::read_to_string(&path).expect("read guest-sdk/ABI.md");
    let mut examples = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut words = info.split_whitespace();
        let language = words.next().unwrap_or_default().to_owned();
        let name = words.find_map(|word| word.strip_prefix("example="));
        let mut code = String::new();
        for (_, line) in lines.by_ref() {
            if line.starts_with("```") {
                break;
            }
            code.push_str(line);
            code.push('\n');
        }
        if language != "c" && language != "wat" {
            continue;
        }
        let name = name.unwrap_or_else(|| {
            panic!(
                "guest-sdk/ABI.md line {}: a ```{language} block without example=NAME; mark it \
                 (```{language} example=NAME) and say in this test what it must do",
                index + 1
            )
        });
        examples.push(Example {
            language,
            name: name.to_owned(),
            code,
        });
    }
    examples
}

/// Compiles C to a wasm module the way ABI.md §9 says, with no libc.
fn compile_c(source: &Path, module: &Path) {
    let clang = std::env::var("PROMRELAY_CLANG").unwrap_or_else(|_| DEFAULT_CLANG.to_owned());
    let output = Command::new(&clang)
        .args([
            "--target=wasm32",
            "-O2",
            "-nostdlib",
            "-Wl,--no-entry",
            "-o",
        ])
        .arg(module)
        .arg(source)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {clang} ({e}): this test compiles the C examples of guest-sdk/ABI.md. \
                 Install clang-14 and lld-14 (apt-get install clang-14 lld-14, as .ci/run does), \
                 or set PROMRELAY_CLANG to a clang that targets wasm32"
            )
        });
    assert!(
        output.status.success(),
        "{clang} failed on {} (is lld-14, which gives wasm-ld-14, installed?):\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Samples by series identity.
fn by_key(samples: &[Sample]) -> BTreeMap<String, &Sample> {
    samples.iter().map(|s| (s.key(), s)).collect()
}

/// What the relay hands the chain: the scrape with its target labels (node_exporter sets none).
fn with_target_labels(samples: &[Sample], job: &str, instance: &str) -> Vec<Sample> {
    let mut samples = samples.to_vec();
    for sample in &mut samples {
        assert!(!sample.labels.contains_key("job") && !sample.labels.contains_key("instance"));
        sample.labels.insert("job".into(), job.into());
        sample.labels.insert("instance".into(), instance.into());
    }
    samples
}

fn assert_same_samples(what: &str, actual: &[Sample], expected: &[Sample]) {
    let (actual, expected) = (by_key(actual), by_key(expected));
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .collect();
    let extra: Vec<&String> = actual
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} series missing (first: {:?}), {} unexpected (first: {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for (key, sample) in &actual {
        assert!(sample.same_value(expected[key]), "{what}: {key} changed");
    }
}

#[test]
fn every_c_and_wat_example_in_abi_md_compiles_loads_and_filters_a_real_scrape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node_exporter = NodeExporter::start();
    let scrape = dir.path().join("node.prom");
    std::fs::write(&scrape, node_exporter.metrics_text()).expect("write the scrape");
    let input = parse_samples(&std::fs::read_to_string(&scrape).expect("read the scrape"))
        .expect("node_exporter's text parses");
    let input = with_target_labels(&input, "node", "n1");
    let go = input.iter().filter(|s| s.name.starts_with("go_")).count();
    assert!(
        go > 0 && go < input.len(),
        "node_exporter exposes go_ metrics and others"
    );

    let examples = abi_examples();
    let names: Vec<&str> = examples.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["pass", "drop-go"],
        "the examples of ABI.md §8 and §9"
    );
    for example in &examples {
        let module = match example.language.as_str() {
            "wat" => {
                let module = dir.path().join(format!("{}.wat", example.name));
                std::fs::write(&module, &example.code).expect("write the WAT example");
                module
            }
            _ => {
                let source = dir.path().join(format!("{}.c", example.name));
                std::fs::write(&source, &example.code).expect("write the C example");
                let module = dir.path().join(format!("{}.wasm", example.name));
                compile_c(&source, &module);
                module
            }
        };
        let module = module.to_str().expect("UTF-8 temp path");
        let check = promrelay_ok(&["filter", "check", "--module", module]);
        assert!(check.contains("result:   OK"), "{}:\n{check}", example.name);
        let scrape = scrape.to_str().expect("UTF-8 temp path");
        let args = ["filter", "run", "--module", module, "--input", scrape];
        let output = promrelay_ok(&[&args[..], &["--job", "node", "--instance", "n1"]].concat());
        let output = parse_samples(&output).expect("filter run prints Prometheus text");
        let expected: Vec<Sample> = match example.name.as_str() {
            "pass" => input.clone(),
            "drop-go" => {
                assert!(check.contains("promrelay.log"), "drop-go logs:\n{check}");
                input
                    .iter()
                    .filter(|s| !s.name.starts_with("go_"))
                    .cloned()
                    .collect()
            }
            other => panic!("ABI.md example {other}: say here what it must do"),
        };
        assert_same_samples(&example.name, &output, &expected);
    }
}

#[test]
fn filter_run_adds_job_and_instance_and_runs_under_the_relays_default_limits() {
    let target = TargetServer::start(Behaviour::Fixed("x_total 1\n".into()));
    let pass = wat("pass.wat");
    let labels = |args: &[&str]| -> BTreeMap<String, String> {
        let output = promrelay_ok(&[&["filter", "run", "--module", &pass][..], args].concat());
        let samples = parse_samples(&output).expect("Prometheus text");
        assert_eq!(samples.len(), 1, "{output}");
        samples[0].labels.clone()
    };
    let pair = |job: &str, instance: &str| {
        BTreeMap::from([
            ("instance".to_owned(), instance.to_owned()),
            ("job".to_owned(), job.to_owned()),
        ])
    };
    assert_eq!(
        labels(&["--input", &target.url()]),
        pair("filter-run", &target.host_port())
    );
    assert_eq!(
        labels(&[
            "--input",
            &target.url(),
            "--job",
            "node",
            "--instance",
            "n1"
        ]),
        pair("node", "n1")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("scrape.prom");
    std::fs::write(&file, "x_total 1\n").expect("write scrape");
    let file = file.to_str().expect("UTF-8 temp path");
    assert_eq!(
        labels(&["--input", file]),
        pair("filter-run", "scrape.prom")
    );

    // The limits are the relay's defaults (the config's constants), printed, and enforced.
    let output = promrelay(&["filter", "run", "--module", &pass, "--input", file]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("limits: time ") && stderr.contains("the relay's defaults"),
        "{stderr}"
    );
    for (module, says) in [
        (
            "endless_loop.wat",
            format!("time limit of {} ms", DEFAULT_FILTER_TIME.as_millis()),
        ),
        (
            "memory_bomb.wat",
            format!("memory limit of {DEFAULT_FILTER_MEMORY} bytes"),
        ),
    ] {
        let output = promrelay(&["filter", "run", "--module", &wat(module), "--input", file]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(&says),
            "{module}: {stderr}"
        );
    }
}

/// `binary` placed at `dir/promrelay` (a hard link where possible: the debug binary is large).
fn place_binary(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("create the bin dir");
    let placed = dir.join("promrelay");
    if std::fs::hard_link(relay_binary(), &placed).is_err() {
        std::fs::copy(relay_binary(), &placed).expect("copy the promrelay binary");
    }
    placed
}

/// Copies what the Debian package installs under `usr/share/promrelay/guest-sdk` (the `assets`
/// of `[package.metadata.deb]` in host/Cargo.toml whose source is in guest-sdk) under `usr`.
fn install_packaged_sdk(usr: &Path) -> usize {
    let host = workspace_root().join("host");
    let manifest = std::fs::read_to_string(host.join("Cargo.toml")).expect("read host/Cargo.toml");
    let mut copied = 0;
    for line in manifest.lines() {
        let fields: Vec<&str> = line.split('"').collect();
        // ["SOURCE", "DESTINATION", "MODE"],
        let [_, source, _, destination, ..] = fields[..] else {
            continue;
        };
        if !source.starts_with("../guest-sdk/") {
            continue;
        }
        let destination = usr.join(
            destination
                .strip_prefix("usr/")
                .expect("the SDK installs under /usr"),
        );
        let source = host.join(source);
        let (dir, pattern) = (
            source.parent().expect("a file"),
            source.file_name().expect("a file").to_string_lossy(),
        );
        let (prefix, suffix) = pattern.split_once('*').unwrap_or((&pattern, ""));
        let exact = !pattern.contains('*');
        for entry in std::fs::read_dir(dir).expect("read an SDK directory") {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            let matches = if exact {
                name == pattern
            } else {
                name.starts_with(prefix) && name.ends_with(suffix)
            };
            if !matches || !path.is_file() {
                continue;
            }
            std::fs::create_dir_all(&destination).expect("create an SDK directory");
            std::fs::copy(&path, destination.join(&name)).expect("copy an SDK file");
            copied += 1;
        }
    }
    copied
}

#[test]
fn filter_new_uses_the_sdk_shipped_beside_an_installed_binary() {
    let root = tempfile::tempdir().expect("tempdir");
    let usr = root.path().join("usr");
    let binary = place_binary(&usr.join("bin"));
    assert!(
        install_packaged_sdk(&usr) > 5,
        "host/Cargo.toml ships the SDK sources"
    );
    let output = Command::new(&binary)
        .args(["filter", "new", "tagger", "--dir"])
        .arg(root.path())
        .output()
        .expect("run promrelay filter new");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let crate_dir = root.path().join("tagger");
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("Cargo.toml");
    let sdk = std::fs::canonicalize(usr.join("share/promrelay/guest-sdk")).expect("the SDK");
    assert!(
        manifest.contains(&format!("path = \"{}\"", sdk.display())),
        "depends on the SDK beside the binary:\n{manifest}"
    );
    // The shipped files are the whole SDK: the new crate builds against them alone.
    let output = crate::filters::cargo_test_new_crate(&crate_dir);
    assert!(
        output.status.success(),
        "cargo test against the packaged SDK failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let readme = std::fs::read_to_string(crate_dir.join("README.md")).expect("README.md");
    for needed in [
        format!(
            "scripts/build-filters.sh {}",
            crate_dir.canonicalize().expect("dir").display()
        ),
        "rustup target add wasm32-unknown-unknown".to_owned(),
        "-Zbuild-std=std,panic_abort".to_owned(),
        "about 2 minutes".to_owned(),
    ] {
        assert!(
            readme.contains(&needed),
            "README.md lacks {needed:?}:\n{readme}"
        );
    }
}

#[test]
fn filter_new_without_an_sdk_beside_the_binary_refuses_and_says_to_pass_sdk() {
    let root = tempfile::tempdir().expect("tempdir");
    let binary = place_binary(&root.path().join("opt/bin"));
    let output = Command::new(&binary)
        .args(["filter", "new", "tagger", "--dir"])
        .arg(root.path())
        .output()
        .expect("run promrelay filter new");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("no promrelay-sdk found beside") && stderr.contains("pass --sdk PATH"),
        "{stderr}"
    );
    assert!(!root.path().join("tagger").exists(), "nothing written");
}

#[test]
fn filter_help_texts_are_whole_sentences_and_every_option_is_explained() {
    let listing = promrelay_ok(&["filter", "--help"]);
    for command in ["run", "check", "new", "bench"] {
        let line = listing
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{command} ")))
            .unwrap_or_else(|| panic!("filter --help lists {command}:\n{listing}"));
        let summary = line.trim_start()[command.len()..].trim();
        assert!(
            summary.split_whitespace().count() >= 6 && !summary.ends_with([';', ',', ':']),
            "filter {command}: summary {summary:?} reads as cut off"
        );
        // Every option says what it is: `-h` puts each one's text on its line.
        let help = promrelay_ok(&["filter", command, "-h"]);
        for line in help.lines().filter(|l| l.trim_start().starts_with('-')) {
            let explained = line
                .trim_start()
                .split_once("  ")
                .is_some_and(|(_, text)| !text.trim().is_empty());
            assert!(
                explained,
                "filter {command} --help: {line:?} has no help text:\n{help}"
            );
        }
    }
}
