//! A SQLite source as applications really use it: locks other processes hold, schema changes
//! made while capture runs, writers with and without a busy timeout (issue 20, items 4, 5, 7).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rowtrail_tests::{show, wait_until, Sandbox};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

/// A `sqlite3` shell on the source, fed statements one at a time; killed when dropped.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Shell {
    fn open(sb: &Sandbox) -> Self {
        let mut child = Command::new("sqlite3")
            .arg(sb.source())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "the sqlite3 shell is needed for this test: bash scripts/prereqs.sh installs it",
            );
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// Runs `sql` and waits (with a deadline) until the shell has done it.
    fn run(&mut self, sql: &str) {
        writeln!(self.stdin, "{sql}\nSELECT 'done';").unwrap();
        self.stdin.flush().unwrap();
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the sqlite3 shell answers");
        assert_eq!(line, "done", "sqlite3 said something else");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `status --json`, whatever its verdict (its exit code says healthy, degraded or down).
fn status_json(sb: &Sandbox) -> Value {
    let out = sb.run(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)))
}

/// Issue 20, item 7: a source another process keeps locked is reported as locked, naming who
/// holds it, after a wait of a few seconds, not as a file that may not be a database after
/// 16–30 s.
#[test]
fn issue_20_a_locked_source_is_reported_as_locked_by_whom_and_promptly() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v);");
    c.execute("INSERT INTO t VALUES (1, 'a')", []).unwrap();
    drop(c);
    let mut shell = Shell::open(&sb);
    shell.run("BEGIN EXCLUSIVE;");
    let started = Instant::now();
    let e = sb.fails(&["read"], 1);
    let took = started.elapsed();
    assert!(
        e.contains("database is locked") && !e.contains("is it a SQLite database"),
        "{e}"
    );
    if cfg!(target_os = "linux") {
        assert!(
            e.contains(&format!("process {} (sqlite3)", shell.pid())) && e.contains("exclusively"),
            "who holds what: {e}"
        );
    }
    assert!(took < Duration::from_secs(12), "one attempt took {took:?}");
    shell.run("ROLLBACK;");
    sb.ok(&["read"]);
    assert_eq!(sb.archived(), 1);
}

/// Issue 20, item 7: `status` shows a source whose write lock another process keeps as
/// blocked (with who holds it), and as up again once the lock is released.
#[test]
fn issue_20_status_shows_a_source_kept_locked_as_blocked() {
    let sb = Sandbox::new(BIN);
    sb.write_config("heartbeat_interval_ms = 200");
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v);");
    c.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    let _w = sb.start_watcher();
    let mut shell = Shell::open(&sb);
    shell.run("BEGIN IMMEDIATE; INSERT INTO t VALUES (1, 'held');");
    wait_until(
        Duration::from_secs(15),
        "status says the source is blocked",
        || status_json(&sb)["source_blocked"].is_string(),
    );
    let s = status_json(&sb);
    let why = s["source_blocked"].as_str().unwrap();
    assert!(why.contains("database is locked"), "{s}");
    if cfg!(target_os = "linux") {
        assert!(
            why.contains(&format!(
                "process {} (sqlite3) holds the write lock",
                shell.pid()
            )),
            "{s}"
        );
    }
    assert_eq!(s["health"], "degraded", "{s}");
    assert_eq!(s["source_up"], true, "a locked source answers: {s}");
    let human = sb.run(&["status"]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("BLOCKED"),
        "{}",
        show(&human)
    );
    shell.run("COMMIT;");
    wait_until(
        Duration::from_secs(15),
        "the source is no longer blocked and the held insert is archived",
        || status_json(&sb)["source_blocked"].is_null() && sb.archived() == 1,
    );
}
