//! A remote replica fed from the change stream: the real watcher publishing to a real
//! `nats-server -js` on a loopback port, and the real `rowtrail replica apply --from-stream`
//! on a "remote host" (a folder without the archive or a config); kills of the applier at
//! its labelled steps, a server restart, and what is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rowtrail_standby::replica::{Position, Replica};
use rowtrail_stream::subject::Subjects;
use rowtrail_stream::{Connection as StreamConnection, Credentials, Outgoing, Settings, Storage};
use rowtrail_tests::nats::{free_port, NatsServer};
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
    rowtrail_tests::tables::rows_as_text(
        c,
        &[("staff", "id"), ("tags", "a, b"), ("log", "line, n")],
    )
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

/// A source with capture installed (a baseline taken), a watcher publishing it, `before`
/// statements of a random workload archived and published, and then a replica built from the
/// install's baseline and the archive (standing after those changes) carried to a remote host.
struct Setup {
    nats: NatsServer,
    sb: Sandbox,
    source: Connection,
    remote: RemoteHost,
    replica: PathBuf,
    _watcher: Proc,
}

fn setup(before: usize) -> Setup {
    let nats = NatsServer::start();
    let sb = Sandbox::new(BIN);
    sb.write_config(&stream_config(&nats.url(), ""));
    let source = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let watcher = sb.start_watcher();
    if before > 0 {
        workload(&source, &mut fastrand::Rng::with_seed(1), before);
        wait_published(&sb);
    }
    let built = sb.path().join("carried.db");
    sb.ok(&["replica", "create", "--to", built.to_str().unwrap()]);
    let remote = RemoteHost::new();
    let replica = remote.path("replica.db");
    std::fs::copy(&built, &replica).unwrap();
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
    // The carried replica stands after 100 statements' changes: the stream's first messages
    // are in it already and are passed over.
    let s = setup(100);
    assert!(position(&s.replica).change_id > 0);
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

    let status = s.remote.ok(&["replica", "status", "--to", r]);
    assert!(
        status.contains("fed from the stream: subjects rowtrail.source.>, stream ROWTRAIL_SOURCE"),
        "{status}"
    );
    // Paused, it stays where it is; resumed, it goes on.
    s.remote.ok(&["replica", "pause", "--to", r]);
    workload(&s.source, &mut rng, 50);
    wait_published(&s.sb);
    let held = (state_of(&s.replica), position(&s.replica));
    let out = s.remote.ok(&RemoteHost::apply_args(&url, r, false));
    assert!(out.contains(": 0 change(s) applied"), "{out}");
    assert_eq!((state_of(&s.replica), position(&s.replica)), held);
    s.remote.ok(&["replica", "resume", "--to", r]);
    s.remote.ok(&RemoteHost::apply_args(&url, r, false));
    assert_eq!(state_of(&s.replica), state(&s.source));

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

/// The state the archive gives at change `at`: the replica copy `from` (standing at an earlier
/// position) brought to `at` with the archive's own changes, through the replica's apply path.
fn archive_state_at(sb: &Sandbox, from: &Path, at: i64) -> Vec<String> {
    let reference = sb.path().join(format!("reference-{at}.db"));
    let _ = std::fs::remove_file(&reference);
    std::fs::copy(from, &reference).unwrap();
    let mut r = Replica::open(&reference).unwrap();
    let start = r.position().change_id;
    let changes: Vec<_> = rowtrail_tests::replay::archived_changes(&sb.archive())
        .into_iter()
        .filter(|c| c.id > start && c.id <= at)
        .collect();
    let last = changes.last().expect("changes in between");
    let p = Position {
        change_id: at,
        seq: last.seq,
        source_at: last.at.clone(),
        consistent: true,
    };
    r.apply_changes(&changes, p, &[], || {}).unwrap();
    drop(r);
    state_of(&reference)
}

#[test]
fn an_applier_killed_mid_apply_and_after_a_commit_leaves_no_gap_and_no_duplicate() {
    let s = setup(0);
    let url = s.nats.url();
    let r = s.replica.to_str().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    workload(&s.source, &mut rng, 200);
    wait_published(&s.sb);
    s.remote.ok(&RemoteHost::apply_args(&url, r, false));
    let p1 = position(&s.replica);
    let at_p1 = s.sb.path().join("at-p1.db");
    std::fs::copy(&s.replica, &at_p1).unwrap();
    // Several steps' worth: 6,000 inserts in transactions of 50, then one update of them all.
    bulk(&s.source, 0, 6_000);
    wait_published(&s.sb);
    let total = s.sb.archived();

    // Killed with its second step's rows and position written, not committed.
    let mut armed = Armed::spawn(
        s.remote.cmd(&RemoteHost::apply_args(&url, r, true)),
        "remote-apply-before-commit:2",
        "the remote applier".into(),
    );
    armed.kill_at("remote-apply-before-commit");
    let p = position(&s.replica);
    assert!(
        p.change_id > p1.change_id && p.change_id < total,
        "one step committed before the kill: {p:?}, from {} to {total}",
        p1.change_id
    );
    assert!(p.consistent, "{p:?}");
    assert_eq!(
        state_of(&s.replica),
        archive_state_at(&s.sb, &at_p1, p.change_id),
        "the replica killed mid-apply equals the archive at its position"
    );

    // Killed after a commit, before the messages were acknowledged.
    let mut armed = Armed::spawn(
        s.remote.cmd(&RemoteHost::apply_args(&url, r, true)),
        "remote-apply-after-commit:1",
        "the remote applier".into(),
    );
    armed.kill_at("remote-apply-after-commit");
    let p2 = position(&s.replica);
    assert!(
        p2.change_id > p.change_id && p2.change_id < total,
        "{p2:?} after {p:?}"
    );
    assert_eq!(
        state_of(&s.replica),
        archive_state_at(&s.sb, &at_p1, p2.change_id),
        "the replica killed after a commit equals the archive at its position"
    );

    // Started again: the unacknowledged messages come again and are passed over (a change
    // applied twice would fail its before-image check), the rest is applied once.
    let out = s.remote.ok(&RemoteHost::apply_args(&url, r, false));
    assert!(out.contains(&format!("at change {total} ")), "{out}");
    assert_eq!(state_of(&s.replica), state(&s.source));
    assert_eq!(position(&s.replica).change_id, total);
}

#[test]
fn a_server_restarted_mid_consume_delays_the_replica_and_loses_nothing() {
    let mut s = setup(0);
    let url = s.nats.url();
    let r = s.replica.to_str().unwrap();
    let start = position(&s.replica).change_id;
    bulk(&s.source, 0, 30_000);
    wait_published(&s.sb);
    let total = s.sb.archived();
    let log = s.remote.path("applier.log");
    let mut follower = Proc {
        child: s
            .remote
            .cmd(&RemoteHost::apply_args(&url, r, true))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    };
    wait_until(CATCH_UP, "the applier has begun", || {
        position(&s.replica).change_id > start
    });
    s.nats.stop();
    let at_stop = position(&s.replica).change_id;
    assert!(at_stop < total, "the stop came too late to test anything");
    wait_until(CATCH_UP, "the applier says the server is down", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("trying again"))
    });
    assert!(
        follower.child.try_wait().unwrap().is_none(),
        "a follower waits for the server"
    );
    s.nats.restart();
    wait_until(CATCH_UP, "the applier has every change", || {
        position(&s.replica).change_id == total
    });
    follower.terminate();
    assert_eq!(state_of(&s.replica), state(&s.source));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("the stream answers again"), "{logged}");
}

/// A replica built from a source's install baseline, in its own sandbox (no stream).
fn lone_replica(remote: &RemoteHost, name: &str) -> (Sandbox, PathBuf) {
    let sb = Sandbox::new(BIN);
    seeded(&sb);
    sb.ok(&["sql", "install"]);
    let replica = remote.path(name);
    sb.ok(&["replica", "create", "--to", replica.to_str().unwrap()]);
    (sb, replica)
}

#[test]
fn a_stream_that_is_absent_a_server_that_is_down_and_a_corrupt_replica_are_clear_errors() {
    let nats = NatsServer::start();
    let remote = RemoteHost::new();
    let (_sb, replica) = lone_replica(&remote, "replica.db");
    let r = replica.to_str().unwrap();
    let before = (state_of(&replica), position(&replica));

    let e = remote.fails(&RemoteHost::apply_args(&nats.url(), r, false));
    assert!(
        e.contains("no stream holds the subjects rowtrail.source.>") && e.contains("[stream]"),
        "{e}"
    );
    let e = remote.fails(&[
        "replica",
        "apply",
        "--from-stream",
        &nats.url(),
        "--stream",
        "NOPE",
        "--to",
        r,
    ]);
    assert!(
        e.contains("\"NOPE\"") && e.contains("no such stream"),
        "{e}"
    );

    let down = format!("nats://127.0.0.1:{}", free_port());
    let e = remote.fails(&RemoteHost::apply_args(&down, r, false));
    assert!(e.contains("does not answer"), "{e}");
    assert_eq!(
        (state_of(&replica), position(&replica)),
        before,
        "nothing changed"
    );

    let e = remote.fails(&[
        "replica",
        "apply",
        "--from-stream",
        &nats.url(),
        "--subject",
        "rowtrail.*",
        "--to",
        r,
    ]);
    assert!(e.contains("do not name one source"), "{e}");

    let corrupt = remote.path("corrupt.db");
    std::fs::write(&corrupt, b"not a database at all, just bytes").unwrap();
    let e = remote.fails(&RemoteHost::apply_args(
        &nats.url(),
        corrupt.to_str().unwrap(),
        false,
    ));
    assert!(e.contains("is not a rowtrail replica"), "{e}");
    let e = remote.fails(&RemoteHost::apply_args(
        &nats.url(),
        remote.path("missing.db").to_str().unwrap(),
        false,
    ));
    assert!(
        e.contains("does not exist") && e.contains("replica create"),
        "{e}"
    );
}

/// The sandbox's source's stream on `url`, as a publisher configures it.
fn source_settings(url: &str) -> Settings {
    Settings {
        url: url.to_string(),
        subjects: Subjects::new("rowtrail", "source").unwrap(),
        stream: Settings::default_stream_name("rowtrail", "source"),
        max_age: None,
        replicas: 1,
        storage: Storage::File,
        duplicate_window: Duration::from_secs(120),
        window: 64,
        timeout: Duration::from_secs(10),
        ca_file: None,
        credentials: Credentials::None,
    }
}

/// A publisher's view of the sandbox's source on `url` (the stream brought to its settings).
fn publisher(url: &str) -> StreamConnection {
    StreamConnection::open(&source_settings(url)).unwrap()
}

#[test]
fn messages_of_another_source_and_a_replica_of_another_source_are_refused_and_nothing_is_lost() {
    let s = setup(0);
    let url = s.nats.url();
    let r = s.replica.to_str().unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    workload(&s.source, &mut rng, 50);
    wait_published(&s.sb);
    s.remote.ok(&RemoteHost::apply_args(&url, r, false));
    let before = (state_of(&s.replica), position(&s.replica));

    // A replica of another source, pointed at this source's stream.
    let (_other, foreign) = lone_replica(&s.remote, "foreign.db");
    let foreign_before = (state_of(&foreign), position(&foreign));
    let e = s.remote.fails(&RemoteHost::apply_args(
        &url,
        foreign.to_str().unwrap(),
        false,
    ));
    assert!(e.contains("comes from the archive"), "{e}");
    assert_eq!((state_of(&foreign), position(&foreign)), foreign_before);

    // A message of another source incarnation on this source's subjects.
    let conn = publisher(&url);
    let last = conn
        .read_messages(
            1,
            usize::MAX,
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .unwrap()
        .pop()
        .unwrap();
    let mut body: serde_json::Value = serde_json::from_slice(&last.payload).unwrap();
    let next = body["id"].as_i64().unwrap() + 1;
    body["id"] = next.into();
    body["source"]["incarnation"] = "an-impostor".into();
    let out = conn.publish(
        vec![Outgoing {
            subject: last.subject.clone(),
            id: format!("an-impostor:{next}"),
            payload: serde_json::to_vec(&body).unwrap().into(),
            cut: None,
        }],
        None,
    );
    assert!(out.error.is_none(), "{:?}", out.error);
    let e = s.remote.fails(&RemoteHost::apply_args(&url, r, false));
    assert!(
        e.contains("source incarnation an-impostor") && e.contains("belongs to one source"),
        "{e}"
    );
    assert_eq!(
        (state_of(&s.replica), position(&s.replica)),
        before,
        "nothing was applied"
    );
    // Asked again, it says the same: the message was not taken.
    let again = s.remote.fails(&RemoteHost::apply_args(&url, r, false));
    assert!(again.contains("an-impostor"), "{again}");
}

/// A source publishing to `url` under the source name `name`, with a replica built from its
/// install baseline carried to `remote` as `<name>.db`.
fn named_source(
    url: &str,
    name: &str,
    remote: &RemoteHost,
) -> (Sandbox, Connection, Proc, PathBuf) {
    let sb = Sandbox::new(BIN);
    sb.write_config(&format!("{}source = \"{name}\"\n", stream_config(url, "")));
    let c = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let w = sb.start_watcher();
    let replica = remote.path(&format!("{name}.db"));
    sb.ok(&["replica", "create", "--to", replica.to_str().unwrap()]);
    (sb, c, w, replica)
}

#[test]
fn a_watcher_without_a_source_keeps_remote_replicas_of_two_sources_current() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let remote = RemoteHost::new();
    let (sa, ca, _wa, ra) = named_source(&url, "sales", &remote);
    let (sb, cb, _wb, rb) = named_source(&url, "hr", &remote);
    let metrics = free_port();
    let config = remote.path("rowtrail.toml");
    std::fs::write(
        &config,
        format!(
            "[watcher]\npoll_interval_ms = 200\nmetrics_listen = \"127.0.0.1:{metrics}\"\n\n\
             [[remote_replica]]\npath = \"sales.db\"\nurl = \"{url}\"\nsubject = \"rowtrail.sales\"\n\n\
             [[remote_replica]]\npath = \"hr.db\"\nurl = \"{url}\"\nsubject = \"rowtrail.hr\"\n"
        ),
    )
    .unwrap();
    let socket = rowtrail_watcher::default_socket(&ra);
    let watcher = rowtrail_watcher::process::WatcherProcess::start(
        Path::new(BIN),
        &config,
        &socket,
        &remote.path("watcher.log"),
        "info",
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("the remote watcher answers status: {e}"));
    let _watcher = Proc {
        child: watcher.into_child(),
    };
    let remote_status = || {
        let out = remote.run(&["--config", config.to_str().unwrap(), "status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    let mut rng = fastrand::Rng::with_seed(11);
    workload(&ca, &mut rng, 150);
    workload(&cb, &mut rng, 150);
    wait_published(&sa);
    wait_published(&sb);
    let (want_a, want_b) = (state(&ca), state(&cb));
    wait_until(CATCH_UP, "both remote replicas have every change", || {
        state_of(&ra) == want_a && state_of(&rb) == want_b
    });
    assert_ne!(want_a, state(&cb), "the two sources differ");
    wait_until(CATCH_UP, "the status shows both level", || {
        let s = remote_status();
        let r = &s["remote_replicas"];
        r[0]["position"].as_i64() == Some(sa.archived())
            && r[1]["position"].as_i64() == Some(sb.archived())
            && r[0]["pending"] == 0
            && r[1]["pending"] == 0
            && r[0]["connected"] == true
            && s["health"] == "healthy"
    });
    let s = remote_status();
    assert_eq!(s["remote_replicas"][0]["stream"], "ROWTRAIL_SALES", "{s}");
    assert_eq!(s["remote_replicas"][1]["subjects"], "rowtrail.hr.>", "{s}");
    let human = remote.ok(&["--config", config.to_str().unwrap(), "status"]);
    assert!(
        human.contains("remote") && human.contains("ROWTRAIL_HR") && human.contains("0 pending"),
        "{human}"
    );
    let scrape = || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", metrics)).unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).unwrap();
        body
    };
    let label = |p: &Path| format!("{{replica=\"{}\"}}", p.display());
    let m = scrape();
    assert!(
        m.contains(&format!(
            "rowtrail_remote_replica_position{} {}\n",
            label(&ra),
            sa.archived()
        )) && m.contains(&format!(
            "rowtrail_remote_replica_pending_messages{} 0\n",
            label(&rb)
        )),
        "{m}"
    );

    // The server down: the status says so and the watcher goes on; back, it catches up.
    nats.stop();
    wait_until(CATCH_UP, "the status shows the failure", || {
        let s = remote_status();
        s["health"] == "degraded"
            && s["remote_replicas"][0]["last_error"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
    });
    assert!(scrape().contains(&format!(
        "rowtrail_remote_replica_failing{} 1\n",
        label(&ra)
    )));
    nats.restart();
    workload(&ca, &mut rng, 50);
    wait_published(&sa);
    let want_a = state(&ca);
    wait_until(CATCH_UP, "the sales replica catches up again", || {
        state_of(&ra) == want_a
    });
    wait_until(CATCH_UP, "the watcher is healthy again", || {
        remote_status()["health"] == "healthy"
    });
}

#[test]
fn a_watcher_without_a_source_refuses_what_needs_one() {
    let remote = RemoteHost::new();
    let config = remote.path("rowtrail.toml");
    let watch = |text: &str| {
        std::fs::write(&config, text).unwrap();
        remote.fails(&["--config", config.to_str().unwrap(), "watch"])
    };
    let e = watch("[watcher]\npoll_interval_ms = 200\n");
    assert!(
        e.contains("no source database") && e.contains("[[remote_replica]]"),
        "{e}"
    );
    let e = watch(
        "[[remote_replica]]\npath = \"r.db\"\nurl = \"nats://127.0.0.1:1\"\nsubject = \"rowtrail.s\"\n\
         [[replica]]\npath = \"l.db\"\n",
    );
    assert!(e.contains("need the source"), "{e}");
    let e = watch(
        "[[remote_replica]]\npath = \"r.db\"\nurl = \"nats://u:hunter2@127.0.0.1:1\"\nsubject = \"rowtrail.s\"\n",
    );
    assert!(
        e.contains("holds credentials") && !e.contains("hunter2"),
        "{e}"
    );
    let e = watch(
        "[[remote_replica]]\npath = \"r.db\"\nurl = \"nats://127.0.0.1:1\"\nsubject = \"x\"\n",
    );
    assert!(e.contains("do not name one source"), "{e}");
}

#[test]
fn a_replica_older_than_the_stream_s_first_message_is_refused_as_a_gap() {
    let nats = NatsServer::start();
    let url = nats.url();
    let sb = Sandbox::new(BIN);
    sb.write_config(&format!(
        "{}max_age_seconds = 1\nduplicate_window_seconds = 1\n",
        stream_config(&url, "")
    ));
    let source = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let remote = RemoteHost::new();
    let replica = remote.path("replica.db");
    sb.ok(&["replica", "create", "--to", replica.to_str().unwrap()]);
    let _w = sb.start_watcher();
    workload(&source, &mut fastrand::Rng::with_seed(5), 40);
    wait_published(&sb);
    // A reader that leaves the stream's settings as they are.
    let reader = StreamConnection::connect(&source_settings(&url)).unwrap();
    wait_until(
        CATCH_UP,
        "the first messages aged out of the stream",
        || {
            reader
                .read_messages(1, 1, Duration::from_millis(200), Duration::from_secs(5))
                .unwrap()
                .is_empty()
        },
    );
    workload(&source, &mut fastrand::Rng::with_seed(6), 5);
    wait_published(&sb);
    let before = (state_of(&replica), position(&replica));
    let e = remote.fails(&RemoteHost::apply_args(
        &url,
        replica.to_str().unwrap(),
        false,
    ));
    assert!(
        e.contains(&format!(
            "the stream lacks the changes from {}",
            before.1.change_id + 1
        )),
        "{e}"
    );
    assert_eq!((state_of(&replica), position(&replica)), before);
}
