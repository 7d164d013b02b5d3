//! Child processes: killed and reaped when dropped, stopped by signal, or parked at a
//! failpoint and killed there.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    /// The process.
    pub child: Child,
}

impl Proc {
    /// Sends it SIGTERM and waits for it to exit; panics if the signal cannot be sent.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .output()
            .expect("run kill");
        assert!(kill.status.success(), "{}", show(&kill));
        self.child.wait().expect("wait for the process")
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How long a process may take to reach its failpoint.
pub const REACH_FAILPOINT: Duration = Duration::from_secs(60);

/// A process started with a failpoint armed, and its stderr line by line.
pub struct Armed {
    /// The process.
    pub proc: Proc,
    lines: Receiver<String>,
    what: String,
}

impl Armed {
    /// Starts `cmd` (a `rowtrail` command) with `ROWTRAIL_TEST_FAILPOINT=spec` (`label` or
    /// `label:nth`); `what` names it in failure messages.
    pub fn spawn(mut cmd: Command, spec: &str, what: String) -> Self {
        cmd.env("ROWTRAIL_TEST_FAILPOINT", spec)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rowtrail");
        let lines = stderr_lines(&mut child);
        Self {
            proc: Proc { child },
            lines,
            what,
        }
    }

    /// Waits (with a deadline) until the process reports it stopped at `label`, then SIGKILLs it
    /// there. Returns its stderr up to that point.
    pub fn kill_at(&mut self, label: &str) -> Vec<String> {
        let seen = self.wait_parked(label);
        self.proc.kill9();
        seen
    }

    /// Waits (with a deadline) until the process reports it stopped at `label`; checks it is
    /// still there. Returns its stderr up to that point.
    pub fn wait_parked(&mut self, label: &str) -> Vec<String> {
        let want = format!("rowtrail-failpoint {label}");
        let deadline = Instant::now() + REACH_FAILPOINT;
        let mut seen = Vec::new();
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let hit = line.trim() == want;
                    seen.push(line);
                    if hit {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no `{want}` within {REACH_FAILPOINT:?}; stderr so far:\n{}",
                    self.what,
                    seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: it ended ({:?}) without reaching `{want}`; stderr:\n{}",
                    self.what,
                    self.proc.child.try_wait(),
                    seen.join("\n")
                ),
            }
        }
        assert!(
            self.proc.child.try_wait().expect("try_wait").is_none(),
            "{}: it should be parked at the failpoint, not exited",
            self.what
        );
        seen
    }
}

/// Runs `cmd` (a `rowtrail` command) with the failpoint `label` armed and kills it with SIGKILL
/// once it reports reaching it; panics if it does not within a minute.
pub fn kill_at(cmd: Command, label: &str) {
    let what = format!("`{cmd:?}`");
    Armed::spawn(cmd, label, what).kill_at(label);
}

/// A thread that forwards the child's stderr lines (so the pipe never fills).
pub fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Both streams of a finished command, for failure messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `cond` every few milliseconds until it holds; panics naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
