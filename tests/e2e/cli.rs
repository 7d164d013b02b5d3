//! The `rowtrail` binary as users run it: demo, install/uninstall, foreign clients, bad input.

use std::process::Command;

use rowtrail_tests::{show, Sandbox};
use rusqlite::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

fn schema_objects(c: &Connection) -> Vec<(String, String, Option<String>)> {
    let mut stmt = c
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn demo_runs_with_no_arguments_and_verifies() {
    let sb = Sandbox::new(BIN);
    let out = Command::new(BIN)
        .arg("demo")
        .current_dir(sb.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "archived",
        "commit→archive latency",
        "history of staff",
        "archive verified",
        "staging empty (0 left)",
        "0 change(s) behind",
        "equal, row for row",
        "restore --as-of",
        "failover 1 (a planned switchover",
        "a write to source.db now fails: rowtrail: this database is fenced",
        "is the primary again; standby.db is a replica again",
    ] {
        assert!(
            text.contains(needle),
            "demo output lacks {needle:?}:\n{text}"
        );
    }
    // Running it again re-creates its own folder; a foreign folder is refused.
    let again = Command::new(BIN)
        .arg("demo")
        .arg("--latency-commits")
        .arg("5")
        .current_dir(sb.path())
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", show(&again));
    std::fs::create_dir(sb.path().join("mine")).unwrap();
    let refused = Command::new(BIN)
        .args(["demo", "--dir", "mine"])
        .current_dir(sb.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not an earlier rowtrail demo"));
}

#[test]
fn install_twice_is_harmless_and_uninstall_leaves_nothing_behind() {
    let sb = Sandbox::new(BIN);
    let c = sb.connect();
    c.execute_batch(
        "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT UNIQUE);
         CREATE TABLE \"b c\" (k TEXT PRIMARY KEY, n) WITHOUT ROWID;
         CREATE INDEX a_v ON a (v);
         INSERT INTO a VALUES (1, 'x');",
    )
    .unwrap();
    let before = schema_objects(&c);
    sb.ok(&["sql", "install"]);
    c.execute("INSERT INTO a VALUES (2, 'y')", []).unwrap();
    let incarnation: String = c
        .query_row(
            "SELECT value FROM rowtrail_meta WHERE key = 'incarnation'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    sb.ok(&["sql", "install"]);
    assert_eq!(sb.staged(), 1, "a second install keeps staged changes");
    let again: String = c
        .query_row(
            "SELECT value FROM rowtrail_meta WHERE key = 'incarnation'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(incarnation, again, "a second install keeps the incarnation");
    // Uninstall refuses while changes wait, then works after a drain.
    let refused = sb.fails(&["sql", "uninstall"], 1);
    assert!(refused.contains("not archived yet"), "{refused}");
    sb.ok(&["read"]);
    sb.ok(&["sql", "uninstall"]);
    assert_eq!(
        schema_objects(&c),
        before,
        "uninstall must restore the schema exactly"
    );
    let rows: i64 = c
        .query_row("SELECT count(*) FROM a", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2, "user data untouched");
}

#[test]
fn a_client_that_knows_nothing_of_rowtrail_keeps_working() {
    let sb = Sandbox::new(BIN);
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE);");
    // The real sqlite3 shell: it loads nothing of ours.
    let script = "INSERT INTO t VALUES (1, 'a'); REPLACE INTO t VALUES (2, 'a'); \
                  UPDATE t SET v = 'b'; DELETE FROM t; SELECT last_insert_rowid();";
    let out = Command::new("sqlite3")
        .arg(sb.source())
        .arg(script)
        .output()
        .expect("the sqlite3 shell is needed for this test: bash scripts/prereqs.sh installs it");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2",
        "last_insert_rowid is the caller's, not staging's"
    );
    sb.ok(&["read"]);
    let archive = Connection::open(sb.archive()).unwrap();
    let ops: Vec<String> = archive
        .prepare("SELECT op FROM changes ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ops, ["insert", "delete", "insert", "update", "delete"]);
    let logins: i64 = archive
        .query_row(
            "SELECT count(*) FROM changes WHERE login IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        logins, 0,
        "a foreign client is never labelled with someone else's login"
    );
}

#[test]
fn generate_writes_reviewable_scripts_from_a_file_or_ddl() {
    let sb = Sandbox::new(BIN);
    sb.connect()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v);")
        .unwrap();
    let install = sb.ok(&["sql", "generate"]);
    assert!(install.starts_with("-- rowtrail "), "{install}");
    assert!(install.contains("CREATE TRIGGER \"rowtrail_ai_t_"));
    let ddl = sb.path().join("schema.sql");
    std::fs::write(
        &ddl,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, total NUMERIC);\nCREATE TABLE x (y);",
    )
    .unwrap();
    let out = sb.ok(&[
        "sql",
        "generate",
        "--from-ddl",
        ddl.to_str().unwrap(),
        "--tables",
        "orders",
        "--out",
        "gen",
    ]);
    assert!(
        out.contains("install.sql") && out.contains("uninstall.sql"),
        "{out}"
    );
    let text = std::fs::read_to_string(sb.path().join("gen/install.sql")).unwrap();
    assert!(text.contains("\"orders\"") && !text.contains("ON \"x\""));
    // Scripts run by hand with the sqlite3 shell work too.
    let fresh = sb.path().join("fresh.db");
    let c = Connection::open(&fresh).unwrap();
    c.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, total NUMERIC);")
        .unwrap();
    let before = schema_objects(&c);
    drop(c);
    for script in ["gen/install.sql", "gen/uninstall.sql"] {
        let out = Command::new("sqlite3")
            .arg(&fresh)
            .arg(format!(".read {script}"))
            .current_dir(sb.path())
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{script}: {}",
            show(&out)
        );
    }
    assert_eq!(schema_objects(&Connection::open(&fresh).unwrap()), before);
}

#[test]
fn bad_input_gets_a_clear_error_and_loses_nothing() {
    let sb = Sandbox::new(BIN);
    sb.connect()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY);")
        .unwrap();
    // An unknown table.
    let e = sb.fails(&["sql", "install", "--tables", "nope"], 1);
    assert!(
        e.contains("\"nope\" does not exist") && e.contains("its tables are: t"),
        "{e}"
    );
    // A source with no capture installed.
    let e = sb.fails(&["read"], 1);
    assert!(
        e.contains("no rowtrail capture installed") && e.contains("rowtrail sql install"),
        "{e}"
    );
    // Malformed DDL.
    let ddl = sb.path().join("bad.sql");
    std::fs::write(&ddl, "CREATE TABLE (oops;").unwrap();
    let e = sb.fails(&["sql", "generate", "--from-ddl", ddl.to_str().unwrap()], 1);
    assert!(e.contains("SQLite could not run it"), "{e}");
    // A reserved column name.
    sb.connect()
        .execute_batch("CREATE TABLE r (rowtrail_seq INTEGER);")
        .unwrap();
    let e = sb.fails(&["sql", "install", "--tables", "r"], 1);
    assert!(e.contains("reserves"), "{e}");
    // A source with no tables at all.
    let empty = Sandbox::new(BIN);
    empty
        .connect()
        .execute_batch("CREATE VIEW v AS SELECT 1;")
        .unwrap();
    let e = empty.fails(&["sql", "install"], 1);
    assert!(e.contains("has no tables to capture"), "{e}");
    // Usage errors exit 2.
    sb.fails(&["history"], 2);
}

#[test]
fn archives_that_are_not_usable_are_refused_and_left_untouched() {
    let sb = Sandbox::new(BIN);
    // No baseline at install: it would make the first archive the source's home, and the
    // files below replace that archive (a replaced home is refused, as tested elsewhere).
    let c = sb.connect();
    c.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v);")
        .unwrap();
    sb.ok(&["sql", "install", "--no-baseline"]);
    c.execute("INSERT INTO t VALUES (1, 'kept')", []).unwrap();
    let check = |content: &[u8], expect: &str| {
        std::fs::write(sb.archive(), content).unwrap();
        let e = sb.fails(&["read"], 1);
        assert!(e.contains(expect), "expected {expect:?} in:\n{e}");
        assert_eq!(
            std::fs::read(sb.archive()).unwrap(),
            content,
            "the file was modified"
        );
        assert_eq!(sb.staged(), 1, "staging must keep the change");
    };
    check(
        b"this is a text file, not an archive at all, hello",
        "not a SQLite database",
    );
    // A foreign SQLite database.
    std::fs::remove_file(sb.archive()).unwrap();
    Connection::open(sb.archive())
        .unwrap()
        .execute_batch("CREATE TABLE other (x); INSERT INTO other VALUES (1);")
        .unwrap();
    let foreign = std::fs::read(sb.archive()).unwrap();
    check(&foreign, "not a rowtrail archive");
    // An archive from a newer rowtrail.
    std::fs::remove_file(sb.archive()).unwrap();
    sb.ok(&["read"]);
    c.execute("INSERT INTO t VALUES (2, 'kept too')", [])
        .unwrap();
    Connection::open(sb.archive())
        .unwrap()
        .execute_batch("PRAGMA user_version = 999;")
        .unwrap();
    let e = sb.fails(&["read"], 1);
    assert!(e.contains("newer than this rowtrail understands"), "{e}");
    assert_eq!(sb.staged(), 1);
    // A damaged archive: its pages overwritten with garbage.
    Connection::open(sb.archive())
        .unwrap()
        .execute_batch("PRAGMA user_version = 1;")
        .unwrap();
    let mut bytes = std::fs::read(sb.archive()).unwrap();
    let len = bytes.len();
    for b in &mut bytes[100..len] {
        *b = 0xA5;
    }
    std::fs::write(sb.archive(), &bytes).unwrap();
    let e = sb.fails(&["read"], 1);
    assert!(
        e.contains("damaged") || e.contains("not a rowtrail archive"),
        "{e}"
    );
    assert_eq!(sb.staged(), 1, "staging must keep the change");
    let e = sb.fails(&["verify"], 1);
    assert!(
        e.contains("damaged") || e.contains("not a rowtrail archive"),
        "{e}"
    );
}

#[test]
fn generate_for_sql_server_writes_the_deployment_from_a_ddl_script() {
    let sb = Sandbox::new(BIN);
    let ddl = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sql/tests/fixtures/adventureworks.sql"
    );
    let out = sb.ok(&[
        "sql",
        "generate",
        "--engine",
        "mssql",
        "--from-ddl",
        ddl,
        "--tables",
        "Sales.SalesOrderDetail,dbo.ImportLog",
        "--reader-login",
        "rowtrail_reader",
        "--out",
        "mssql",
    ]);
    for f in [
        "rowtrail-install.sql",
        "rowtrail-uninstall.sql",
        "rowtrail-permissions.sql",
    ] {
        assert!(out.contains(f), "{out}");
        let text = std::fs::read_to_string(sb.path().join("mssql").join(f)).unwrap();
        assert!(text.starts_with("-- rowtrail "), "{f} has no header");
    }
    let install = std::fs::read_to_string(sb.path().join("mssql/rowtrail-install.sql")).unwrap();
    assert!(
        install.contains("[Sales].[SalesOrderDetail]") && !install.contains("[Person].[Person]")
    );
    let e = sb.fails(
        &[
            "sql",
            "generate",
            "--engine",
            "mssql",
            "--from-ddl",
            ddl,
            "--tables",
            "nope",
        ],
        1,
    );
    assert!(
        e.contains("\"nope\" is not defined") && e.contains("Sales.SalesOrderDetail"),
        "{e}"
    );
    let e = sb.fails(&["sql", "generate", "--engine", "mssql"], 1);
    assert!(e.contains("--from-ddl"), "{e}");
}

#[test]
fn a_refused_sql_server_table_blocks_only_itself() {
    let sb = Sandbox::new(BIN);
    let ddl = sb.path().join("mixed.sql");
    std::fs::write(
        &ddl,
        "CREATE TABLE dbo.Notes (id int NOT NULL PRIMARY KEY, body ntext NULL);\nGO\n\
         CREATE TABLE dbo.Orders (id int NOT NULL PRIMARY KEY, total decimal(12,2) NOT NULL);\nGO\n",
    )
    .unwrap();
    let ddl = ddl.to_str().unwrap();
    let e = sb.fails(
        &["sql", "generate", "--engine", "mssql", "--from-ddl", ddl],
        1,
    );
    assert!(e.contains("Notes") && e.contains("ntext"), "{e}");
    let out = sb.ok(&[
        "sql",
        "generate",
        "--engine",
        "mssql",
        "--from-ddl",
        ddl,
        "--tables",
        "dbo.Orders",
    ]);
    assert!(
        out.contains("[dbo].[Orders]") && !out.contains("[dbo].[Notes]"),
        "{out}"
    );
}

/// Issue 20, item 14: one table that cannot be captured no longer hides the others' problems
/// or blocks their install, and a table named `rowtrail_…` is not skipped without a word.
#[test]
fn issue_20_install_reports_every_uncapturable_table_and_installs_the_rest_on_request() {
    let sb = Sandbox::new(BIN);
    let long = "l".repeat(140);
    sb.connect()
        .execute_batch(&format!(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, v);
             CREATE TABLE \"{long}\" (id INTEGER PRIMARY KEY);
             CREATE TABLE clash (id INTEGER PRIMARY KEY, rowtrail_seq INTEGER);
             CREATE TABLE rowtrail_mine (x);
             CREATE TABLE z (id INTEGER PRIMARY KEY);"
        ))
        .unwrap();
    let e = sb.fails(&["sql", "install"], 1);
    assert!(
        e.contains("2 table(s)")
            && e.contains("140 characters")
            && e.contains("\"clash\"")
            && e.contains("reserves")
            && e.contains("--skip-uncapturable"),
        "{e}"
    );
    assert!(
        e.contains("rowtrail_mine") && e.contains("not captured"),
        "the reserved name is reported: {e}"
    );
    let registry: i64 = sb
        .connect()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'rowtrail_registry'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(registry, 0, "nothing is installed while problems stand");

    let out = sb.run(&["sql", "install", "--skip-uncapturable"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("for 2 table(s)")
            && text.contains("  a\n")
            && text.contains("  z\n")
            && text.contains("not captured (2 table(s))")
            && text.contains("\"clash\""),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("rowtrail_mine"));
    let c = sb.connect();
    c.execute("INSERT INTO a VALUES (1, 'x')", []).unwrap();
    c.execute("INSERT INTO z VALUES (1)", []).unwrap();
    sb.ok(&["read"]);
    assert_eq!(sb.archived(), 2);
}
