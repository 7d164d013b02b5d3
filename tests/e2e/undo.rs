//! `rowtrail undo` and `rowtrail redo` as users run them, `rowtrail verify` against tampering,
//! and SIGKILL at every labelled step of `undo --apply`.

use std::time::{Duration, Instant};

use rowtrail_tests::{show, wait_until, Sandbox};
use rusqlite::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

const SCHEMA: &str = "
    CREATE TABLE dept (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE staff (id INTEGER PRIMARY KEY, name TEXT, dept_id INTEGER REFERENCES dept (id), salary NUMERIC);
    CREATE TABLE notes (body);";

/// Runs `sql` in one transaction labelled as `login` in transaction `tx`.
fn as_user(c: &Connection, login: &str, tx: &str, sql: &str) {
    c.execute_batch(&format!(
        "BEGIN; INSERT INTO rowtrail_context (id, tx, login, host, app, client_ip) \
         VALUES (1, '{tx}', '{login}', '{login}-pc', 'hr', '192.0.2.7'); {sql}; \
         DELETE FROM rowtrail_context; COMMIT;"
    ))
    .unwrap();
}

fn rows(c: &Connection, sql: &str) -> Vec<String> {
    c.prepare(sql)
        .unwrap()
        .query_map([], |r| {
            let n = r.as_ref().column_count();
            Ok((0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn staff(c: &Connection) -> Vec<String> {
    rows(c, "SELECT * FROM staff ORDER BY id")
}

/// A sandbox with departments and staff, changed by alice (tx T1) then bob (tx T2), archived.
fn populated() -> (Sandbox, Connection) {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install(SCHEMA);
    as_user(
        &c,
        "alice",
        "T1",
        "INSERT INTO dept VALUES (1, 'Eng'); INSERT INTO staff VALUES (1, 'Ada', 1, 5000), (2, 'Linus', 1, 4800)",
    );
    as_user(
        &c,
        "bob",
        "T2",
        "UPDATE staff SET salary = salary * 2 WHERE dept_id = 1",
    );
    sb.ok(&["read", "--quiet"]);
    (sb, c)
}

#[test]
fn dry_run_shows_plan_and_script_apply_undoes_redo_restores() {
    let (sb, c) = populated();
    let before = staff(&c);
    let out = sb.ok(&["undo", "--tx", "T2"]);
    for needle in [
        "undo plan: 2 change(s) selected",
        "by bob at",
        "BEGIN IMMEDIATE;",
        "COMMIT;",
        "dry run: nothing was changed",
    ] {
        assert!(out.contains(needle), "dry run lacks {needle:?}:\n{out}");
    }
    assert_eq!(staff(&c), before, "a dry run changes nothing");
    let applied = sb.ok(&["undo", "--tx", "T2", "--apply"]);
    assert!(
        applied.contains("undo run 1 applied: 2 applied"),
        "{applied}"
    );
    assert_eq!(
        staff(&c),
        [
            "Integer(1)|Text([65, 100, 97])|Integer(1)|Integer(5000)",
            "Integer(2)|Text([76, 105, 110, 117, 115])|Integer(1)|Integer(4800)"
        ]
    );
    // The undo's own writes are captured and labelled with the run.
    sb.ok(&["read", "--quiet"]);
    let audit = sb.ok(&["audit", "--tx", "undo:1", "--format", "csv"]);
    assert_eq!(audit.lines().count(), 3, "{audit}");
    assert!(sb.ok(&["undo", "--tx", "T2"]).contains("nothing to undo"));
    let list = sb.ok(&["undo", "--list"]);
    assert!(
        list.contains("applied") && list.contains("undo:1"),
        "{list}"
    );
    sb.ok(&["redo", "--run", "1", "--apply"]);
    assert_eq!(staff(&c), before);
    sb.ok(&["read", "--quiet"]);
    let verified = sb.ok(&["verify"]);
    assert!(verified.contains("archive verified"), "{verified}");
    assert!(sb.ok(&["undo", "--list"]).contains("redone"));
}

#[test]
fn undo_applies_while_the_watcher_runs_and_its_writes_reach_the_archive() {
    let (sb, c) = populated();
    let _watcher = sb.start_watcher();
    let before = sb.archived();
    // The watcher holds the reader lock; undo takes its own lock and shares the archive.
    sb.ok(&["undo", "--tx", "T2", "--apply"]);
    assert_eq!(
        rows(&c, "SELECT salary FROM staff ORDER BY id"),
        ["Integer(5000)", "Integer(4800)"]
    );
    wait_until(
        Duration::from_secs(20),
        "the watcher archives the undo's writes",
        || sb.archived() >= before + 2,
    );
    let audit = sb.ok(&["audit", "--tx", "undo:1", "--format", "json"]);
    assert_eq!(audit.lines().count(), 2, "{audit}");
    assert!(sb.ok(&["verify"]).contains("archive verified"));
    assert!(sb.ok(&["undo", "--tx", "T2"]).contains("nothing to undo"));
}

#[test]
fn refusal_exits_3_and_names_each_conflicting_change_with_who_and_when() {
    let (sb, c) = populated();
    as_user(
        &c,
        "carol",
        "T3",
        "UPDATE staff SET name = 'Ada L.' WHERE id = 1",
    );
    sb.ok(&["read", "--quiet"]);
    let before = staff(&c);
    for apply in [false, true] {
        let mut args = vec!["undo", "--tx", "T1"];
        if apply {
            args.push("--apply");
        }
        let out = sb.fails(&args, 3);
        assert!(out.contains("undo refused: 3 conflict(s)"), "{out}");
        assert!(out.contains("by bob at 20"), "names bob and when:\n{out}");
        assert!(
            out.contains("by carol at 20") && out.contains("from host carol-pc"),
            "{out}"
        );
        assert!(out.contains("changed the same row later"), "{out}");
        assert_eq!(staff(&c), before);
    }
    // The plan as JSON names the same conflicts.
    let out = sb.run(&["undo", "--tx", "T1", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["refused"], true);
    assert_eq!(plan["selected"], 3);
    let conflicts = plan["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 3);
    assert!(conflicts
        .iter()
        .all(|c| c["dependency"] == "later-write" && c["later"]["at"].is_string()));
    assert!(conflicts.iter().any(|c| c["later"]["login"] == "carol"));
    // The --force dry run shows, per conflict, the later values it would overwrite.
    let out = sb.ok(&["undo", "--tx", "T1", "--force"]);
    assert!(
        out.contains("--force deletes the row as change 6 left it"),
        "the plan names what --force overwrites:\n{out}"
    );
    let out = sb.ok(&["undo", "--tx", "T2", "--force"]);
    assert!(
        out.contains("--force overwrites name: Ada L. → Ada"),
        "the plan names the later values --force overwrites:\n{out}"
    );
    assert_eq!(staff(&c), before, "a dry run changes nothing");
    // Cascade undoes the dependent changes too, newest first.
    let out = sb.ok(&["undo", "--tx", "T1", "--cascade", "--apply"]);
    assert!(
        out.contains("3 dependent change(s) added by cascade"),
        "{out}"
    );
    assert!(staff(&c).is_empty() && rows(&c, "SELECT * FROM dept").is_empty());
}

#[test]
fn since_undoes_what_a_user_did_after_a_point_in_time() {
    let (sb, c) = populated();
    let at: String = Connection::open(sb.archive())
        .unwrap()
        .query_row("SELECT max(at) FROM changes", [], |r| r.get(0))
        .unwrap();
    // Changes at the same millisecond as `at` are in scope too; wait until the clock moves on.
    let deadline = Instant::now() + Duration::from_secs(5);
    while c
        .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap()
        <= at
    {
        assert!(Instant::now() < deadline, "the clock did not move");
        std::thread::yield_now();
    }
    let t: String = c
        .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
            r.get(0)
        })
        .unwrap();
    as_user(&c, "bob", "T4", "UPDATE staff SET name = 'x' WHERE id = 2");
    as_user(&c, "carol", "T5", "INSERT INTO notes VALUES ('hello')");
    sb.ok(&["read", "--quiet"]);
    sb.ok(&["undo", "--user", "bob", "--since", &t, "--apply"]);
    assert_eq!(
        rows(&c, "SELECT name FROM staff WHERE id = 2"),
        ["Text([76, 105, 110, 117, 115])"]
    );
    assert_eq!(
        rows(&c, "SELECT count(*) FROM notes"),
        ["Integer(1)"],
        "carol's change stays"
    );
}

#[test]
fn an_ambiguous_row_without_a_key_is_refused_unless_forced() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install(SCHEMA);
    c.execute_batch("INSERT INTO notes VALUES ('same'); INSERT INTO notes VALUES ('same');")
        .unwrap();
    sb.ok(&["read", "--quiet"]);
    let out = sb.fails(&["undo", "--last", "1", "--apply"], 3);
    assert!(
        out.contains("2 rows of notes equal its archived image") && out.contains("--force"),
        "{out}"
    );
    assert_eq!(rows(&c, "SELECT count(*) FROM notes"), ["Integer(2)"]);
    sb.ok(&["undo", "--last", "1", "--apply", "--force"]);
    assert_eq!(rows(&c, "SELECT count(*) FROM notes"), ["Integer(1)"]);
}

#[test]
fn undo_on_an_unreachable_sql_server_fails_fast_and_changes_nothing() {
    let (sb, _c) = populated();
    sb.ok(&["undo", "--tx", "T2", "--apply"]);
    let archive_before = std::fs::read(sb.archive()).unwrap();
    // The same archive, its source now a SQL Server where nothing listens (port 1).
    std::fs::write(
        sb.config(),
        "[source]\nengine = \"mssql\"\nconnection = \"Server=tcp:127.0.0.1,1;Database=app;User ID=undoer\"\n\n[archive]\npath = \"trail.db\"\n",
    )
    .unwrap();
    let runs: [&[&str]; 5] = [
        &["undo", "--tx", "T1", "--apply"],
        &["undo", "--tx", "T1"],
        &["undo", "--last", "1", "--script-only"],
        &["redo", "--run", "1"],
        &["redo", "--run", "1", "--apply"],
    ];
    for args in runs {
        let started = Instant::now();
        let out = sb
            .cmd(args)
            .env("ROWTRAIL_SOURCE_PASSWORD", "s3cret-pw")
            .output()
            .unwrap();
        let text = show(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains("cannot reach the SQL Server source app on 127.0.0.1,1")
                && text.contains("nothing was changed")
                && text.contains("cannot connect"),
            "{args:?}: a clear message: {text}"
        );
        assert!(
            !text.contains("s3cret-pw") && !text.contains("undoer"),
            "{args:?}: no credentials in the output: {text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?}: fails fast ({:?})",
            started.elapsed()
        );
    }
    assert_eq!(
        std::fs::read(sb.archive()).unwrap(),
        archive_before,
        "the archive and its journal are untouched"
    );
    // The journal still reads without a source.
    assert!(sb.ok(&["undo", "--list"]).contains("undo:1"));
}

/// `rowtrail ARGS` with a failpoint armed, killed with SIGKILL once it reports reaching it.
fn kill_at(sb: &Sandbox, args: &[&str], label: &str) {
    rowtrail_tests::kill_at(sb.cmd(args), label);
}

#[test]
fn sigkill_at_every_step_of_undo_apply_then_the_undo_runs_again() {
    for label in [
        "undo-mid-apply",
        "undo-before-source-commit",
        "undo-after-source-commit",
    ] {
        let (sb, c) = populated();
        let before = staff(&c);
        kill_at(&sb, &["undo", "--tx", "T2", "--apply"], label);
        let committed = label == "undo-after-source-commit";
        if committed {
            assert_ne!(staff(&c), before, "{label}: the source committed");
        } else {
            assert_eq!(staff(&c), before, "{label}: the source must be unchanged");
            assert_eq!(sb.staged(), 0, "{label}: nothing was captured");
        }
        let out = sb.run(&["undo", "--tx", "T2", "--apply"]);
        assert!(out.status.success(), "{label}: {}", show(&out));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if committed {
            assert!(
                text.contains("settled interrupted run 1: it had committed")
                    && text.contains("nothing to undo"),
                "{label}: {text}"
            );
        } else {
            assert!(
                text.contains("it never committed (abandoned)")
                    && text.contains("undo run 2 applied"),
                "{label}: {text}"
            );
        }
        assert_eq!(
            rows(&c, "SELECT salary FROM staff ORDER BY id"),
            ["Integer(5000)", "Integer(4800)"],
            "{label}"
        );
        sb.ok(&["read", "--quiet"]);
        let v = sb.ok(&["verify"]);
        assert!(v.contains("archive verified"), "{label}: {v}");
    }
}

/// Tampering with the archive file directly.
fn tamper(sb: &Sandbox, sql: &str) {
    let c = Connection::open(sb.archive()).unwrap();
    c.execute_batch(sql).unwrap();
}

/// Flips one bit of the last byte of change `id`'s after-image (a value byte, so the image
/// still decodes: only the chain can tell).
fn flip_a_byte(sb: &Sandbox, id: i64) {
    let c = Connection::open(sb.archive()).unwrap();
    let mut after: Vec<u8> = c
        .query_row("SELECT after FROM changes WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    *after.last_mut().unwrap() ^= 0x01;
    c.execute(
        "UPDATE changes SET after = ?2 WHERE id = ?1",
        rusqlite::params![id, after],
    )
    .unwrap();
}

#[test]
fn verify_detects_a_flipped_byte_a_deleted_change_a_reorder_and_a_truncated_tail() {
    let cases = [
        ("flip a byte", ""),
        ("delete one", "DELETE FROM changes WHERE id = 3"),
        ("reorder two", "UPDATE changes SET id = -1 WHERE id = 2; UPDATE changes SET id = 2 WHERE id = 3; UPDATE changes SET id = 3 WHERE id = -1"),
        ("journal", "UPDATE undo_runs SET tx_tag = 'undo:77'"),
    ];
    for (what, sql) in cases {
        let (sb, _c) = populated();
        sb.ok(&["undo", "--last", "1", "--apply"]);
        sb.ok(&["read", "--quiet"]);
        assert!(sb.ok(&["verify"]).contains("archive verified"));
        if sql.is_empty() {
            flip_a_byte(&sb, 2);
        } else {
            tamper(&sb, sql);
        }
        let out = sb.fails(&["verify"], 1);
        assert!(out.contains("verification FAILED"), "{what}: {out}");
    }
    // Truncating the tail leaves a valid chain: only the digest kept elsewhere tells.
    let (sb, _c) = populated();
    let digest = sb.ok(&["verify", "--digest"]).trim().to_string();
    tamper(
        &sb,
        "DELETE FROM changes WHERE id >= (SELECT max(id) - 1 FROM changes)",
    );
    assert!(sb.ok(&["verify"]).contains("archive verified"));
    let out = sb.fails(&["verify", "--against", &digest], 1);
    assert!(out.contains("truncated"), "{out}");
}
