//! A `rowtrail watch` process, seen from whoever started it: the demo, the benchmarks and the
//! tests all run the real watcher this way. It is started from the `rowtrail` binary with a
//! config, its log goes to a file, it is ready once it answers `status` on its socket, it is
//! stopped with a `shutdown` request, and it is killed if it is dropped still running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client;
use crate::protocol::Request;
use crate::WatcherError;

/// A running watcher process.
pub struct WatcherProcess {
    /// `None` once handed over by [`WatcherProcess::into_child`].
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

/// How often the process is looked at while waiting for it.
const POLL: Duration = Duration::from_millis(10);

impl WatcherProcess {
    /// Starts `bin --config CONFIG watch` in the config's folder (where a relative alert
    /// command runs) with `RUST_LOG=rust_log`, its stderr appended to `log`, and waits until it
    /// answers `status` on `socket` (at most `ready_within`).
    pub fn start(
        bin: &Path,
        config: &Path,
        socket: &Path,
        log: &Path,
        rust_log: &str,
        ready_within: Duration,
    ) -> Result<Self, WatcherError> {
        let io = |context: &str, cause| WatcherError::Socket {
            socket: socket.to_path_buf(),
            context: context.to_string(),
            cause,
        };
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| io("cannot open the watcher's log file", e))?;
        let mut cmd = Command::new(bin);
        if let Some(dir) = config.parent().filter(|d| !d.as_os_str().is_empty()) {
            cmd.current_dir(dir);
        }
        let child = cmd
            .arg("--config")
            .arg(config)
            .arg("watch")
            .env("RUST_LOG", rust_log)
            .env_remove("ROWTRAIL_TEST_FAILPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| io("cannot start rowtrail watch", e))?;
        let mut w = Self {
            child: Some(child),
            socket: socket.to_path_buf(),
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + ready_within;
        loop {
            if client::request(socket, &Request::Status, Duration::from_secs(1)).is_ok() {
                return Ok(w);
            }
            w.check_alive()?;
            if Instant::now() > deadline {
                return Err(WatcherError::Timeout {
                    socket: w.socket.clone(),
                    seconds: ready_within.as_secs(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    fn proc(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is held until it is handed over")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The socket it serves.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The child process, handed over: whoever takes it stops it.
    pub fn into_child(mut self) -> Child {
        self.child
            .take()
            .expect("the child is held until it is handed over")
    }

    /// Fails, naming the log, when the process has exited.
    pub fn check_alive(&mut self) -> Result<(), WatcherError> {
        match self.proc().try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(WatcherError::Remote(format!(
                "the watcher exited ({status}); see {}",
                self.log.display()
            ))),
            Err(e) => Err(WatcherError::Socket {
                socket: self.socket.clone(),
                context: "cannot look at the watcher process".into(),
                cause: e,
            }),
        }
    }

    /// Its peak resident set size so far (`VmHWM`), in bytes, where the OS tells (Linux).
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    /// Asks it to stop (after the batch in hand) and waits, at most `within`, for it to exit
    /// cleanly.
    pub fn stop(mut self, within: Duration) -> Result<(), WatcherError> {
        client::request(&self.socket, &Request::Shutdown, Duration::from_secs(5))?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.proc().try_wait().ok().flatten() {
                if !status.success() {
                    return Err(WatcherError::Remote(format!(
                        "the watcher stopped with {status}; see {}",
                        self.log.display()
                    )));
                }
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        Err(WatcherError::Timeout {
            socket: self.socket.clone(),
            seconds: within.as_secs(),
        })
    }
}

impl Drop for WatcherProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
