//! Looking at the relay's pages as a user would: headless Chromium (Debian `chromium`) renders a
//! page and dumps its DOM or takes a screenshot, and HTML Tidy (Debian `tidy`, HTML5-aware)
//! checks that a page is valid. Both are real programs run as child processes, killed by PID
//! when they overrun their time.
//!
//! Screenshots go to [`artefacts_dir`], which the suite keeps after a run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Longest a Chromium run may take (a cold start here takes a second or two).
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// Where tests leave files for people to look at: `$PROMRELAY_ARTEFACTS`, else
/// `target/artefacts` of the workspace. Created when missing.
pub fn artefacts_dir() -> PathBuf {
    let dir = std::env::var_os("PROMRELAY_ARTEFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::relay::workspace_root()
                .join("target")
                .join("artefacts")
        });
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|error| panic!("create the artefacts dir {}: {error}", dir.display()));
    dir
}

/// Waits for `child` until `timeout`, collecting its stdout; kills it by PID when it overruns.
fn finish(mut child: Child, what: &str, timeout: Duration) -> anyhow::Result<(bool, String)> {
    // Read on a thread: a DOM larger than the pipe's buffer would otherwise block the child.
    let mut stdout = child.stdout.take().context("child stdout is piped")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the child")? {
            break status;
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{what} did not finish within {timeout:?}; killed it (PID {})",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().unwrap_or_default();
    Ok((status.success(), text))
}

/// A headless Chromium with its own profile and HOME in a temp dir.
pub struct Browser {
    home: tempfile::TempDir,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            home: tempfile::tempdir().expect("temp dir for Chromium's profile"),
        }
    }

    fn run(&self, args: &[String], what: &str) -> anyhow::Result<String> {
        let profile = self.home.path().join("profile");
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .context("start chromium (Debian package chromium; .ci/run installs it)")?;
        let (ok, stdout) = finish(child, what, BROWSER_TIMEOUT)?;
        if !ok {
            bail!("{what}: chromium failed; it printed:\n{stdout}");
        }
        Ok(stdout)
    }

    /// The DOM of `url` after Chromium loaded it (`--dump-dom`).
    pub fn dump_dom(&self, url: &str) -> String {
        self.run(
            &["--dump-dom".to_owned(), url.to_owned()],
            &format!("chromium --dump-dom {url}"),
        )
        .unwrap_or_else(|error| panic!("{error:#}"))
    }

    /// A PNG screenshot of `url` at `width`×`height` written to `path`.
    pub fn screenshot(&self, url: &str, path: &Path, width: u32, height: u32) {
        let args = [
            format!("--screenshot={}", path.display()),
            format!("--window-size={width},{height}"),
            url.to_owned(),
        ];
        self.run(&args, &format!("chromium --screenshot {url}"))
            .unwrap_or_else(|error| panic!("{error:#}"));
        let bytes = std::fs::read(path)
            .unwrap_or_else(|error| panic!("read the screenshot {}: {error}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            path.display()
        );
    }
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

/// Runs HTML Tidy over `html` (named `what` in messages): `Ok` when it reports neither errors
/// nor warnings, else `Err` with its report.
pub fn tidy_check(html: &str, what: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temp dir for tidy")?;
    let file = dir.path().join("page.html");
    std::fs::write(&file, html).context("write the page for tidy")?;
    let child = Command::new("tidy")
        .args([
            "-quiet",
            "-errors",
            "--show-warnings",
            "yes",
            "--gnu-emacs",
            "yes",
        ])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start tidy (Debian package tidy; .ci/run installs it)")?;
    let output = child.wait_with_output().context("waiting for tidy")?;
    let report = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    if output.status.success() && report.trim().is_empty() {
        Ok(())
    } else {
        bail!(
            "tidy found problems in {what} ({}):\n{report}",
            output.status
        )
    }
}
