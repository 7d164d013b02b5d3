//! The standby (issue 16): baselines taken online, a replica built from one and kept current
//! from the archive, a rebuild as of an earlier time, a rewind, compare and repair, and what
//! is refused.

use std::process::Command;

use rowtrail_standby::FAILPOINTS;
use rowtrail_tests::{show, Armed, Sandbox};
use rusqlite::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

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

/// A random workload: inserts, updates (key changes included), deletes, over all tables.
fn workload(c: &Connection, rng: &mut fastrand::Rng, statements: usize) {
    for _ in 0..statements {
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
}

fn open(path: &std::path::Path) -> Connection {
    Connection::open(path).unwrap()
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

#[test]
fn a_replica_built_from_the_install_baseline_follows_a_random_workload_exactly() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    let out = sb.ok(&["sql", "install"]);
    assert!(
        out.contains("baseline 1 of"),
        "install takes a baseline:\n{out}"
    );
    let mut rng = fastrand::Rng::with_seed(16);
    workload(&c, &mut rng, 300);
    sb.ok(&["read", "--quiet"]);
    let replica = sb.path().join("standby.db");
    let r = replica.to_str().unwrap();
    let out = sb.ok(&["replica", "create", "--to", r]);
    assert!(out.contains("built"), "{out}");
    assert_eq!(state(&open(&replica)), state(&c), "after create");
    for round in 0..3 {
        let held = state(&open(&replica));
        workload(&c, &mut rng, 200);
        sb.ok(&["read", "--quiet"]);
        // Kept an hour behind, the replica takes none of what was just made.
        let out = sb.ok(&["replica", "apply", "--to", r, "--delay", "1h"]);
        assert!(out.contains(": 0 change(s) applied"), "{out}");
        assert_eq!(
            state(&open(&replica)),
            held,
            "a delayed replica stays behind"
        );
        sb.ok(&["replica", "apply", "--to", r]);
        assert_eq!(state(&open(&replica)), state(&c), "after round {round}");
    }
    let out = sb.ok(&["compare", "--replica", r]);
    assert!(out.contains("the replica equals the source"), "{out}");
    let status = sb.ok(&["replica", "status", "--to", r]);
    assert!(status.contains("0 change(s) not applied"), "{status}");
}

#[test]
fn a_baseline_taken_while_images_wait_in_staging_skips_what_it_already_holds() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install", "--no-baseline"]);
    let mut rng = fastrand::Rng::with_seed(7);
    // Staged before the baseline: in the snapshot already, and archived after it.
    workload(&c, &mut rng, 150);
    let out = sb.ok(&["baseline"]);
    assert!(out.contains("staff"), "{out}");
    workload(&c, &mut rng, 150);
    sb.ok(&["read", "--quiet"]);
    let replica = sb.path().join("standby.db");
    sb.ok(&["replica", "create", "--to", replica.to_str().unwrap()]);
    assert_eq!(state(&open(&replica)), state(&c));
}

#[test]
fn restore_as_of_and_rewind_give_the_tables_as_they_were() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let mut rng = fastrand::Rng::with_seed(3);
    workload(&c, &mut rng, 200);
    sb.ok(&["read", "--quiet"]);
    let replica = sb.path().join("standby.db");
    let r = replica.to_str().unwrap();
    sb.ok(&["replica", "create", "--to", r]);
    let then_state = state(&c);
    std::thread::sleep(std::time::Duration::from_millis(30));
    let then: String = c
        .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
            r.get(0)
        })
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    workload(&c, &mut rng, 200);
    sb.ok(&["read", "--quiet"]);
    sb.ok(&["replica", "apply", "--to", r]);
    let now_state = state(&c);
    assert_ne!(then_state, now_state, "the workload changed something");
    assert_eq!(state(&open(&replica)), now_state);

    let rebuilt = sb.path().join("then.db");
    sb.ok(&[
        "restore",
        "--as-of",
        &then,
        "--out",
        rebuilt.to_str().unwrap(),
    ]);
    assert_eq!(state(&open(&rebuilt)), then_state, "restore --as-of");
    // An existing file is never overwritten.
    let out = sb.fails(
        &[
            "restore",
            "--as-of",
            &then,
            "--to",
            rebuilt.to_str().unwrap(),
        ],
        1,
    );
    assert!(out.contains("exists already"), "{out}");

    let dry = sb.ok(&["replica", "rewind", "--to", r, "--as-of", &then]);
    assert!(dry.contains("would rewind"), "{dry}");
    assert_eq!(
        state(&open(&replica)),
        now_state,
        "a dry run writes nothing"
    );
    sb.ok(&["replica", "rewind", "--to", r, "--as-of", &then, "--apply"]);
    assert_eq!(state(&open(&replica)), then_state, "rewind");
    // Paused after a rewind: apply leaves it there until resumed.
    sb.ok(&["replica", "apply", "--to", r]);
    assert_eq!(state(&open(&replica)), then_state, "stays paused");
    sb.ok(&["replica", "resume", "--to", r]);
    sb.ok(&["replica", "apply", "--to", r]);
    assert_eq!(state(&open(&replica)), now_state, "caught up again");
}

#[test]
fn restore_as_of_a_seq_or_before_a_transaction_and_of_some_tables() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let mut rng = fastrand::Rng::with_seed(41);
    workload(&c, &mut rng, 150);
    sb.ok(&["read", "--quiet"]);
    let then_state = state(&c);
    let archive = open(&sb.archive());
    let then_seq: i64 = archive
        .query_row("SELECT max(seq) FROM changes", [], |r| r.get(0))
        .unwrap();
    // A labelled transaction of several changes, then more work.
    c.execute_batch(
        "BEGIN;
         INSERT INTO rowtrail_context (id, login, host, app, client_ip, tx) VALUES (1, 'ann', NULL, NULL, NULL, 'batch-42');
         UPDATE staff SET salary = 1.0;
         INSERT INTO log VALUES ('in batch', 42);
         DELETE FROM rowtrail_context;
         COMMIT;",
    )
    .unwrap();
    workload(&c, &mut rng, 150);
    sb.ok(&["read", "--quiet"]);
    let now_state = state(&c);
    assert_ne!(then_state, now_state);
    let (tx_first, tx_last): (i64, i64) = archive
        .query_row(
            "SELECT min(seq), max(seq) FROM changes WHERE tx = 'batch-42'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(tx_last > tx_first, "the transaction has several changes");
    drop(archive);

    let file = |name: &str| sb.path().join(name).to_str().unwrap().to_string();
    let at_seq = file("at-seq.db");
    let seq = format!("seq:{then_seq}");
    sb.ok(&["restore", "--as-of", &seq, "--out", &at_seq]);
    assert_eq!(
        state(&open(std::path::Path::new(&at_seq))),
        then_state,
        "seq:N"
    );
    let before = file("before-tx.db");
    sb.ok(&["restore", "--as-of", "before-tx:batch-42", "--out", &before]);
    assert_eq!(
        state(&open(std::path::Path::new(&before))),
        then_state,
        "before-tx"
    );

    // Some tables: only those are built, and the replica follows them (passing over the rest).
    let two = file("two.db");
    let out = sb.ok(&[
        "restore",
        "--as-of",
        &seq,
        "--tables",
        "staff,tags",
        "--out",
        &two,
    ]);
    assert!(out.contains("2 table(s)"), "{out}");
    let tables: Vec<String> = open(std::path::Path::new(&two))
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'rowtrail%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(tables, ["staff", "tags"]);
    let only = |rows: Vec<String>| -> Vec<String> {
        rows.into_iter()
            .filter(|l| !l.starts_with("log:"))
            .collect()
    };
    let two_state = || {
        let c = open(std::path::Path::new(&two));
        c.execute_batch("CREATE TEMP TABLE log (line TEXT, n INTEGER)")
            .unwrap();
        state(&c)
    };
    assert_eq!(
        two_state(),
        only(then_state.clone()),
        "--tables as of a seq"
    );
    sb.ok(&["replica", "apply", "--to", &two]);
    assert_eq!(
        two_state(),
        only(now_state.clone()),
        "a replica of some tables follows them"
    );

    // What cannot be rebuilt is refused with why, and no file is left.
    let bad = file("bad.db");
    let cases: [(&[&str], &str); 6] = [
        (
            &["--as-of", &format!("seq:{}", tx_first)],
            "inside a transaction",
        ),
        (&["--as-of", "seq:99999999"], "beyond the archive"),
        (&["--as-of", "seq:many"], "a seq is a whole number"),
        (
            &["--as-of", "before-tx:no-such-batch"],
            "holds no change of transaction",
        ),
        (
            &["--as-of", &seq, "--tables", "staff,nope"],
            "the tables it holds: log, staff, tags",
        ),
        (&["--as-of", "seq:-5"], "no baseline"),
    ];
    for (args, want) in cases {
        let mut all = vec!["restore"];
        all.extend_from_slice(args);
        all.extend(["--out", &bad]);
        let out = sb.fails(&all, 1);
        assert!(out.contains(want), "{args:?}: {out}");
        assert!(
            !std::path::Path::new(&bad).exists(),
            "{args:?} leaves nothing"
        );
    }
}

#[test]
fn compare_finds_a_tampered_replica_and_repair_makes_it_equal() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let mut rng = fastrand::Rng::with_seed(11);
    workload(&c, &mut rng, 100);
    sb.ok(&["read", "--quiet"]);
    let replica = sb.path().join("standby.db");
    let r = replica.to_str().unwrap();
    sb.ok(&["replica", "create", "--to", r]);
    c.execute_batch("INSERT OR REPLACE INTO staff VALUES (500, 'kept', 1.0, NULL)")
        .unwrap();
    sb.ok(&["read", "--quiet"]);
    sb.ok(&["replica", "apply", "--to", r]);
    let rep = open(&replica);
    rep.execute_batch(
        "UPDATE staff SET name = 'forged' WHERE id = 500;
         INSERT INTO tags VALUES ('zz', 9);
         DELETE FROM log WHERE line = 'b';",
    )
    .unwrap();
    drop(rep);
    let out = sb.fails(&["compare", "--replica", r], 4);
    assert!(out.contains("staff: DIFFERS"), "{out}");
    assert!(out.contains("different: id=500"), "{out}");
    assert!(out.contains("tags: DIFFERS"), "{out}");
    assert!(out.contains("log: DIFFERS"), "{out}");
    assert!(
        !out.contains("forged"),
        "values are not printed, only keys:\n{out}"
    );
    let out = sb.fails(&["compare", "--replica", r, "--repair"], 4);
    assert!(out.contains("--repair --apply"), "{out}");
    sb.ok(&["compare", "--replica", r, "--repair", "--apply"]);
    assert_eq!(state(&open(&replica)), state(&c));
    sb.ok(&["compare", "--replica", r]);
    // A change the tampered replica cannot take stops apply with what to do.
    open(&replica)
        .execute_batch("UPDATE staff SET name = 'forged' WHERE id = 500")
        .unwrap();
    c.execute_batch("UPDATE staff SET salary = 2.0 WHERE id = 500")
        .unwrap();
    sb.ok(&["read", "--quiet"]);
    let out = sb.fails(&["replica", "apply", "--to", r], 1);
    assert!(out.contains("rowtrail compare --replica"), "{out}");
}

#[test]
fn a_kill_during_apply_leaves_the_replica_where_it_was() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let replica = sb.path().join("standby.db");
    let r = replica.to_str().unwrap();
    sb.ok(&["replica", "create", "--to", r]);
    let before = state(&open(&replica));
    let mut rng = fastrand::Rng::with_seed(5);
    workload(&c, &mut rng, 300);
    sb.ok(&["read", "--quiet"]);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(sb.config())
        .args(["replica", "apply", "--to", r])
        .current_dir(sb.path())
        .env("ROWTRAIL_TEST_FAILPOINT", "undo-mid-apply")
        .env("ROWTRAIL_TEST_FAILPOINT_ACTION", "abort")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the failpoint stopped it:\n{}",
        show(&out)
    );
    assert_eq!(
        state(&open(&replica)),
        before,
        "nothing of the killed apply is kept"
    );
    sb.ok(&["replica", "apply", "--to", r]);
    assert_eq!(state(&open(&replica)), state(&c));
}

/// The replica's recorded position: (archive change id, source seq).
fn recorded_position(replica: &std::path::Path) -> (i64, i64) {
    let c = open(replica);
    let get = |k: &str| -> i64 {
        c.query_row(
            "SELECT CAST(value AS INTEGER) FROM rowtrail_replica WHERE key = ?1",
            [k],
            |r| r.get(0),
        )
        .unwrap()
    };
    (get("position"), get("position_seq"))
}

#[test]
fn a_kill_at_every_labelled_step_leaves_the_replica_at_its_recorded_position() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let file = |name: &str| sb.path().join(name);
    let armed = |args: &[&str], spec: &str| {
        Armed::spawn(
            sb.cmd(args),
            spec,
            format!("`rowtrail {}` with failpoint {spec}", args.join(" ")),
        )
    };
    let (create_steps, apply_steps) = FAILPOINTS.split_at(2);
    // Killed while building: no replica appears; the next run builds it whole.
    for label in create_steps {
        let path = file(&format!("{label}.db"));
        let p = path.to_str().unwrap();
        armed(&["replica", "apply", "--to", p], label).kill_at(label);
        assert!(
            !path.exists(),
            "{label}: a half-built replica never appears"
        );
        sb.ok(&["replica", "apply", "--to", p]);
        assert_eq!(
            state(&open(&path)),
            state(&c),
            "{label}: built on the next run"
        );
    }
    let pristine = file("pristine.db");
    sb.ok(&["replica", "create", "--to", pristine.to_str().unwrap()]);
    // More than two replica transactions of changes (10,000 each).
    c.execute_batch(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 10500)
         INSERT INTO staff SELECT 1000 + i, 'bulk ' || i, i * 0.5, NULL FROM k;
         UPDATE staff SET salary = salary + 1 WHERE id > 1000;
         DELETE FROM staff WHERE id > 1000 AND id % 3 = 0;",
    )
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(99);
    workload(&c, &mut rng, 100);
    sb.ok(&["read", "--quiet"]);
    let archive = open(&sb.archive());
    let total: i64 = archive
        .query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
        .unwrap();
    assert!(total > 25_000, "{total} changes");
    // Killed at each step of the second transaction (the first one committed before it).
    let labels = apply_steps.iter().copied().chain(["undo-mid-apply"]);
    for label in labels {
        let path = file(&format!("{label}.db"));
        let p = path.to_str().unwrap();
        std::fs::copy(&pristine, &path).unwrap();
        armed(&["replica", "apply", "--to", p], &format!("{label}:2")).kill_at(label);
        let (change_id, seq) = recorded_position(&path);
        let reference = file(&format!("{label}-reference.db"));
        sb.ok(&[
            "restore",
            "--as-of",
            &format!("seq:{seq}"),
            "--out",
            reference.to_str().unwrap(),
        ]);
        assert_eq!(
            state(&open(&path)),
            state(&open(&reference)),
            "{label}: the replica equals the archive at its recorded position (seq {seq})"
        );
        let left: i64 = archive
            .query_row(
                "SELECT count(*) FROM changes WHERE id > ?1",
                [change_id],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            left > 0 && left < total,
            "{label}: killed mid-way ({left} of {total} left)"
        );
        let out = sb.ok(&["replica", "apply", "--to", p]);
        assert!(
            out.contains(&format!(": {left} change(s) applied")),
            "{label}: the re-run applies each change left once, no more:\n{out}"
        );
        assert_eq!(state(&open(&path)), state(&c), "{label}: caught up");
    }
}

#[test]
fn bad_input_is_refused_with_what_to_do() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install", "--no-baseline"]);
    let replica = sb.path().join("standby.db");
    let r = replica.to_str().unwrap();
    // No baseline yet.
    sb.ok(&["read", "--quiet"]);
    let out = sb.fails(&["replica", "create", "--to", r], 1);
    assert!(out.contains("rowtrail baseline"), "{out}");
    assert!(!replica.exists(), "nothing left behind");
    // Unknown table.
    let out = sb.fails(&["baseline", "--tables", "nope"], 1);
    assert!(
        out.contains("not captured") && out.contains("staff"),
        "{out}"
    );
    // A file that is not a replica.
    let out = sb.fails(
        &["replica", "status", "--to", sb.source().to_str().unwrap()],
        1,
    );
    assert!(out.contains("is not a rowtrail replica"), "{out}");
    // A time that is not one.
    sb.ok(&["baseline"]);
    let out = sb.fails(&["restore", "--as-of", "yesterday-ish", "--to", "x.db"], 1);
    assert!(out.contains("is not a time"), "{out}");
    let out = sb.fails(
        &[
            "restore",
            "--as-of",
            "2999-01-01T00:00:00Z",
            "--out",
            "x.db",
        ],
        1,
    );
    assert!(out.contains("is in the future"), "{out}");
    // A replica pointed at another archive.
    sb.ok(&["replica", "create", "--to", r]);
    let other = Sandbox::new(BIN);
    let c2 = seeded(&other);
    other.ok(&["sql", "install"]);
    drop(c2);
    let out = other.fails(&["replica", "apply", "--to", r], 1);
    assert!(out.contains("another archive"), "{out}");
    // A replica ahead of its archive (the archive restored from an older backup).
    let ahead = sb.path().join("ahead.db");
    std::fs::copy(&replica, &ahead).unwrap();
    open(&ahead)
        .execute_batch("UPDATE rowtrail_replica SET value = '999999' WHERE key = 'position'")
        .unwrap();
    let out = sb.fails(&["replica", "apply", "--to", ahead.to_str().unwrap()], 1);
    assert!(out.contains("beyond the newest change"), "{out}");
    // A damaged replica record.
    open(&ahead)
        .execute_batch("UPDATE rowtrail_replica_tables SET definition = '{' WHERE name = 'staff'")
        .unwrap();
    let out = sb.fails(&["replica", "status", "--to", ahead.to_str().unwrap()], 1);
    assert!(out.contains("is damaged"), "{out}");
    // A damaged baseline is caught by verify.
    drop(c);
    let a = open(&sb.archive());
    a.execute_batch("UPDATE baseline_rows SET image = x'00' WHERE ordinal = 1 AND table_id = (SELECT min(table_id) FROM baseline_rows)")
        .unwrap();
    drop(a);
    let out = sb.fails(&["verify"], 1);
    assert!(out.contains("do not match their digest"), "{out}");
}

#[test]
fn the_watcher_keeps_a_replica_current_and_reports_it() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let replica = sb.path().join("standby.db");
    // The first apply builds the replica when the file is missing.
    let out = sb.ok(&["replica", "apply", "--to", replica.to_str().unwrap()]);
    assert!(out.contains("built"), "{out}");
    sb.write_config(
        "poll_interval_ms = 100\n\n[alerts]\nmin_free_disk_bytes = 0\nrpo_max_seconds = 1\n\n[[replica]]\npath = \"standby.db\"\n",
    );
    let _w = sb.start_watcher();
    let mut rng = fastrand::Rng::with_seed(21);
    for _ in 0..5 {
        workload(&c, &mut rng, 60);
        let want = state(&c);
        rowtrail_tests::wait_until(
            std::time::Duration::from_secs(30),
            "the replica equals the source",
            || state(&open(&replica)) == want,
        );
    }
    let out = sb.ok(&["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &s["replicas"][0];
    assert!(r["path"].as_str().unwrap().ends_with("standby.db"), "{out}");
    assert!(r["applied"].as_u64().unwrap() > 0, "{out}");
    assert!(r["last_error"].is_null(), "{out}");
    // A replica written outside rowtrail is reported, and capture goes on.
    open(&replica).execute_batch("DELETE FROM staff").unwrap();
    c.execute_batch("UPDATE staff SET name = 'after' WHERE id IN (SELECT min(id) FROM staff)")
        .unwrap();
    rowtrail_tests::wait_until(
        std::time::Duration::from_secs(30),
        "the replica's failure is reported",
        || {
            let out = sb.run(&["status", "--json"]);
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            s["replicas"][0]["last_error"].is_string()
        },
    );
    let out = sb.run(&["status"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAILING"),
        "{}",
        show(&out)
    );
    // Behind for longer than rpo_max_seconds: the replica_lag alert fires.
    rowtrail_tests::wait_until(
        std::time::Duration::from_secs(30),
        "the replica_lag alert",
        || {
            let out = sb.run(&["status", "--json"]);
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            s["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["alert"] == "replica_lag"))
        },
    );
    rowtrail_tests::wait_until(
        std::time::Duration::from_secs(30),
        "capture goes on",
        || sb.staged() == 0,
    );
}

#[test]
fn the_watcher_verifies_the_archive_and_compares_a_replica_on_a_schedule() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let replica = sb.path().join("standby.db");
    sb.ok(&["replica", "create", "--to", replica.to_str().unwrap()]);
    std::fs::write(
        sb.config(),
        "[source]\nengine = \"sqlite\"\npath = \"source.db\"\n\n\
         [archive]\npath = \"trail.db\"\nverify_every = \"1s\"\n\n\
         [watcher]\npoll_interval_ms = 100\n\n[alerts]\nmin_free_disk_bytes = 0\n\n\
         [[replica]]\npath = \"standby.db\"\nverify_every = \"1s\"\n",
    )
    .unwrap();
    let _w = sb.start_watcher();
    let mut rng = fastrand::Rng::with_seed(8);
    workload(&c, &mut rng, 50);
    let status = || -> serde_json::Value {
        serde_json::from_slice(&sb.run(&["status", "--json"]).stdout).unwrap_or_default()
    };
    let passed = |s: &serde_json::Value, i: usize| {
        s["checks"][i]["runs"].as_u64().unwrap_or(0) > 0 && s["checks"][i]["last_ok"] == true
    };
    let failing = |s: &serde_json::Value| {
        s["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["alert"] == "verify_failed"))
    };
    let limit = std::time::Duration::from_secs(30);
    rowtrail_tests::wait_until(limit, "both checks ran and passed", || {
        let s = status();
        passed(&s, 0) && passed(&s, 1)
    });
    let s = status();
    assert_eq!(s["checks"][0]["check"], "verify", "{s}");
    assert_eq!(s["checks"][1]["check"], "compare", "{s}");
    assert!(
        s["checks"][1]["next_run_us"].as_i64() > s["checks"][1]["last_run_us"].as_i64(),
        "{s}"
    );
    let text = String::from_utf8_lossy(&sb.run(&["status"]).stdout).to_string();
    assert!(
        text.contains("check      verify") && text.contains("check      compare"),
        "{text}"
    );
    assert!(
        text.contains("passed") && text.contains("next in"),
        "{text}"
    );

    // A row written into the replica outside rowtrail: the next comparison fails, and alerts.
    let rep = open(&replica);
    rep.busy_timeout(std::time::Duration::from_secs(20))
        .unwrap();
    rep.execute_batch("INSERT INTO log VALUES ('forged', 12345)")
        .unwrap();
    drop(rep);
    rowtrail_tests::wait_until(limit, "the comparison fails and alerts", || {
        let s = status();
        s["checks"][1]["last_ok"] == false && failing(&s)
    });
    let s = status();
    let result = s["checks"][1]["last_result"].as_str().unwrap_or_default();
    assert!(
        result.contains("log (0 missing, 1 extra, 0 different)"),
        "{s}"
    );
    assert!(!s.to_string().contains("forged"), "no row values: {s}");
    // Repaired: the next run passes and the alert clears.
    sb.ok(&["compare", "--replica", "standby.db", "--repair", "--apply"]);
    rowtrail_tests::wait_until(limit, "the comparison passes again", || {
        let s = status();
        s["checks"][1]["last_ok"] == true && !failing(&s)
    });

    // An archived change edited in place: the hash chain's verification fails.
    let a = open(&sb.archive());
    a.busy_timeout(std::time::Duration::from_secs(20)).unwrap();
    a.execute_batch(
        "UPDATE changes SET login = 'mallory' WHERE id = (SELECT min(id) FROM changes)",
    )
    .unwrap();
    drop(a);
    rowtrail_tests::wait_until(limit, "verify fails and alerts", || {
        let s = status();
        s["checks"][0]["last_ok"] == false && failing(&s)
    });
}

/// Each table's trail rows in `replica` against the row images the archive holds of it up to
/// the replica's recorded position.
fn trail_counts(sb: &Sandbox, replica: &std::path::Path) -> Vec<(String, i64, i64)> {
    let (position, _) = recorded_position(replica);
    let archive = open(&sb.archive());
    let rep = open(replica);
    ["staff", "tags", "log"]
        .iter()
        .map(|t| {
            let archived: i64 = archive
                .query_row(
                    "SELECT coalesce(sum((c.before IS NOT NULL) + (c.after IS NOT NULL)), 0) \
                     FROM changes c JOIN tables t ON t.id = c.table_id \
                     WHERE t.table_name = ?1 AND c.id <= ?2",
                    rusqlite::params![t, position],
                    |r| r.get(0),
                )
                .unwrap();
            let held: i64 = rep
                .query_row(
                    &format!("SELECT count(*) FROM rowtrail_trail_{t}"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            (t.to_string(), archived, held)
        })
        .collect()
}

/// op, image, login, host, application, client address, transaction, salary.
type TrailRow = (String, String, String, String, String, String, String, f64);

#[test]
fn a_replica_keeps_the_trail_as_plain_tables_when_asked() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install"]);
    c.execute_batch(
        "BEGIN;
         INSERT INTO rowtrail_context (id, login, host, app, client_ip, tx) VALUES (1, 'ann', 'hr-7', 'portal', '10.0.0.7', 'batch-7');
         UPDATE staff SET salary = 99.5 WHERE id = 1;
         DELETE FROM rowtrail_context;
         COMMIT;",
    )
    .unwrap();
    sb.ok(&["read", "--quiet"]);
    let replica = sb.path().join("standby.db");
    let r = replica.to_str().unwrap();
    sb.ok(&["replica", "create", "--to", r, "--trail-tables"]);
    let mut rng = fastrand::Rng::with_seed(77);
    workload(&c, &mut rng, 200);
    sb.ok(&["read", "--quiet"]);
    sb.ok(&["replica", "apply", "--to", r]);
    assert_eq!(state(&open(&replica)), state(&c), "the tables themselves");
    for (t, archived, held) in trail_counts(&sb, &replica) {
        assert!(archived > 0, "{t}: the workload changed it");
        assert_eq!(held, archived, "{t}: one trail row per archived image");
    }
    let rows: Vec<TrailRow> = open(&replica)
        .prepare(
            "SELECT rowtrail_op, rowtrail_image, rowtrail_login, rowtrail_host, rowtrail_app, \
             rowtrail_client_ip, rowtrail_tx, salary FROM rowtrail_trail_staff \
             WHERE rowtrail_tx = 'batch-7' ORDER BY rowtrail_image",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let row = |image: &str, salary: f64| {
        let s = |v: &str| v.to_string();
        (
            s("update"),
            s(image),
            s("ann"),
            s("hr-7"),
            s("portal"),
            s("10.0.0.7"),
            s("batch-7"),
            salary,
        )
    };
    assert_eq!(rows, [row("after", 99.5), row("before", 10.0)]);

    // A rewind takes the trail back with the tables.
    std::thread::sleep(std::time::Duration::from_millis(30));
    let then: String = c
        .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
            r.get(0)
        })
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    workload(&c, &mut rng, 100);
    sb.ok(&["read", "--quiet"]);
    sb.ok(&["replica", "apply", "--to", r]);
    let before_rewind = trail_counts(&sb, &replica);
    sb.ok(&["replica", "rewind", "--to", r, "--as-of", &then, "--apply"]);
    let after_rewind = trail_counts(&sb, &replica);
    for ((t, archived, held), (_, was, _)) in after_rewind.iter().zip(&before_rewind) {
        assert_eq!(
            held, archived,
            "{t}: the trail stands where the replica does"
        );
        assert!(archived <= was, "{t}");
    }
    assert_ne!(after_rewind, before_rewind, "the rewind undid some changes");
}

#[test]
fn a_source_restored_from_an_old_backup_gets_the_archived_changes_back() {
    let sb = Sandbox::new(BIN);
    let c = seeded(&sb);
    sb.ok(&["sql", "install"]);
    let mut rng = fastrand::Rng::with_seed(12);
    workload(&c, &mut rng, 100);
    sb.ok(&["read", "--quiet"]);
    // The backup: a copy of the file.
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    let backup = sb.path().join("backup.db");
    std::fs::copy(sb.source(), &backup).unwrap();
    let at_backup = state(&c);
    workload(&c, &mut rng, 200);
    sb.ok(&["read", "--quiet"]);
    let lost = state(&c);
    assert_ne!(lost, at_backup);
    let incarnation: String = c
        .query_row(
            "SELECT value FROM rowtrail_meta WHERE key = 'incarnation'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(c);
    // The source is lost, and restored from the backup.
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", sb.source().display()));
    }
    std::fs::copy(&backup, sb.source()).unwrap();
    assert_eq!(state(&open(&sb.source())), at_backup);

    let dry = sb.ok(&["reapply"]);
    assert!(dry.contains("redo plan:"), "{dry}");
    assert_eq!(
        state(&open(&sb.source())),
        at_backup,
        "a dry run writes nothing"
    );
    let out = sb.ok(&["reapply", "--apply"]);
    assert!(out.contains("applied"), "{out}");
    assert_eq!(
        state(&open(&sb.source())),
        lost,
        "the archived changes are back"
    );
    let renewed: String = open(&sb.source())
        .query_row(
            "SELECT value FROM rowtrail_meta WHERE key = 'incarnation'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_ne!(renewed, incarnation, "a new incarnation");
    // Capture goes on: the re-applied writes and later ones are archived as the new source.
    let c = sb.connect();
    workload(&c, &mut rng, 20);
    sb.ok(&["read", "--quiet"]);
    assert_eq!(sb.staged(), 0, "everything archived");
    // Re-applied twice: the guards refuse, nothing changes.
    let now = state(&c);
    let backup_seq =
        rowtrail_reader::sqlite::staging::sequence_value(&open(&backup), "backup").unwrap();
    let after = format!("seq:{backup_seq}");
    let again = sb.run(&[
        "reapply",
        "--incarnation",
        &incarnation,
        "--after",
        &after,
        "--apply",
    ]);
    assert_eq!(again.status.code(), Some(3), "{}", show(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("redo refused"),
        "the guards refuse: {}",
        show(&again)
    );
    assert_eq!(state(&c), now, "nothing applied twice");
}
