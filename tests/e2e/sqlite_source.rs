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

/// The archive's definitions of `table`, oldest first (JSON text).
fn definitions(sb: &Sandbox, table: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(sb.archive()).unwrap();
    let mut stmt = c
        .prepare(
            "SELECT v.definition FROM table_versions v JOIN tables t ON t.id = v.table_id \
             WHERE t.table_name = ?1 ORDER BY v.id",
        )
        .unwrap();
    stmt.query_map([table], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The after-image column values of the newest archived change, as `history --format json`
/// shows them (one JSON object per change).
fn history(sb: &Sandbox, table: &str, key: &str) -> Vec<Value> {
    sb.ok(&[
        "history", "--table", table, "--key", key, "--format", "json",
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// Issue 20, item 4: `ALTER TABLE … ADD COLUMN` and `RENAME COLUMN` on a captured table are
/// found by `sql check` (exit 1, naming table and column), followed by the reader (capture
/// upgraded, the new column's values archived from then on), and logged with the changes that
/// were captured without the new column.
#[test]
fn issue_20_added_and_renamed_columns_are_found_followed_and_logged() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);");
    c.execute("INSERT INTO t VALUES (1, 'x')", []).unwrap();
    sb.ok(&["read"]);
    c.execute_batch("ALTER TABLE t ADD COLUMN c INTEGER; UPDATE t SET c = 5 WHERE id = 1;")
        .unwrap();
    let e = sb.fails(&["sql", "check"], 1);
    assert!(
        e.contains("DRIFT") && e.contains("\"t\"") && e.contains("\"c\" added"),
        "{e}"
    );
    let out = sb.run(&["read"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("schema change followed"),
        "the reader says what it did: {}",
        show(&out)
    );
    let check = sb.ok(&["sql", "check"]);
    assert!(
        check.contains("no drift")
            && check.contains("FOLLOWED")
            && check.contains("1 change(s) archived as ids 2–2"),
        "the log names the change captured without the new column: {check}"
    );
    c.execute("UPDATE t SET c = 6 WHERE id = 1", []).unwrap();
    sb.ok(&["read"]);
    let defs = definitions(&sb, "t");
    assert_eq!(defs.len(), 2, "{defs:?}");
    assert!(defs[1].contains("\"c\""), "{defs:?}");
    let changes = history(&sb, "t", "1");
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(
        changes[2].to_string().contains('6'),
        "the new column's value is archived: {}",
        changes[2]
    );

    c.execute_batch("ALTER TABLE t RENAME COLUMN a TO aa;")
        .unwrap();
    let e = sb.fails(&["sql", "check"], 1);
    assert!(e.contains("\"a\" renamed to \"aa\""), "{e}");
    sb.ok(&["read"]);
    c.execute("UPDATE t SET aa = 'y' WHERE id = 1", []).unwrap();
    sb.ok(&["read"]);
    let defs = definitions(&sb, "t");
    assert!(defs.last().unwrap().contains("\"aa\""), "{defs:?}");
    sb.ok(&["verify"]);
}

/// Issue 20, item 4: a renamed table is followed (its changes archived under the new name, and
/// `history --table <new>` reads across the rename); a dropped table is recorded in the
/// archive and its capture removed.
#[test]
fn issue_20_renamed_tables_are_followed_and_dropped_ones_recorded() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE gone (id INTEGER PRIMARY KEY);",
    );
    c.execute_batch("INSERT INTO t VALUES (1, 'x'); INSERT INTO gone VALUES (1);")
        .unwrap();
    sb.ok(&["read"]);
    c.execute_batch("ALTER TABLE t RENAME TO u; UPDATE u SET v = 'y' WHERE id = 1;")
        .unwrap();
    let e = sb.fails(&["sql", "check"], 1);
    assert!(e.contains("\"t\" was renamed to \"u\""), "{e}");
    sb.ok(&["read"]);
    c.execute("UPDATE u SET v = 'z' WHERE id = 1", []).unwrap();
    sb.ok(&["read"]);
    assert_eq!(
        definitions(&sb, "u").len(),
        1,
        "later changes are archived as u's"
    );
    let changes = history(&sb, "u", "1");
    assert_eq!(
        changes.len(),
        3,
        "u's history reads across the rename: {changes:?}"
    );

    c.execute_batch("DROP TABLE gone;").unwrap();
    let e = sb.fails(&["sql", "check"], 1);
    assert!(e.contains("\"gone\" was dropped"), "{e}");
    sb.ok(&["read"]);
    let check = sb.ok(&["sql", "check"]);
    assert!(
        check.contains("no drift") && check.contains("\"gone\": the table was dropped"),
        "{check}"
    );
    let left: i64 = c
        .query_row(
            "SELECT count(*) FROM rowtrail_registry WHERE table_name IN ('gone', 't')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    sb.ok(&["verify"]);
}

/// Issue 20, item 4: a table created after the install is reported, and captured by the reader
/// where `source.capture_new_tables` says so.
#[test]
fn issue_20_tables_created_after_the_install_are_reported_and_captured_where_configured() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    c.execute_batch("CREATE TABLE later (id INTEGER PRIMARY KEY, v);")
        .unwrap();
    let e = sb.fails(&["sql", "check"], 1);
    assert!(
        e.contains("\"later\" is not captured") && e.contains("capture_new_tables"),
        "{e}"
    );
    let out = sb.run(&["read"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"later\" is not captured"),
        "the reader reports it: {}",
        show(&out)
    );
    std::fs::write(
        sb.config(),
        "[source]\nengine = \"sqlite\"\npath = \"source.db\"\ncapture_new_tables = true\n\n\
         [archive]\npath = \"trail.db\"\n\n[alerts]\nmin_free_disk_bytes = 0\n",
    )
    .unwrap();
    sb.ok(&["read"]);
    c.execute("INSERT INTO later VALUES (1, 'x')", []).unwrap();
    sb.ok(&["read"]);
    assert_eq!(history(&sb, "later", "1").len(), 1);
    let check = sb.ok(&["sql", "check"]);
    assert!(
        check.contains("no drift") && check.contains("capture installed"),
        "{check}"
    );
}

/// Issue 20, item 4: `DROP COLUMN` on a captured table is refused by SQLite because the
/// triggers name the column; `rowtrail sql alter` runs it and upgrades capture in one
/// transaction, so no change is captured without the schema's columns.
#[test]
fn issue_20_sql_alter_changes_a_captured_table_and_its_capture_together() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b TEXT);");
    c.execute("INSERT INTO t VALUES (1, 'x', 'y')", []).unwrap();
    assert!(c.execute_batch("ALTER TABLE t DROP COLUMN b").is_err());
    let e = sb.fails(
        &[
            "sql",
            "alter",
            "--wait",
            "1",
            "--table",
            "t",
            "ALTER TABLE t DROP COLUMN b",
        ],
        1,
    );
    assert!(
        e.contains("not archived within 1 s") && e.contains("rowtrail read"),
        "staged changes are archived first: {e}"
    );
    sb.ok(&["read"]);
    let out = sb.ok(&[
        "sql",
        "alter",
        "--table",
        "t",
        "ALTER TABLE t DROP COLUMN b",
    ]);
    assert!(
        out.contains("capture upgraded in the same transaction"),
        "{out}"
    );
    let e = sb.fails(
        &[
            "sql",
            "alter",
            "--table",
            "t",
            "ALTER TABLE t DROP COLUMN nope",
        ],
        1,
    );
    assert!(e.contains("nothing was changed"), "{e}");
    c.execute("UPDATE t SET a = 'z' WHERE id = 1", []).unwrap();
    sb.ok(&["read"]);
    sb.ok(&["sql", "alter", "--table", "t", "ALTER TABLE t RENAME TO u"]);
    c.execute("UPDATE u SET a = 'w' WHERE id = 1", []).unwrap();
    sb.ok(&["read"]);
    let check = sb.ok(&["sql", "check"]);
    assert!(
        check.contains("no drift") && check.contains("renamed to \"u\""),
        "{check}"
    );
    assert_eq!(history(&sb, "u", "1").len(), 3);
    let defs = definitions(&sb, "t");
    assert!(!defs.last().unwrap().contains("\"b\""), "{defs:?}");
}

/// Issue 20, item 4: an update made between `ADD COLUMN` and the upgrade of capture was
/// archived without the new column; undoing it would leave a row that never existed, so undo
/// refuses it (exit 1), names the change and the column, and changes nothing. Changes captured
/// for the table as it is now are undone as ever.
#[test]
fn issue_20_undo_refuses_changes_recorded_for_another_table_definition() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);");
    c.execute("INSERT INTO t VALUES (1, 'x')", []).unwrap();
    sb.ok(&["read"]);
    c.execute_batch(
        "ALTER TABLE t ADD COLUMN c INTEGER; UPDATE t SET a = 'y', c = 5 WHERE id = 1;",
    )
    .unwrap();
    sb.ok(&["read"]);
    let e = sb.fails(&["undo", "--last", "1", "--table", "t", "--apply"], 1);
    assert!(
        e.contains("not the table the changes were captured in")
            && e.contains("change(s) 2")
            && e.contains("\"c\" added"),
        "{e}"
    );
    let row: (String, i64) = c
        .query_row("SELECT a, c FROM t WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(row, ("y".to_string(), 5), "nothing was changed");
    let dry = sb.fails(&["undo", "--last", "1", "--table", "t"], 1);
    assert!(
        dry.contains("not the table"),
        "the dry run refuses too: {dry}"
    );
    // A change captured under the new capture is undone as usual.
    c.execute("UPDATE t SET c = 6 WHERE id = 1", []).unwrap();
    sb.ok(&["read"]);
    sb.ok(&["undo", "--last", "1", "--table", "t", "--apply"]);
    let c_now: i64 = c
        .query_row("SELECT c FROM t WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(c_now, 5);
}
