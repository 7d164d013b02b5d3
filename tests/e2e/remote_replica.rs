//! A remote replica fed from the change stream: the real watcher publishing to a real
//! `nats-server -js` on a loopback port, and the real `rowtrail replica apply --from-stream`
//! on a "remote host" (a folder without the archive or a config); kills of the applier at
//! its labelled steps, a server restart, and what is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rowtrail_standby::replica::{Position, Replica};
use rowtrail_tests::nats::{free_port, NatsServer};
#[allow(unused_imports)]
use rowtrail_tests::Armed;
use rowtrail_tests::{show, wait_until, Proc, Sandbox};
use rusqlite::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

/// How long a test waits for the watcher or the applier to catch up.
const CATCH_UP: Duration = Duration::from_secs(240);

const DDL: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE staff (id INTEGER PRIMARY KEY, name TEXT NOT NULL, salary REAL, note BLOB);
    CREATE TABLE tags (a TEXT, b INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID;
    CREATE TABLE log (line TEXT, n INTEGER);
";

/// Every row of every table of `DDL`, in a fixed order, as text (types included).
fn state(c: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    for (t, order) in [("staff", "id"), ("tags", "a, b"), ("log", "line, n")] {
        let mut s = c
            .prepare(&format!("SELECT * FROM {t} ORDER BY {order}"))
            .unwrap();
        let n = s.column_count();
        let rows = s
            .query_map([], |r| {
                let mut line = format!("{t}:");
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    line.push_str(&format!(" {v:?}"));
                }
                Ok(line)
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}

fn state_of(path: &Path) -> Vec<String> {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(20)).unwrap();
    state(&c)
}

/// A random workload: inserts, updates (key changes included), deletes, over all tables, in
/// transactions of one to several statements.
fn workload(c: &Connection, rng: &mut fastrand::Rng, statements: usize) {
    let mut left = statements;
    while left > 0 {
        let n = rng.usize(1..=left.min(8));
        left -= n;
        c.execute_batch("BEGIN").unwrap();
        for _ in 0..n {
            let id = rng.i64(1..60);
            let sql = match rng.u8(0..9) {
                0 | 1 => format!(
                    "INSERT OR REPLACE INTO staff (id, name, salary, note) VALUES ({id}, 'n{}', {}.5, x'0{}')",
                    rng.u32(..),
                    rng.u16(..),
                    rng.u8(0..10)
                ),
                2 => format!("UPDATE staff SET salary = salary * 1.1, name = name || 'x' WHERE id % 7 = {}", id % 7),
                3 => format!("UPDATE OR IGNORE staff SET id = id + 100 WHERE id = {id}"),
                4 => format!("DELETE FROM staff WHERE id = {id}"),
                5 => format!("INSERT OR IGNORE INTO tags VALUES ('t{}', {})", id % 5, id % 3),
                6 => format!("DELETE FROM tags WHERE b = {}", id % 3),
                7 => format!("INSERT INTO log VALUES ('l{}', {})", id % 4, id),
                _ => format!("DELETE FROM log WHERE rowid IN (SELECT rowid FROM log WHERE n = {id} LIMIT 1)"),
            };
            c.execute_batch(&sql).unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
    }
}

/// Many changes in few transactions: `rows` inserts into `staff` (ids above 1000), then an
/// update of each, in transactions of 50 statements.
fn bulk(c: &Connection, from: i64, rows: i64) {
    for chunk in (from..from + rows).collect::<Vec<_>>().chunks(50) {
        c.execute_batch("BEGIN").unwrap();
        for id in chunk {
            c.execute(
                "INSERT INTO staff VALUES (?1, 'bulk', 1.5, x'01')",
                [1000 + id],
            )
            .unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
    }
    c.execute_batch(&format!(
        "UPDATE staff SET salary = salary + 1 WHERE id >= {}",
        1000 + from
    ))
    .unwrap();
}

fn seeded(sb: &Sandbox) -> Connection {
    let c = sb.connect();
    c.execute_batch(DDL).unwrap();
    c.execute_batch(
        "INSERT INTO staff VALUES (1, 'ann', 10.0, x'00'), (2, 'bob', NULL, NULL), (3, 'cy', 3.25, x'ff');
         INSERT INTO tags VALUES ('t0', 0), ('t1', 1);
         INSERT INTO log VALUES ('a', 1), ('a', 1), ('b', NULL);",
    )
    .unwrap();
    c
}

/// A host without the archive: a folder with no config, where the replica is carried to.
struct RemoteHost {
    dir: tempfile::TempDir,
}

impl RemoteHost {
    fn new() -> Self {
        Self {
            dir: tempfile::Builder::new().prefix("remote").tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A `rowtrail` command run here (no config, no archive).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("ROWTRAIL_TEST_FAILPOINT")
            .env_remove("ROWTRAIL_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "rowtrail {args:?}:\n{}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "rowtrail {args:?}:\n{}",
            show(&out)
        );
        show(&out)
    }

    /// `replica apply --from-stream` of `replica` (a file here) from `url`.
    fn apply_args<'a>(url: &'a str, replica: &'a str, follow: bool) -> Vec<&'a str> {
        let mut a = vec![
            "replica",
            "apply",
            "--from-stream",
            url,
            "--subject",
            "rowtrail.source",
            "--to",
            replica,
        ];
        if follow {
            a.push("--follow");
        }
        a
    }
}

/// The status as JSON.
fn status(sb: &Sandbox) -> serde_json::Value {
    let out = sb.run(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Waits until the stream holds every archived change.
fn wait_published(sb: &Sandbox) {
    sb.ok(&["signal", "--wait"]);
    let total = sb.archived();
    wait_until(CATCH_UP, "the stream has every archived change", || {
        let s = status(sb);
        s["stream"]["published_id"].as_i64() == Some(total)
            && s["stream"]["lag_changes"].as_u64() == Some(0)
    });
}

fn stream_config(url: &str, extra: &str) -> String {
    format!("{extra}\n[stream]\nurl = \"{url}\"\nwindow = 512\n")
}

/// The replica's position, read with the standby's own reader.
fn position(path: &Path) -> Position {
    Replica::open(path).unwrap().position().clone()
}

/// A source with capture installed (a baseline taken), a watcher publishing it, and a replica
/// built from the install's baseline and carried to a remote host.
struct Setup {
    nats: NatsServer,
    sb: Sandbox,
    source: Connection,
    remote: RemoteHost,
    replica: PathBuf,
    _watcher: Proc,
}

fn setup(extra: &str) -> Setup {
    let nats = NatsServer::start();
    let sb = Sandbox::new(BIN);
    sb.write_config(&stream_config(&nats.url(), extra));
    let source = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let built = sb.path().join("carried.db");
    sb.ok(&["replica", "create", "--to", built.to_str().unwrap()]);
    let remote = RemoteHost::new();
    let replica = remote.path("replica.db");
    std::fs::copy(&built, &replica).unwrap();
    let watcher = sb.start_watcher();
    Setup {
        nats,
        sb,
        source,
        remote,
        replica,
        _watcher: watcher,
    }
}

#[test]
fn a_remote_replica_equals_the_local_replica_after_a_random_workload() {
    let s = setup("");
    let local = s.sb.path().join("local.db");
    s.sb.ok(&["replica", "create", "--to", local.to_str().unwrap()]);
    let url = s.nats.url();
    let r = s.replica.to_str().unwrap();
    let mut rng = fastrand::Rng::with_seed(19);
    for round in 0..3 {
        workload(&s.source, &mut rng, 250);
        wait_published(&s.sb);
        let out = s.remote.ok(&RemoteHost::apply_args(&url, r, false));
        assert!(
            out.contains("change(s) applied from ROWTRAIL_SOURCE"),
            "{out}"
        );
        s.sb.ok(&["replica", "apply", "--to", local.to_str().unwrap()]);
        let want = state(&s.source);
        assert_eq!(state_of(&local), want, "the local replica, round {round}");
        assert_eq!(
            state_of(&s.replica),
            want,
            "the remote replica, round {round}"
        );
        let (p, l) = (position(&s.replica), position(&local));
        assert_eq!(p.change_id, s.sb.archived(), "round {round}: {out}");
        assert!(p.consistent, "round {round}: {p:?}");
        assert_eq!(p.change_id, l.change_id, "round {round}");
    }
    // Nothing more to take: a second run applies nothing and stays where it is.
    let before = position(&s.replica);
    let out = s.remote.ok(&RemoteHost::apply_args(&url, r, false));
    assert!(out.contains(": 0 change(s) applied"), "{out}");
    assert_eq!(position(&s.replica), before);
    // The subjects were recorded: later runs need not name them.
    let out = s
        .remote
        .ok(&["replica", "apply", "--from-stream", &url, "--to", r]);
    assert!(out.contains("rowtrail.source.>"), "{out}");

    // Following: changes made now reach the remote replica without another command.
    let mut follower = Proc {
        child: s
            .remote
            .cmd(&RemoteHost::apply_args(&url, r, true))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    workload(&s.source, &mut rng, 250);
    wait_published(&s.sb);
    let want = state(&s.source);
    wait_until(CATCH_UP, "the following replica has every change", || {
        state_of(&s.replica) == want
    });
    follower.terminate();
    assert_eq!(position(&s.replica).change_id, s.sb.archived());
}
