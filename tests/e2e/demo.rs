//! README's first command, `scripts/demo.sh`, run non-interactively (`--once`) against the debug
//! build: it starts the whole pipeline, sees node_exporter's series arrive, and leaves nothing
//! running behind.

use std::process::{Command, Stdio};

use promrelay_tests::pid_is_alive;
use promrelay_tests::relay::{relay_binary, workspace_root};

#[test]
fn demo_script_shows_node_exporter_series_arriving_and_stops_everything() {
    let output = Command::new("bash")
        .arg(workspace_root().join("scripts/demo.sh"))
        .arg("--once")
        .env("PROMRELAY_BIN", relay_binary())
        .env("DEMO_TIMEOUT", "120")
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let arrived: u64 = stdout
        .lines()
        .find_map(|line| line.trim().split_once(" node_exporter series arrived"))
        .and_then(|(count, _)| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no arrival line in:\n{stdout}"));
    assert!(arrived > 100, "only {arrived} series arrived:\n{stdout}");
    assert!(
        stdout.contains("/metrics"),
        "names the URL to look at:\n{stdout}"
    );
    let pids: Vec<u32> = stdout
        .lines()
        .filter_map(|line| line.split_once(" started (pid "))
        .filter_map(|(_, rest)| rest.trim_end_matches(')').parse().ok())
        .collect();
    assert_eq!(pids.len(), 4, "four processes started:\n{stdout}");
    for pid in pids {
        assert!(
            !pid_is_alive(pid),
            "pid {pid} still runs after the demo exited"
        );
    }
    let workdir = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("Config, logs:"))
        .map(|dir| dir.trim().to_string())
        .expect("the demo names its temp dir");
    assert!(
        !std::path::Path::new(&workdir).exists(),
        "the demo removed {workdir} on exit"
    );
}
