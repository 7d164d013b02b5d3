//! The heartbeat probe of a primary, from the backup host: a TCP connect, a login, a trivial
//! query, each with its own timeout, so a primary that is slow (it accepts the connection but
//! does not answer in time) is told apart from one that is gone (nothing listens, the file is
//! missing or unreadable).
//!
//! What each step is, by engine:
//!
//! | step | SQL Server | SQLite |
//! |---|---|---|
//! | connect | TCP connect to the server and port of the connection string | TCP connect to the node's `address`, when one is configured (the service that owns the file) |
//! | login | the TDS login (on a thread, within the login timeout) | an `http://` address: its answer to `GET` (status 2xx); then opening the file |
//! | query | the heartbeat's queries (installation, backlog) | the same, on the file |
//!
//! SQLite has no server: a node's process is the application that owns the file. Give its
//! health URL as the address and a frozen (`SIGSTOP`ped) or killed process is seen as such;
//! without one, only the file itself is probed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rowtrail_reader::source::{Health, SourceSpec};
use rowtrail_reader::ReaderError;
use serde::{Deserialize, Serialize};

/// The probe's timeouts, one per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The TCP connect.
    pub connect: Duration,
    /// The login (and, for an HTTP address, its answer).
    pub login: Duration,
    /// The trivial query.
    pub query: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(2),
            login: Duration::from_secs(5),
            query: Duration::from_secs(5),
        }
    }
}

/// Where a primary is reached over the network, besides its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// Nothing beyond the database (a SQLite file with no service named).
    None,
    /// A TCP address to connect to (`host:port`).
    Tcp(String),
    /// An HTTP health URL (`http://host:port/path`): connect, then `GET`, 2xx expected.
    Http {
        /// `host:port`.
        authority: String,
        /// The path, `/` at least.
        path: String,
    },
}

impl Address {
    /// Reads `host:port` or `http://host:port/path`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(Address::None);
        }
        if let Some(rest) = t.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            if !authority.contains(':') {
                return Err(format!(
                    "{text:?} names no port: write http://host:port/path"
                ));
            }
            return Ok(Address::Http {
                authority: authority.to_string(),
                path: path.to_string(),
            });
        }
        if t.contains("://") {
            return Err(format!(
                "{text:?}: only host:port and http://host:port/path addresses are probed"
            ));
        }
        if !t.contains(':') {
            return Err(format!("{text:?} names no port: write host:port"));
        }
        Ok(Address::Tcp(t.to_string()))
    }

    /// The address a SQL Server connection reaches.
    pub fn of_spec(spec: &SourceSpec) -> Address {
        match spec {
            SourceSpec::Mssql(settings) => settings
                .config()
                .map(|c| Address::Tcp(c.get_addr()))
                .unwrap_or(Address::None),
            SourceSpec::Sqlite { .. } => Address::None,
        }
    }

    fn authority(&self) -> Option<&str> {
        match self {
            Address::None => None,
            Address::Tcp(a) => Some(a),
            Address::Http { authority, .. } => Some(authority),
        }
    }
}

/// Which step a probe stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// The TCP connect.
    Connect,
    /// The login.
    Login,
    /// The query.
    Query,
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum Verdict {
    /// Every step answered in time.
    Up,
    /// A step did not answer within its timeout: the primary is there but frozen or
    /// overloaded.
    Slow {
        /// The step that timed out.
        step: Step,
        /// What happened, for status and logs.
        detail: String,
    },
    /// A step failed outright: nothing listens, the login is refused, the file is gone or
    /// unreadable.
    Gone {
        /// The step that failed.
        step: Step,
        /// What happened.
        detail: String,
    },
}

impl Verdict {
    /// Whether the probe counts as a failed heartbeat.
    pub fn failed(&self) -> bool {
        !matches!(self, Verdict::Up)
    }
}

/// One probe's result.
#[derive(Debug)]
pub struct Probe {
    /// What it found.
    pub verdict: Verdict,
    /// How long the whole probe took.
    pub elapsed: Duration,
    /// The heartbeat's reading of the database, when the query step answered.
    pub health: Option<Health>,
    /// The query step's error, when it failed with one (a locked source is blocked, not down:
    /// callers tell the two apart by it).
    pub error: Option<ReaderError>,
}

/// Probes `spec` (reached at `address`, if any) once.
pub fn probe(spec: &SourceSpec, address: &Address, timeouts: &Timeouts) -> Probe {
    let started = Instant::now();
    let done = |verdict, health, error| Probe {
        verdict,
        elapsed: started.elapsed(),
        health,
        error,
    };
    if let Some(authority) = address.authority() {
        let stream = match connect(authority, timeouts.connect) {
            Ok(s) => s,
            Err(v) => return done(v, None, None),
        };
        if let Address::Http { path, .. } = address {
            if let Err(v) = http_get(stream, authority, path, timeouts.login) {
                return done(v, None, None);
            }
        }
    }
    // The database itself: login and query on a thread of their own, so a server or file that
    // hangs is abandoned at the deadline (the thread ends when the driver gives up).
    let (tx, rx) = mpsc::channel();
    let spec = spec.clone();
    let deadline = timeouts.login + timeouts.query;
    std::thread::Builder::new()
        .name("rowtrail-probe".into())
        .spawn(move || {
            let _ = tx.send(spec.health());
        })
        .ok();
    match rx.recv_timeout(deadline) {
        Ok(Ok(h)) => done(Verdict::Up, Some(h), None),
        Ok(Err(e)) => {
            let detail = e.to_string();
            done(
                Verdict::Gone {
                    step: Step::Query,
                    detail,
                },
                None,
                Some(e),
            )
        }
        Err(_) => done(
            Verdict::Slow {
                step: Step::Login,
                detail: format!(
                    "the database did not answer the login and query within {:.1} s",
                    deadline.as_secs_f64()
                ),
            },
            None,
            None,
        ),
    }
}

fn connect(authority: &str, timeout: Duration) -> Result<TcpStream, Verdict> {
    let gone = |detail: String| Verdict::Gone {
        step: Step::Connect,
        detail,
    };
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|e| gone(format!("{authority} does not resolve: {e}")))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = Some(Verdict::Slow {
                    step: Step::Connect,
                    detail: format!(
                        "no answer to a TCP connect to {addr} within {:.1} s",
                        timeout.as_secs_f64()
                    ),
                });
            }
            Err(e) => last = Some(gone(format!("TCP connect to {addr}: {e}"))),
        }
    }
    Err(last.unwrap_or_else(|| gone(format!("{authority} resolves to no address"))))
}

/// One `GET`, reading only the status line: a health answer is its status.
fn http_get(
    mut stream: TcpStream,
    authority: &str,
    path: &str,
    timeout: Duration,
) -> Result<(), Verdict> {
    let slow = || Verdict::Slow {
        step: Step::Login,
        detail: format!(
            "{authority} accepts connections but did not answer GET {path} within {:.1} s \
             (frozen or overloaded)",
            timeout.as_secs_f64()
        ),
    };
    let gone = |detail: String| Verdict::Gone {
        step: Step::Login,
        detail,
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: rowtrail-heartbeat\r\n\r\n"
    );
    let deadline = Instant::now() + timeout;
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return Err(match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => slow(),
            _ => gone(format!("{authority}: {e}")),
        });
    }
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        if Instant::now() >= deadline {
            return Err(slow());
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(slow())
            }
            Err(e) => return Err(gone(format!("{authority}: {e}"))),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    match status {
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(code) => Err(gone(format!("GET {path} on {authority} answered {code}"))),
        None => Err(gone(format!(
            "{authority} closed the connection without an HTTP answer to GET {path}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_and_bad_ones_say_how() {
        assert_eq!(Address::parse("").unwrap(), Address::None);
        assert_eq!(
            Address::parse("127.0.0.1:7001").unwrap(),
            Address::Tcp("127.0.0.1:7001".into())
        );
        assert_eq!(
            Address::parse("http://127.0.0.1:7001").unwrap(),
            Address::Http {
                authority: "127.0.0.1:7001".into(),
                path: "/".into()
            }
        );
        assert!(Address::parse("db.example")
            .unwrap_err()
            .contains("names no port"));
        assert!(Address::parse("https://x:1/").unwrap_err().contains("only"));
    }

    #[test]
    fn nothing_listening_is_gone_and_a_silent_listener_is_slow() {
        let spec = SourceSpec::Sqlite {
            path: "/nonexistent/rowtrail-probe.db".into(),
            capture_new_tables: false,
        };
        let t = Timeouts {
            connect: Duration::from_millis(500),
            login: Duration::from_millis(300),
            query: Duration::from_millis(300),
        };
        // A port nothing listens on: bind, note it, drop.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = probe(&spec, &Address::Tcp(format!("127.0.0.1:{port}")), &t);
        assert!(
            matches!(
                p.verdict,
                Verdict::Gone {
                    step: Step::Connect,
                    ..
                }
            ),
            "{:?}",
            p.verdict
        );
        // A listener that accepts (the kernel does) but never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let p = probe(
            &spec,
            &Address::Http {
                authority: addr.to_string(),
                path: "/health".into(),
            },
            &t,
        );
        assert!(
            matches!(
                p.verdict,
                Verdict::Slow {
                    step: Step::Login,
                    ..
                }
            ),
            "{:?}",
            p.verdict
        );
        // Reached, but the file is not there.
        let p = probe(&spec, &Address::None, &t);
        assert!(
            matches!(
                p.verdict,
                Verdict::Gone {
                    step: Step::Query,
                    ..
                }
            ),
            "{:?}",
            p.verdict
        );
    }
}
