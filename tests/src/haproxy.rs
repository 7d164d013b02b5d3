//! A real HAProxy in front of test nodes, for the failover tests: an HTTP frontend on a free
//! loopback port, one backend per node checked by an HTTP health check (`inter`, `fall 3`,
//! `rise 2`) on the node's health endpoint, started by the test and stopped by its PID.
//!
//! The binary is `$ROWTRAIL_HAPROXY`, else `/usr/sbin/haproxy` (Debian's package, which
//! `scripts/prereqs.sh` installs), else `haproxy` on `PATH`; without one the test fails,
//! naming the setup command.
//!
//! Also here: [`Service`], a node's stand-in service (what clients reach through the proxy):
//! Python's `http.server` serving a folder with `whoami` (the node's name) and `health`, so a
//! client sees which node answered, and the heartbeat can check the service itself (killed:
//! nothing listens; stopped with SIGSTOP: it accepts connections and never answers).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::nats::free_port;
use crate::wait_until;

/// The `haproxy` binary the tests run (see the module documentation).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ROWTRAIL_HAPROXY") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/sbin/haproxy");
    if debian.exists() {
        return debian.to_path_buf();
    }
    if let Some(on_path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("haproxy"))
            .find(|p| p.is_file())
    }) {
        return on_path;
    }
    panic!(
        "haproxy is not installed: run `bash scripts/prereqs.sh` (it installs Debian's haproxy \
         package), or set ROWTRAIL_HAPROXY"
    );
}

/// One backend: the node's service port and the port its health endpoint is served on.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Its name in the proxy.
    pub name: String,
    /// Where clients are sent.
    pub service_port: u16,
    /// Where the health check asks.
    pub check_port: u16,
}

/// A running HAProxy, killed when dropped.
pub struct Haproxy {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts a proxy sending clients to whichever of `backends` answers `GET check_path` with
    /// 200, checked every `inter_ms`.
    pub fn start(backends: &[Backend], check_path: &str, inter_ms: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let servers: String = backends
            .iter()
            .map(|b| {
                format!(
                    "    server {} 127.0.0.1:{} check port {} inter {inter_ms}ms fall 3 rise 2\n",
                    b.name, b.service_port, b.check_port
                )
            })
            .collect();
        let config = format!(
            "global\n    maxconn 64\n\ndefaults\n    mode http\n    timeout connect 1s\n    \
             timeout client 5s\n    timeout server 5s\n    timeout check 1s\n\n\
             frontend clients\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\n\
             backend nodes\n    option httpchk GET {check_path}\n    \
             http-check expect status 200\n{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write haproxy.cfg");
        let check = Command::new(binary())
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy refuses the test's configuration:\n{}",
            crate::show(&check)
        );
        let child = Command::new(binary())
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let proxy = Self {
            child: Some(child),
            port,
            _dir: dir,
        };
        wait_until(Duration::from_secs(20), "haproxy listens", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        proxy
    }

    /// Which node a client reaches through the proxy now (`None`: no node is up, or the
    /// request failed).
    pub fn whoami(&self) -> Option<String> {
        let (code, body) = get(self.port, "/whoami")?;
        (code == 200).then(|| body.trim().to_string())
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.0 `GET` on a loopback port: the status code and the body.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

/// A node's stand-in service (see the module documentation), killed when dropped.
pub struct Service {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the service of node `name` on a free loopback port.
    pub fn start(name: &str) -> Self {
        Self::start_on(name, free_port())
    }

    /// Starts the service of node `name` on `port` (a node coming back where it was).
    pub fn start_on(name: &str, port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("whoami"), format!("{name}\n")).unwrap();
        std::fs::write(dir.path().join("health"), "ok\n").unwrap();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let service = Self {
            child,
            port,
            _dir: dir,
        };
        wait_until(
            Duration::from_secs(20),
            "the node's service answers",
            || get(port, "/health").is_some_and(|(c, _)| c == 200),
        );
        service
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its health URL, as `[source] address` takes it.
    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it `signal` (`KILL`, `STOP`, `CONT`).
    pub fn signal(&mut self, signal: &str) {
        let out = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .output()
            .expect("run kill");
        assert!(out.status.success(), "{}", crate::show(&out));
        if signal == "KILL" {
            let _ = self.child.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
