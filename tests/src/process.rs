//! One child process of the harness: spawned with its output in a log file, killed by PID on drop.
//!
//! Children are spawned from one long-lived harness thread with `PR_SET_PDEATHSIG = SIGKILL`: Linux
//! sends that signal when the *spawning thread* exits, so a dedicated thread that lives as long as the
//! test process makes "the test process died" kill every server, while a test thread finishing early
//! does not. Drop kills with SIGKILL and reaps; on a panicking thread it first prints the log's tail.
//!
//! **Invariant:** a `ServerProcess` never signals any PID but its own child's.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Lines of log printed when a test panics while the process is alive.
const TAIL_LINES: usize = 40;

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Sends a command to the spawner thread and returns the child it started.
fn spawn_from_harness_thread(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    // The receiver may be gone if the requesting test panicked meanwhile.
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the harness spawner thread");
        Mutex::new(sender)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, reply))
        .expect("the spawner thread lives as long as the process");
    answer
        .recv()
        .expect("the spawner thread answers every request")
}

/// Whether a process with this PID exists (a reaped child does not; a zombie still does).
pub fn pid_is_alive(pid: u32) -> bool {
    let pid = i32::try_from(pid).expect("PIDs fit in i32");
    signal::kill(Pid::from_raw(pid), None).is_ok()
}

/// A running (or stopped, restartable) server process with its log file.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log_path: PathBuf,
    child: Option<Child>,
    last_exit: Option<ExitStatus>,
}

impl ServerProcess {
    /// Starts `program args` with `envs` added to the environment, stdout and stderr appended to
    /// `log_path`. `name` is how messages refer to it ("nats-server", "promrelay").
    pub fn spawn(
        name: &str,
        program: impl AsRef<Path>,
        args: &[String],
        envs: &[(String, String)],
        log_path: impl AsRef<Path>,
    ) -> anyhow::Result<ServerProcess> {
        let mut process = ServerProcess {
            name: name.to_string(),
            program: program.as_ref().to_path_buf(),
            args: args.to_vec(),
            envs: envs.to_vec(),
            log_path: log_path.as_ref().to_path_buf(),
            child: None,
            last_exit: None,
        };
        process.respawn()?;
        Ok(process)
    }

    /// Starts the same command again (after [`stop`](Self::stop) or [`kill9`](Self::kill9)),
    /// appending to the same log.
    pub fn respawn(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!(
                "{} is still running; stop it before starting it again",
                self.name
            );
        }
        let log = self.open_log()?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicate the log file handle")?)
            .stderr(log);
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which
        // is async-signal-safe; it touches no memory shared with the parent.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = spawn_from_harness_thread(command)
            .with_context(|| format!("start {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        self.last_exit = None;
        Ok(())
    }

    fn open_log(&self) -> anyhow::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("open log file {}", self.log_path.display()))
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log so far (lossy UTF-8; empty if none).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends `signal` to the child (no-op when it is not running).
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        if let Some(pid) = self.pid() {
            let pid = Pid::from_raw(i32::try_from(pid).expect("PIDs fit in i32"));
            signal::kill(pid, signal).with_context(|| format!("send {signal} to {}", self.name))?;
        }
        Ok(())
    }

    /// The exit status if the child has exited (reaping it), `None` while it runs.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.last_exit = Some(status);
            }
        }
        self.last_exit
    }

    /// Fails (with the log's tail) if the child has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.try_exit() {
            Some(status) if self.child.is_none() => bail!(
                "{} exited with {status}; log tail:\n{}",
                self.name,
                self.log_tail(TAIL_LINES)
            ),
            _ => Ok(()),
        }
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            self.try_exit();
            if self.child.is_none() {
                return self.last_exit;
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap: the crash case.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            if let Ok(status) = child.wait() {
                self.last_exit = Some(status);
            }
        }
    }

    /// SIGTERM, wait up to `grace` for a clean exit, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.child.is_none() {
            return self.last_exit;
        }
        let _ = self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait_exit(grace) {
            return Some(status);
        }
        eprintln!(
            "{} did not exit within {grace:?} of SIGTERM; killing it",
            self.name
        );
        self.kill9();
        self.last_exit
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- last {TAIL_LINES} log lines of {} ({}) ----\n{}\n---- end of {} log ----",
                self.name,
                self.log_path.display(),
                self.log_tail(TAIL_LINES),
                self.name
            );
        }
        self.kill9();
    }
}
