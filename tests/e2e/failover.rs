//! Takeover (issue 17): the heartbeat of the primary, failover with fencing and promotion,
//! every command following the new primary, the health endpoints load balancers route by,
//! and what is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rowtrail_tests::tables::assert_same_tables;
use rowtrail_tests::{wait_until, Sandbox};
use rusqlite::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

const DDL: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE staff (id INTEGER PRIMARY KEY, name TEXT NOT NULL, salary REAL);
    CREATE TABLE tags (a TEXT, b INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID;
";

fn open(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(20)).unwrap();
    c
}

/// Some writes of every kind on `c`, numbered from `from`.
fn writes(c: &Connection, from: i64, n: i64) {
    for i in from..from + n {
        c.execute_batch(&format!(
            "INSERT INTO staff VALUES ({i}, 'n{i}', {i}.5);
             UPDATE staff SET salary = salary + 1 WHERE id = {};
             INSERT OR IGNORE INTO tags VALUES ('t{}', {});
             DELETE FROM staff WHERE id = {};",
            i - 1,
            i % 4,
            i % 3,
            i - 3
        ))
        .unwrap();
    }
}

/// A sandbox with a captured source, a baseline, writes archived, and one configured replica
/// (`standby.db`) built and level; `extra` goes into the config.
fn with_replica(extra: &str) -> (Sandbox, Connection, PathBuf) {
    let sb = Sandbox::new(BIN);
    sb.write_config(&format!(
        "heartbeat_interval_ms = 100\n\n[[replica]]\npath = \"standby.db\"\n{extra}"
    ));
    let c = sb.create_and_install(DDL);
    writes(&c, 1, 20);
    sb.ok(&["read"]);
    let standby = sb.path().join("standby.db");
    sb.ok(&["replica", "create", "--to", "standby.db"]);
    (sb, c, standby)
}

fn takeovers(sb: &Sandbox) -> Vec<(String, String, Option<String>)> {
    let a = Connection::open(sb.archive()).unwrap();
    let mut stmt = a
        .prepare("SELECT kind, step, fence FROM takeovers ORDER BY id")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows
}

#[test]
fn failover_fences_drains_promotes_and_every_command_follows_the_new_primary() {
    let (sb, c, standby) = with_replica("");
    // A second replica, which must cross from the old primary's stream to the new one's.
    sb.ok(&["replica", "create", "--to", "second.db"]);
    // A moment before the takeover, to rebuild later: the newest archived change's time, once
    // the clock has moved past it.
    let then: String = Connection::open(sb.archive())
        .unwrap()
        .query_row("SELECT max(at) FROM changes", [], |r| r.get(0))
        .unwrap();
    let then_state = sb.path().join("then-state.db");
    c.execute("VACUUM INTO ?1", [then_state.to_str().unwrap()])
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "the clock passes the noted moment",
        || {
            let now: String = c
                .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
                    r.get(0)
                })
                .unwrap();
            now > then
        },
    );
    // Writes the archive has not seen yet: the failover reads them from staging.
    writes(&c, 21, 10);
    assert!(sb.staged() > 0);

    // The primary answers: the plan says so and refuses, with exit 3, and changes nothing.
    let plan = sb.fails(&["failover"], 3);
    assert!(plan.contains("still answers"), "{plan}");
    assert!(plan.contains("standby.db"), "{plan}");
    let refused = sb.fails(&["failover", "--apply"], 3);
    assert!(refused.contains("--force"), "{refused}");
    assert!(takeovers(&sb).is_empty());
    c.execute_batch("INSERT INTO staff VALUES (1000, 'still writable', 1)")
        .unwrap();

    // Forced: fenced, drained, applied, promoted.
    let out = sb.ok(&["failover", "--force", "--apply"]);
    assert!(out.contains("failover 1 done"), "{out}");
    assert!(out.contains("fenced"), "{out}");
    assert_eq!(
        takeovers(&sb),
        vec![("failover".into(), "done".into(), Some("fenced".into()))]
    );
    // Nothing was lost: the promoted copy holds every write the old primary committed.
    let promoted = open(&standby);
    assert_same_tables(&c, &promoted, "promoted copy vs old primary at the fence");
    assert_eq!(sb.staged(), 0, "the old primary's staging was drained");

    // The old primary is fenced: its captured tables take no writes.
    let e = c
        .execute_batch("INSERT INTO staff VALUES (2000, 'late', 1)")
        .unwrap_err()
        .to_string();
    assert!(e.contains("fenced") && e.contains("takeover 1"), "{e}");
    assert!(c
        .execute_batch("DELETE FROM tags")
        .unwrap_err()
        .to_string()
        .contains("fenced"));

    // Every command follows the new primary without the config being edited.
    let primary = sb.ok(&["primary"]);
    assert_eq!(primary.trim(), standby.display().to_string());
    writes(&promoted, 500, 5);
    let before = sb.archived();
    let read = sb.ok(&["read"]);
    assert!(read.contains("archived"), "{read}");
    assert!(
        sb.archived() > before,
        "writes on the promoted copy are archived"
    );
    let audit = sb.ok(&["audit", "--table", "staff"]);
    assert!(audit.contains("n504"), "{audit}");
    // The hash chain covers the takeover; verify passes.
    sb.ok(&["verify"]);

    // The second replica crosses the link and equals the new primary.
    sb.ok(&["replica", "apply", "--to", "second.db"]);
    let second = open(&sb.path().join("second.db"));
    assert_same_tables(
        &promoted,
        &second,
        "second replica after crossing the takeover",
    );

    // The promoted copy is no replica any more.
    let e = sb.fails(&["replica", "apply", "--to", "standby.db"], 1);
    assert!(e.contains("promoted"), "{e}");

    // The tables as of a moment before the takeover are rebuilt from the old primary's
    // baseline and stream, though the newest baseline is the new primary's.
    sb.ok(&["restore", "--as-of", &then, "--out", "then.db"]);
    assert_same_tables(
        &open(&then_state),
        &open(&sb.path().join("then.db")),
        "restore as of a moment before the takeover",
    );
}

#[test]
fn a_primary_that_is_gone_fails_over_without_force_and_its_fence_waits() {
    let (sb, c, standby) = with_replica("");
    drop(c);
    // The file made unreadable: moved away (permissions do not stop root, which runs CI).
    let aside = sb.path().join("source.db.aside");
    std::fs::rename(sb.source(), &aside).unwrap();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::rename(
            sb.path().join(format!("source.db{ext}")),
            sb.path().join(format!("source.db.aside{ext}")),
        );
    }
    let plan = sb.ok(&["failover"]);
    assert!(
        plan.contains("DOWN") && plan.contains("may be lost"),
        "{plan}"
    );
    let out = sb.ok(&["failover", "--apply"]);
    assert!(out.contains("NOT fenced yet"), "{out}");
    assert_eq!(
        takeovers(&sb),
        vec![("failover".into(), "done".into(), Some("pending".into()))]
    );
    assert_eq!(sb.ok(&["primary"]).trim(), standby.display().to_string());

    // While it is away, the watcher (following the promoted copy) alerts on the pending fence.
    let _w = sb.start_watcher();
    let alerts = || -> Vec<String> {
        status(&sb)["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x["alert"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until(
        Duration::from_secs(20),
        "the fence_pending alert fires",
        || alerts().contains(&"fence_pending".to_string()),
    );
    // It comes back: the watcher's heartbeat fences it before anything else.
    std::fs::rename(&aside, sb.source()).unwrap();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::rename(
            sb.path().join(format!("source.db.aside{ext}")),
            sb.path().join(format!("source.db{ext}")),
        );
    }
    wait_until(
        Duration::from_secs(20),
        "the returned primary is fenced",
        || takeovers(&sb)[0].2.as_deref() == Some("fenced"),
    );
    // The status says the watcher runs on the promoted copy, and the pending fence's alert
    // clears once the fence is set.
    wait_until(
        Duration::from_secs(20),
        "the fence_pending alert clears",
        || {
            let now = alerts();
            now.contains(&"failed_over".to_string()) && !now.contains(&"fence_pending".to_string())
        },
    );
    let e = open(&sb.source())
        .execute_batch("INSERT INTO staff VALUES (3000, 'x', 1)")
        .unwrap_err()
        .to_string();
    assert!(e.contains("fenced"), "{e}");
    sb.ok(&["verify"]);
}

#[test]
fn a_kill_at_each_step_is_finished_by_running_it_again() {
    for step in ["begun", "fenced", "drained", "applied", "promoted"] {
        let (sb, c, standby) = with_replica("");
        writes(&c, 21, 5);
        let mut armed = rowtrail_tests::Armed::spawn(
            sb.cmd(&["failover", "--force", "--apply"]),
            &format!("failover-{step}"),
            format!("failover killed after {step}"),
        );
        armed.kill_at(&format!("failover-{step}"));
        let t = takeovers(&sb);
        assert_eq!(t.len(), 1, "{step}: one takeover recorded");
        assert_ne!(t[0].1, "done", "{step}: not finished");
        // Running it again finishes it (the primary still answers, but the takeover that
        // began is finished rather than refused).
        let out = sb.ok(&["failover", "--apply"]);
        assert!(out.contains("done"), "{step}: {out}");
        let t = takeovers(&sb);
        assert_eq!(t.len(), 1, "{step}: still one takeover");
        assert_eq!(t[0].1, "done", "{step}");
        assert_same_tables(
            &c,
            &open(&standby),
            &format!("{step}: nothing applied twice"),
        );
        assert!(c
            .execute_batch("INSERT INTO staff VALUES (4000, 'x', 1)")
            .is_err());
        sb.ok(&["verify"]);
    }
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    // No replica at all.
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install(DDL);
    writes(&c, 1, 3);
    sb.ok(&["read"]);
    let e = sb.fails(&["failover", "--force", "--apply"], 3);
    assert!(e.contains("no replica"), "{e}");
    // A file that is no replica.
    std::fs::write(sb.path().join("junk.db"), b"not a database").unwrap();
    let e = sb.fails(&["failover", "--force", "--apply", "--to", "junk.db"], 3);
    assert!(
        e.contains("not a rowtrail replica") || e.contains("cannot take over"),
        "{e}"
    );
    assert!(takeovers_or_none(&sb).is_empty());
    // The source is writable still.
    c.execute_batch("INSERT INTO staff VALUES (99, 'ok', 1)")
        .unwrap();

    // A replica that is paused stays behind: refused, saying what is missing.
    let (sb, c, _standby) = with_replica("");
    sb.ok(&["replica", "pause", "--to", "standby.db"]);
    writes(&c, 21, 5);
    sb.ok(&["read"]);
    let plan = sb.ok(&["failover", "--force"]);
    assert!(plan.contains("behind"), "{plan}");
    let e = sb.fails(&["failover", "--force", "--apply"], 3);
    assert!(e.contains("cannot be brought level"), "{e}");
}

fn takeovers_or_none(sb: &Sandbox) -> Vec<(String, String, Option<String>)> {
    let a = Connection::open(sb.archive()).unwrap();
    let exists: i64 = a
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'takeovers'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if exists == 0 {
        return Vec::new();
    }
    takeovers(sb)
}

/// Writes the sandbox's config by hand: `source` lines go into `[source]`, `watcher` lines
/// into `[watcher]`, `rest` (whole sections) after.
fn write_config(sb: &Sandbox, source: &str, watcher: &str, rest: &str) {
    std::fs::write(
        sb.config(),
        format!(
            "[source]\nengine = \"sqlite\"\npath = \"source.db\"\n{source}\n\n[archive]\npath = \"trail.db\"\n\n\
             [watcher]\npoll_interval_ms = 200\nheartbeat_interval_ms = 100\n{watcher}\n\n\
             [alerts]\nmin_free_disk_bytes = 0\n\n{rest}\n"
        ),
    )
    .unwrap();
}

fn status(sb: &Sandbox) -> serde_json::Value {
    let out = sb.run(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[test]
fn the_heartbeat_tells_a_frozen_primary_from_a_gone_one_and_counts_exactly_failures_misses() {
    use rowtrail_tests::haproxy::Service;
    let mut service = Service::start("node-a");
    let sb = Sandbox::new(BIN);
    write_config(
        &sb,
        &format!("address = \"{}\"", service.health_url()),
        "",
        "[takeover]\nfailures = 5\nconnect_timeout_ms = 300\nlogin_timeout_ms = 300\nquery_timeout_ms = 2000",
    );
    let c = sb.create_and_install(DDL);
    writes(&c, 1, 3);
    let _w = sb.start_watcher();
    wait_until(Duration::from_secs(20), "the primary is up", || {
        status(&sb)["primary_state"] == "up"
    });

    // Every sample while it fails: up exactly as long as fewer than 5 heartbeats failed.
    let watch_down = |want: &str| {
        let mut down = false;
        wait_until(Duration::from_secs(30), "the primary is down", || {
            let s = status(&sb);
            let failures = s["source_failures"].as_u64().unwrap_or(0);
            let up = s["source_up"].as_bool().unwrap_or(true);
            assert_eq!(up, failures < 5, "up iff fewer than 5 misses: {s}");
            if !up {
                assert_eq!(s["primary_state"], want, "{s}");
                assert_eq!(s["failures_to_down"], 5);
                down = true;
            }
            down
        });
    };
    // Frozen: it accepts connections (the kernel does) but never answers.
    service.signal("STOP");
    watch_down("slow");
    let s = status(&sb);
    assert!(
        s["primary_detail"]
            .as_str()
            .is_some_and(|d| d.contains("frozen or overloaded")),
        "{s}"
    );
    service.signal("CONT");
    wait_until(Duration::from_secs(20), "the primary is up again", || {
        let s = status(&sb);
        s["source_up"] == true && s["primary_state"] == "up"
    });
    // Gone: nothing listens.
    service.signal("KILL");
    watch_down("gone");
    let s = status(&sb);
    assert!(
        s["primary_detail"]
            .as_str()
            .is_some_and(|d| d.contains("TCP connect")),
        "{s}"
    );
    // `status` exits 5: down.
    assert_eq!(sb.run(&["status"]).status.code(), Some(5));
}

#[test]
fn haproxy_sends_clients_to_the_primary_and_after_an_automatic_failover_to_the_promoted_copy() {
    use rowtrail_tests::haproxy::{get, Backend, Haproxy, Service};
    use rowtrail_tests::nats::free_port;
    let mut a = Service::start("node-a");
    let b = Service::start("node-b");
    let (ha, hb) = (free_port(), free_port());
    let sb = Sandbox::new(BIN);
    write_config(
        &sb,
        &format!(
            "address = \"{}\"\nhealth_listen = \"127.0.0.1:{ha}\"",
            a.health_url()
        ),
        "",
        &format!(
            "[takeover]\nfailures = 3\nauto_failover = true\nconnect_timeout_ms = 300\n\n\
             [[replica]]\npath = \"standby.db\"\nhealth_listen = \"127.0.0.1:{hb}\""
        ),
    );
    let c = sb.create_and_install(DDL);
    writes(&c, 1, 10);
    sb.ok(&["read"]);
    sb.ok(&["replica", "create", "--to", "standby.db"]);
    let _w = sb.start_watcher();
    let proxy = Haproxy::start(
        &[
            Backend {
                name: "a".into(),
                service_port: a.port(),
                check_port: ha,
            },
            Backend {
                name: "b".into(),
                service_port: b.port(),
                check_port: hb,
            },
        ],
        "/primary",
        200,
    );
    wait_until(Duration::from_secs(30), "clients reach node-a", || {
        proxy.whoami().as_deref() == Some("node-a")
    });
    assert_eq!(get(ha, "/primary").map(|r| r.0), Some(200));
    assert_eq!(get(hb, "/primary").map(|r| r.0), Some(503));
    assert_eq!(get(hb, "/replica").map(|r| r.0), Some(200));
    let health: serde_json::Value = serde_json::from_str(&get(hb, "/health").unwrap().1).unwrap();
    assert_eq!(health["role"], "replica", "{health}");

    // More writes, staged and perhaps archived, then the primary's service dies.
    writes(&c, 11, 10);
    a.signal("KILL");
    wait_until(Duration::from_secs(60), "clients reach node-b", || {
        proxy.whoami().as_deref() == Some("node-b")
    });
    let s = status(&sb);
    assert_eq!(s["takeover"]["automatic"], true, "{s}");
    assert_eq!(s["takeover"]["step"], "done", "{s}");
    assert_eq!(s["takeover"]["fence"], "fenced", "{s}");
    assert_eq!(get(ha, "/primary").map(|r| r.0), Some(503));
    assert!(get(ha, "/primary").unwrap().1.starts_with("fenced"));
    let promoted = open(&sb.path().join("standby.db"));
    assert_same_tables(
        &c,
        &promoted,
        "the promoted copy holds every committed write",
    );

    // Writes on the promoted copy are archived by the same watcher, which follows it.
    let before = sb.archived();
    writes(&promoted, 100, 3);
    wait_until(
        Duration::from_secs(30),
        "the promoted copy's writes are archived",
        || sb.archived() > before,
    );
    assert_eq!(
        sb.ok(&["primary"]).trim(),
        sb.path().join("standby.db").display().to_string()
    );

    // The old primary is repaired and handed back (through the running watcher): clients go
    // back to it, and the promoted copy is a replica again.
    let a_port = a.port();
    drop(a);
    let _a = Service::start_on("node-a", a_port);
    let out = sb.ok(&[
        "handback",
        "--to",
        "source.db",
        "--apply",
        "--conflicts",
        "take-promoted",
    ]);
    assert!(out.contains("done"), "{out}");
    wait_until(
        Duration::from_secs(60),
        "clients reach node-a again",
        || proxy.whoami().as_deref() == Some("node-a"),
    );
    wait_until(
        Duration::from_secs(30),
        "node-b is a healthy replica again",
        || get(hb, "/replica").map(|r| r.0) == Some(200),
    );
    assert_eq!(get(hb, "/primary").map(|r| r.0), Some(503));
    assert_same_tables(&promoted, &open(&sb.source()), "handed back level");
}

fn move_aside(sb: &Sandbox, back: bool) {
    for ext in ["", "-wal", "-shm"] {
        let here = sb.path().join(format!("source.db{ext}"));
        let aside = sb.path().join(format!("source.db.aside{ext}"));
        let (from, to) = if back { (aside, here) } else { (here, aside) };
        let _ = std::fs::rename(from, to);
    }
}

fn staff(c: &Connection, id: i64) -> Option<(String, f64)> {
    c.query_row("SELECT name, salary FROM staff WHERE id = ?1", [id], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .ok()
}

#[test]
fn handback_shows_orphans_lists_conflicts_applies_the_rest_and_switches_roles_back() {
    let (sb, c, standby) = with_replica("");
    // Writes the archive never sees before the primary is lost: the orphans.
    writes(&c, 21, 3);
    let at_failure = staff(&c, 20);
    drop(c);
    move_aside(&sb, false);
    sb.ok(&["failover", "--apply"]);
    move_aside(&sb, true);

    // The promoted side works on; one of its changes meets a row the orphans changed.
    let b = open(&standby);
    writes(&b, 100, 5);
    b.execute_batch("UPDATE staff SET name = 'b-side' WHERE id = 20; UPDATE staff SET name = 'b-only' WHERE id = 104")
        .unwrap();
    sb.ok(&["read"]);

    // The plan: orphans staged, a conflict with its three images; exit 3 (decide).
    let plan = sb.fails(&["handback", "--to", "source.db"], 3);
    assert!(
        plan.contains("orphans") && plan.contains("image(s)"),
        "{plan}"
    );
    assert!(plan.contains("conflict   change"), "{plan}");
    assert!(
        plan.contains("name=\"b-side\"") && plan.contains("current  (no row)"),
        "{plan}"
    );
    // Refused: another database; no rule for the conflicts. Nothing changes.
    std::fs::copy(sb.path().join("standby.db"), sb.path().join("other.db")).unwrap();
    let e = sb.fails(&["handback", "--to", "other.db", "--apply"], 3);
    assert!(e.contains("not the old primary"), "{e}");
    let e = sb.fails(&["handback", "--to", "source.db", "--apply"], 3);
    assert!(e.contains("--conflicts keep"), "{e}");
    assert_eq!(takeovers(&sb).len(), 1);

    let out = sb.ok(&[
        "handback",
        "--to",
        "source.db",
        "--apply",
        "--conflicts",
        "keep",
    ]);
    assert!(out.contains("handback 2 done"), "{out}");
    assert!(out.contains("orphan     change"), "{out}");
    assert!(
        out.contains("the promoted side changed the same row too"),
        "{out}"
    );
    assert!(
        out.contains("left as the repaired primary holds it"),
        "{out}"
    );
    let a = open(&sb.source());
    // The promoted side's changes are there, the conflicting row is as the old primary had it.
    assert_eq!(staff(&a, 103).map(|r| r.0), Some("n103".into()));
    assert_eq!(staff(&a, 104).map(|r| r.0), Some("b-only".into()));
    assert_eq!(staff(&a, 20), at_failure);
    assert_eq!(
        takeovers(&sb)
            .iter()
            .map(|t| (t.0.as_str(), t.1.as_str()))
            .collect::<Vec<_>>(),
        vec![("failover", "done"), ("handback", "done")]
    );
    assert_eq!(
        sb.ok(&["primary"]).trim(),
        sb.source().display().to_string()
    );
    sb.ok(&["verify"]);

    // The old primary takes writes again, captured; the promoted copy is a replica again,
    // level with it.
    writes(&a, 200, 3);
    sb.ok(&["read"]);
    sb.ok(&["replica", "apply", "--to", "standby.db"]);
    assert_same_tables(
        &a,
        &open(&standby),
        "the demoted copy follows the primary again",
    );
    let audit = sb.ok(&["audit", "--table", "staff"]);
    assert!(audit.contains("n202"), "{audit}");

    // Twice: nothing to hand back.
    let e = sb.fails(&["handback", "--to", "source.db", "--apply"], 3);
    assert!(e.contains("nothing to hand back"), "{e}");
    // A second failover after the handback works.
    let out = sb.ok(&["failover", "--force", "--apply"]);
    assert!(out.contains("failover 3 done"), "{out}");
    assert_same_tables(&a, &open(&standby), "second failover");
    sb.ok(&["verify"]);
}

#[test]
fn a_kill_at_each_handback_step_is_finished_by_running_it_again() {
    for step in ["begun", "fenced", "drained", "applied", "promoted"] {
        let (sb, _c, standby) = with_replica("");
        sb.ok(&["failover", "--force", "--apply"]);
        let b = open(&standby);
        writes(&b, 100, 5);
        let mut armed = rowtrail_tests::Armed::spawn(
            sb.cmd(&["handback", "--to", "source.db", "--apply"]),
            &format!("handback-{step}"),
            format!("handback killed after {step}"),
        );
        armed.kill_at(&format!("handback-{step}"));
        let out = sb.ok(&["handback", "--to", "source.db", "--apply"]);
        assert!(out.contains("done"), "{step}: {out}");
        let t = takeovers(&sb);
        assert_eq!(t.len(), 2, "{step}: one failover, one handback");
        assert_eq!(t[1].1, "done", "{step}");
        // Applied once: the primary equals the promoted side's last state.
        assert_same_tables(
            &open(&standby),
            &open(&sb.source()),
            &format!("{step}: nothing applied twice"),
        );
        open(&sb.source())
            .execute_batch("INSERT INTO staff VALUES (7000, 'ok', 1)")
            .unwrap_or_else(|e| panic!("{step}: the primary takes writes again: {e}"));
        sb.ok(&["verify"]);
    }
}

#[test]
fn a_conflict_deep_in_a_large_handback_is_reported_alone_and_the_rest_applied() {
    let (sb, c, standby) = with_replica("");
    sb.ok(&["failover", "--force", "--apply"]);
    // 3,000 inserts in one statement on the promoted side, then an update of one of them.
    let b = open(&standby);
    b.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 3999)
         INSERT INTO staff SELECT i, 'b' || i, i FROM n;
         UPDATE staff SET name = 'b-later' WHERE id = 2500;",
    )
    .unwrap();
    sb.ok(&["read"]);
    // Meanwhile a DBA wrote the same key on the repaired primary, past its fence.
    let fence: String = c
        .query_row(
            "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE 'rowtrail_fi_staff%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    c.execute_batch(&format!(
        "DROP TRIGGER \"{fence}\"; INSERT INTO staff VALUES (2500, 'a-side', 1);"
    ))
    .unwrap();
    let out = sb.ok(&[
        "handback",
        "--to",
        "source.db",
        "--apply",
        "--conflicts",
        "keep",
    ]);
    assert_eq!(out.matches("conflict   change").count(), 2, "{out}");
    // 3,001 changes: the insert and the update of 2500 conflict, the 2,999 others apply.
    assert!(out.contains("; 2999 change(s) applied"), "{out}");
    let a = open(&sb.source());
    assert_eq!(staff(&a, 2500).map(|r| r.0), Some("a-side".into()));
    let n: i64 = a
        .query_row(
            "SELECT count(*) FROM staff WHERE id BETWEEN 1000 AND 3999 AND name = 'b' || id",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2999, "every other insert applied");
}
