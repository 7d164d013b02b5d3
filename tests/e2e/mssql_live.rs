//! SQL Server, live: install → DML of every supported type (multi-row and key-changing updates,
//! MERGE, out-of-order commits) → read → the archive holds exact values → undo → the tables
//! equal their earlier state → uninstall leaves nothing.
//!
//! The CLI runs undo, redo and the settling of interrupted runs through the same path.
//!
//! Every test needs a server: `ROWTRAIL_MSSQL_URL` is an ADO.NET connection string for a login
//! that may create databases (e.g. `Server=tcp:localhost,1433;User ID=sa;Password=…`). Each test
//! creates its own uniquely named database and drops it afterwards. The server's certificate is
//! trusted without verification (test containers use a self-signed one). See README, "SQL
//! Server live tests".

use std::sync::atomic::{AtomicU32, Ordering};

use rowtrail_reader::archive::{Archive, ArchiveOptions, ChangeQuery};
use rowtrail_reader::mover;
use rowtrail_reader::mssql::convert::{select_expr, value_of};
use rowtrail_reader::mssql::{check, install, MssqlClient, MssqlSource, Settings};
use rowtrail_reader::source::Source;
use rowtrail_restore::plan::{self, Mode};
use rowtrail_restore::scope;
use rowtrail_sql::mssql::undo::{order_for_foreign_keys, script, ForeignKey};
use rowtrail_sql::mssql::{Captured, Options};
use rowtrail_sql::staging::Op;
use rowtrail_sql::{Table, Value};
use rowtrail_tests::{kill_at, show, Sandbox};

const IGNORED: &str = "needs ROWTRAIL_MSSQL_URL (a SQL Server to run against)";

static NEXT: AtomicU32 = AtomicU32::new(0);

fn server() -> Settings {
    let url = std::env::var("ROWTRAIL_MSSQL_URL").unwrap_or_else(|_| panic!("{IGNORED}"));
    Settings {
        connection: url,
        password: None,
        trust_server_certificate: true,
        command_timeout: Some(rowtrail_reader::mssql::settings::DEFAULT_COMMAND_TIMEOUT),
    }
}

/// A database of its own, dropped when the test ends (also when it fails).
struct TestDb {
    name: String,
    settings: Settings,
}

impl TestDb {
    fn new() -> Self {
        let name = format!(
            "rowtrail_live_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst),
            rowtrail_reader::now_micros()
        );
        let mut master = MssqlClient::connect(&server()).expect("connect to the server");
        master
            .batch("create database", &format!("CREATE DATABASE [{name}];"))
            .expect("create the test database");
        let mut settings = server();
        settings.connection = format!(
            "{};Database={name}",
            settings.connection.trim_end_matches(';')
        );
        Self { name, settings }
    }

    fn client(&self) -> MssqlClient {
        MssqlClient::connect(&self.settings).expect("connect to the test database")
    }

    fn run(&self, c: &mut MssqlClient, sql: &str) {
        c.batch("test SQL", sql)
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut master) = MssqlClient::connect(&server()) {
            let _ = master.batch(
                "drop database",
                &format!(
                    "ALTER DATABASE [{n}] SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE [{n}];",
                    n = self.name
                ),
            );
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE dbo.AllTypes (
    Id int IDENTITY(1,1) NOT NULL PRIMARY KEY,
    B bit NULL, TI tinyint NULL, SI smallint NULL, I int NULL, BI bigint NULL,
    D decimal(38,10) NULL, N numeric(5,2) NULL, M money NULL, SM smallmoney NULL,
    F float NULL, R real NULL,
    Dt date NULL, T time(7) NULL, DT2 datetime2(7) NULL, DTO datetimeoffset(7) NULL,
    DTm datetime NULL, SDT smalldatetime NULL,
    C char(10) COLLATE Latin1_General_CI_AS NULL, VC varchar(max) NULL, NC nchar(5) NULL, NVC nvarchar(max) NULL,
    Bin binary(4) NULL, VB varbinary(max) NULL, G uniqueidentifier NULL, X xml NULL,
    H hierarchyid NULL, Geo geography NULL, V sql_variant NULL,
    RV rowversion, Comp AS (M * 2) PERSISTED
);
CREATE TABLE dbo.Keyed (K int NOT NULL PRIMARY KEY, V nvarchar(20) NULL);
CREATE TABLE dbo.Heap (A int NULL, B nvarchar(10) NULL);
CREATE TABLE dbo.Parent (Id int NOT NULL PRIMARY KEY, Name nvarchar(20) NULL);
CREATE TABLE dbo.Child (Id int NOT NULL PRIMARY KEY, ParentId int NOT NULL REFERENCES dbo.Parent (Id));
";

const TABLES: [&str; 5] = [
    "dbo.AllTypes",
    "dbo.Keyed",
    "dbo.Heap",
    "dbo.Parent",
    "dbo.Child",
];

const SEED: &str = "
INSERT INTO dbo.Keyed (K, V) VALUES (1, N'one'), (2, N'two'), (3, N'three');
INSERT INTO dbo.Heap (A, B) VALUES (1, N'x'), (1, N'x'), (2, N'y');
INSERT INTO dbo.Parent (Id, Name) VALUES (1, N'p1'), (2, N'p2');
INSERT INTO dbo.Child (Id, ParentId) VALUES (10, 1), (11, 2);
INSERT INTO dbo.AllTypes (B, I, NVC) VALUES (0, 1, N'seed');
";

/// One row of every type at its edges.
const EDGES: &str = "
INSERT INTO dbo.AllTypes (B, TI, SI, I, BI, D, N, M, SM, F, R, Dt, T, DT2, DTO, DTm, SDT, C, VC, NC, NVC, Bin, VB, G, X, H, Geo, V)
VALUES (1, 255, -32768, -2147483648, 9223372036854775807,
    CAST('-1234567890123456789012345678.0123456789' AS decimal(38,10)), 999.99,
    -922337203685477.5808, 214748.3647,
    CAST(0.1 AS float), CAST(0.1 AS real),
    '0001-01-01', '23:59:59.9999999', '9999-12-31T23:59:59.9999999', '2024-03-11T05:00:00.5000000+05:30',
    '1753-01-01T00:00:00.003', '2079-06-06T23:59:00',
    'ab', REPLICATE(CONVERT(varchar(max), 'v'), 10000), N'é ', REPLICATE(CONVERT(nvarchar(max), N'😀'), 5000),
    0x00FF0001, 0x, '00112233-4455-6677-8899-AABBCCDDEEFF', N'<a b=\"1\">é</a>',
    hierarchyid::Parse('/1/2/'), geography::Point(47.6, -122.3, 4326), CAST(12.5 AS money));
";

/// The DML whose undo the round trip checks.
const CHANGES: &str = "
UPDATE dbo.AllTypes SET NVC = N'changed', M = M + 1 WHERE Id = 1;
UPDATE dbo.Keyed SET V = V + N'!';                              -- multi-row, key kept: U pairs
UPDATE dbo.Keyed SET K = K + 100 WHERE K IN (1, 2);             -- multi-row key change: op K
UPDATE dbo.Keyed SET K = 30 WHERE K = 3;                        -- one-row key change: a U pair
MERGE dbo.Keyed AS t USING (VALUES (30, N'merged'), (7, N'new')) AS s (K, V) ON t.K = s.K
    WHEN MATCHED THEN UPDATE SET V = s.V
    WHEN NOT MATCHED BY TARGET THEN INSERT (K, V) VALUES (s.K, s.V)
    WHEN NOT MATCHED BY SOURCE AND t.K = 101 THEN DELETE;
DELETE FROM dbo.Heap WHERE A = 2;
UPDATE TOP (1) dbo.Heap SET B = N'z' WHERE A = 1;
DELETE FROM dbo.Child WHERE Id = 11;
DELETE FROM dbo.Parent WHERE Id = 2;
INSERT INTO dbo.Parent (Id, Name) VALUES (3, N'p3');
INSERT INTO dbo.Child (Id, ParentId) VALUES (12, 3);
DELETE FROM dbo.AllTypes WHERE Id = 2;
";

/// The rows of `t`, read exactly, in a stable order; server-assigned rowversions left out.
fn contents(c: &mut MssqlClient, t: &Table) -> Vec<Vec<Value>> {
    let captured = Captured::new(t).unwrap();
    let cols: Vec<String> = captured
        .table
        .columns
        .iter()
        .zip(&captured.staging_types)
        .map(|(col, ty)| select_expr(col, ty))
        .collect();
    let sql = format!("SELECT {} FROM {}", cols.join(", "), captured.source());
    let mut rows: Vec<Vec<Value>> = c
        .query("read a table", &sql, &[])
        .unwrap()
        .into_iter()
        .map(|r| {
            r.into_iter()
                .zip(&captured.table.columns)
                .map(|(cell, col)| {
                    if col.rowversion {
                        Value::Null
                    } else {
                        value_of(cell).unwrap()
                    }
                })
                .collect()
        })
        .collect();
    rows.sort_by_key(|r| format!("{r:?}"));
    rows
}

fn archive(dir: &tempfile::TempDir) -> Archive {
    Archive::open(&dir.path().join("archive.db"), &ArchiveOptions::default()).unwrap()
}

fn options() -> Options {
    Options::default()
}

#[test]
#[ignore = "needs ROWTRAIL_MSSQL_URL (a SQL Server to run against)"]
fn capture_read_undo_uninstall_round_trip() {
    let db = TestDb::new();
    let mut c = db.client();
    db.run(&mut c, SCHEMA);
    db.run(&mut c, SEED);
    let names: Vec<String> = TABLES.iter().map(|s| s.to_string()).collect();
    let tables = install::tables_to_capture(&mut c, Some(&names)).unwrap();
    install::install(&mut c, &tables, &options(), &mut |_, _| {}).unwrap();
    // Capture is idempotent: a second install changes nothing.
    install::install(&mut c, &tables, &options(), &mut |_, _| {}).unwrap();
    for o in check::observe(&mut c).unwrap() {
        assert_eq!(check::drift(&o).unwrap(), vec![], "{}", o.captured.name);
    }
    db.run(&mut c, EDGES);
    let before: Vec<_> = tables.iter().map(|t| contents(&mut c, t)).collect();

    // The edge values reach the archive exactly.
    let dir = tempfile::tempdir().unwrap();
    let mut arch = archive(&dir);
    let mut source = MssqlSource::open(&db.settings).unwrap();
    mover::drain(&mut source, &mut arch, 7).unwrap();
    assert_eq!(source.staged_count().unwrap(), 0, "staging is drained");
    let id = source.info().incarnation.clone();
    let archived = arch
        .changes(&ChangeQuery {
            incarnation: Some(id.clone()),
            ..ChangeQuery::default()
        })
        .unwrap();
    let edge = archived
        .iter()
        .rev()
        .find(|ch| ch.table.name.name.as_str() == "AllTypes" && ch.op == Op::Insert)
        .and_then(|ch| ch.after.clone())
        .unwrap();
    let expect = |col: &str| {
        let i = tables[0]
            .columns
            .iter()
            .position(|c| c.name.as_str() == col)
            .unwrap();
        edge[i].clone()
    };
    assert_eq!(expect("BI"), Value::Integer(i64::MAX));
    assert_eq!(
        expect("D"),
        Value::Decimal("-1234567890123456789012345678.0123456789".into())
    );
    assert_eq!(expect("N"), Value::Decimal("999.99".into()));
    assert_eq!(expect("M"), Value::Decimal("-922337203685477.5808".into()));
    assert_eq!(expect("SM"), Value::Decimal("214748.3647".into()));
    assert!(expect("F").same(&Value::Real(0.1)));
    assert!(expect("R").same(&Value::Real(f64::from(0.1f32))));
    assert_eq!(expect("Dt"), Value::DateTime("0001-01-01".into()));
    assert_eq!(expect("T"), Value::DateTime("23:59:59.9999999".into()));
    assert_eq!(
        expect("DT2"),
        Value::DateTime("9999-12-31T23:59:59.9999999".into())
    );
    assert_eq!(
        expect("DTO"),
        Value::DateTime("2024-03-11T05:00:00.5000000+05:30".into())
    );
    assert_eq!(
        expect("DTm"),
        Value::DateTime("1753-01-01T00:00:00.003".into())
    );
    assert_eq!(expect("SDT"), Value::DateTime("2079-06-06T23:59:00".into()));
    assert_eq!(expect("C"), Value::text("ab        "));
    assert_eq!(expect("NC"), Value::text("é    "));
    assert_eq!(expect("NVC"), Value::text(&"😀".repeat(5000)));
    assert_eq!(expect("Bin"), Value::Blob(vec![0, 0xff, 0, 1]));
    assert_eq!(expect("VB"), Value::Blob(vec![]));
    assert_eq!(
        expect("G").to_string(),
        "00112233-4455-6677-8899-aabbccddeeff"
    );
    assert_eq!(expect("X"), Value::text("<a b=\"1\">é</a>"));
    // A sql_variant keeps its base type (issue 15, item 12).
    match expect("V") {
        Value::Variant(v) => assert_eq!(
            (v.base_type.as_str(), v.value.clone()),
            ("money", Value::Decimal("12.5000".into()))
        ),
        other => panic!("V archived without its base type: {other:?}"),
    }
    assert!(matches!(expect("Geo"), Value::Blob(b) if !b.is_empty()));
    let last_before = archived.last().map_or(0, |ch| ch.id);

    // Change everything, read, and undo every change made since.
    db.run(&mut c, CHANGES);
    mover::drain(&mut source, &mut arch, 5).unwrap();
    let sc = scope::Scope {
        after_change: Some(last_before),
        ..Default::default()
    };
    let targets = scope::select(&arch, &id, &sc).unwrap();
    assert!(targets.len() >= 20, "{} changes", targets.len());
    let fks = [ForeignKey {
        child: tables[4].name.clone(),
        parent: tables[3].name.clone(),
        child_columns: vec![],
        parent_columns: vec![],
    }];
    fidelity::undo_after(&db, &mut c, &arch, &source, last_before, &fks);
    let after: Vec<_> = tables.iter().map(|t| contents(&mut c, t)).collect();
    assert_eq!(after, before, "undo restores every table exactly");

    // The undo's own writes are captured like any others.
    mover::drain(&mut source, &mut arch, 100).unwrap();
    drop(source);
    install::uninstall(&mut c, None, false, &options(), &mut |_, _| {}).unwrap();
    let left = c
        .query(
            "what is left",
            "SELECT COUNT(*) FROM sys.objects WHERE name LIKE N'rowtrail[_]%' OR schema_id = SCHEMA_ID(N'rowtrail')",
            &[],
        )
        .unwrap();
    assert_eq!(
        left[0].get::<i32, _>(0),
        Some(0),
        "uninstall leaves no object"
    );
    let schema = c
        .query(
            "schema",
            "SELECT COUNT(*) FROM sys.schemas WHERE name = N'rowtrail'",
            &[],
        )
        .unwrap();
    assert_eq!(
        schema[0].get::<i32, _>(0),
        Some(0),
        "uninstall leaves no schema"
    );
}

#[test]
#[ignore = "needs ROWTRAIL_MSSQL_URL (a SQL Server to run against)"]
fn out_of_order_commits_lose_nothing_and_delete_only_what_was_copied() {
    let db = TestDb::new();
    let mut c = db.client();
    db.run(
        &mut c,
        "CREATE TABLE dbo.Keyed (K int NOT NULL PRIMARY KEY, V nvarchar(20) NULL);",
    );
    let tables = install::tables_to_capture(&mut c, Some(&["dbo.Keyed".to_string()])).unwrap();
    install::install(&mut c, &tables, &options(), &mut |_, _| {}).unwrap();
    let mut slow = db.client();
    // The slow transaction takes the lower sequence number and commits last.
    db.run(
        &mut slow,
        "BEGIN TRANSACTION; INSERT INTO dbo.Keyed (K, V) VALUES (1, N'slow');",
    );
    db.run(&mut c, "INSERT INTO dbo.Keyed (K, V) VALUES (2, N'fast');");
    let dir = tempfile::tempdir().unwrap();
    let mut arch = archive(&dir);
    let mut source = MssqlSource::open(&db.settings).unwrap();
    let first = mover::drain(&mut source, &mut arch, 100).unwrap();
    assert_eq!(
        first.archived, 1,
        "READPAST skips the uncommitted row instead of waiting"
    );
    db.run(&mut slow, "COMMIT TRANSACTION;");
    let second = mover::drain(&mut source, &mut arch, 100).unwrap();
    assert_eq!(second.archived, 1, "the late commit is read next");
    assert_eq!(source.staged_count().unwrap(), 0);
}

#[test]
#[ignore = "needs ROWTRAIL_MSSQL_URL (a SQL Server to run against)"]
fn check_reports_drift_and_install_stops_at_the_failing_batch() {
    let db = TestDb::new();
    let mut c = db.client();
    db.run(
        &mut c,
        "CREATE TABLE dbo.Keyed (K int NOT NULL PRIMARY KEY, V nvarchar(20) NULL);",
    );
    let tables = install::tables_to_capture(&mut c, Some(&["dbo.Keyed".to_string()])).unwrap();
    let d = install::install(&mut c, &tables, &options(), &mut |_, _| {}).unwrap();
    let trigger = d.tables[0].trigger_name();
    db.run(&mut c, &format!("DISABLE TRIGGER {trigger} ON dbo.Keyed;"));
    db.run(&mut c, "ALTER TABLE dbo.Keyed ADD Extra int NULL;");
    let found: Vec<String> = check::observe(&mut c)
        .unwrap()
        .iter()
        .flat_map(|o| check::drift(o).unwrap())
        .map(|f| f.problem)
        .collect();
    assert!(found.iter().any(|p| p.contains("disabled")), "{found:?}");
    assert!(
        found.iter().any(|p| p.contains("not captured: Extra")),
        "{found:?}"
    );
    // Installing the changed table over the old definition stops with the server's message.
    let changed = install::tables_to_capture(&mut c, Some(&["dbo.Keyed".to_string()])).unwrap();
    let err = install::install(&mut c, &changed, &options(), &mut |_, _| {}).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("already captured with another definition") && text.contains("batch"),
        "{text}"
    );
    // The heartbeat answers on a fresh connection.
    let h = MssqlSource::health(&db.settings).unwrap();
    assert_eq!(h.staged, 0);
}

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

/// The `rowtrail` CLI on a test database: a sandbox whose config names a SQL Server source
/// (the connection, password included, comes from the environment as it may).
struct Cli<'a> {
    db: &'a TestDb,
    sb: Sandbox,
}

impl<'a> Cli<'a> {
    fn new(db: &'a TestDb) -> Self {
        let sb = Sandbox::new(BIN);
        std::fs::write(
            sb.config(),
            "[source]\nengine = \"mssql\"\ntrust_server_certificate = true\n\n[archive]\npath = \"trail.db\"\n",
        )
        .unwrap();
        Self { db, sb }
    }

    fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.sb.cmd(args);
        c.env("ROWTRAIL_SOURCE_CONNECTION", &self.db.settings.connection);
        c.env_remove("ROWTRAIL_SOURCE_PASSWORD");
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).output().expect("run rowtrail")
    }

    /// Runs, requires success, returns stdout then stderr.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rowtrail {args:?} failed:\n{}",
            show(&out)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Runs, requires success, returns stdout only.
    fn stdout(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rowtrail {args:?} failed:\n{}",
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The newest archived change's id, and its transaction.
    fn newest(&self) -> (i64, Option<i64>) {
        let a = Archive::open_read_only(&self.sb.archive()).unwrap();
        let c = a
            .changes(&ChangeQuery {
                newest_first: true,
                limit: Some(1),
                ..ChangeQuery::default()
            })
            .unwrap()
            .remove(0);
        let tx = match c.tx {
            Some(rowtrail_sql::Value::Integer(t)) => Some(t),
            _ => None,
        };
        (c.id, tx)
    }
}

/// The number in `text` right after `marker`.
fn number_after(text: &str, marker: &str) -> i64 {
    let rest = text
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("{marker:?} not in:\n{text}"));
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {marker:?} in:\n{text}"))
}

#[test]
#[ignore = "needs ROWTRAIL_MSSQL_URL (a SQL Server to run against)"]
fn undo_apply_through_the_cli_restores_links_its_writes_and_settles_interrupted_runs() {
    let db = TestDb::new();
    let mut c = db.client();
    db.run(&mut c, SCHEMA);
    db.run(&mut c, SEED);
    let cli = Cli::new(&db);
    cli.ok(&["sql", "install", "--tables", &TABLES.join(",")]);
    let names: Vec<String> = TABLES.iter().map(|s| s.to_string()).collect();
    let tables = install::tables_to_capture(&mut c, Some(&names)).unwrap();
    db.run(&mut c, EDGES);
    cli.ok(&["read", "--quiet"]);
    let (last_before, _) = cli.newest();
    let before: Vec<_> = tables.iter().map(|t| contents(&mut c, t)).collect();
    db.run(&mut c, CHANGES);
    cli.ok(&["read", "--quiet"]);
    let changed: Vec<_> = tables.iter().map(|t| contents(&mut c, t)).collect();
    let after = last_before.to_string();

    // The dry run and the script change nothing; the script is the T-SQL `--apply` sends.
    let dry = cli.ok(&["undo", "--after-change", &after]);
    assert!(
        dry.contains("SET XACT_ABORT ON;")
            && dry.contains("sqlcmd -b -I")
            && dry.contains("dry run: nothing was changed"),
        "{dry}"
    );
    let script = cli.ok(&["undo", "--after-change", &after, "--script-only"]);
    assert!(
        script.contains("\nGO\n") && !script.contains("sqlite3"),
        "{script}"
    );
    let now: Vec<_> = tables.iter().map(|t| contents(&mut c, t)).collect();
    assert_eq!(now, changed, "a dry run changes nothing");

    // Apply: the tables equal their earlier state, and the writes carry the transaction id.
    let applied = cli.ok(&["undo", "--after-change", &after, "--apply"]);
    assert!(applied.contains("undo run 1 applied:"), "{applied}");
    let tx = number_after(&applied, "carry the source transaction id ");
    let now: Vec<_> = tables.iter().map(|t| contents(&mut c, t)).collect();
    assert_eq!(now, before, "undo restores every table exactly");
    cli.ok(&["read", "--quiet"]);
    let audit = cli.stdout(&["audit", "--tx", &tx.to_string(), "--format", "csv"]);
    let rows: Vec<&str> = audit.lines().skip(1).collect();
    assert!(
        !rows.is_empty() && rows.iter().all(|l| l.contains(&format!(",{tx},"))),
        "`audit --tx` lists the undo's writes by its transaction id:\n{audit}"
    );
    let (_, newest_tx) = cli.newest();
    assert_eq!(
        newest_tx,
        Some(tx),
        "the newest archived change is the undo's"
    );
    assert!(cli.ok(&["undo", "--list"]).contains(&tx.to_string()));
    // A second undo selects neither the undone changes nor the undo's own writes.
    let again = cli.ok(&["undo", "--after-change", &after]);
    assert!(again.contains("nothing to undo"), "{again}");
    let own = cli.ok(&["undo", "--tx", &tx.to_string()]);
    assert!(own.contains("nothing to undo"), "{own}");
    assert!(cli.ok(&["verify"]).contains("archive verified"));

    // Redo puts the changes back, as a run of its own.
    cli.ok(&["redo", "--run", "1", "--apply"]);
    let now: Vec<_> = tables.iter().map(|t| contents(&mut c, t)).collect();
    assert_eq!(now, changed, "redo re-applies every change exactly");
    cli.ok(&["read", "--quiet"]);
    assert!(cli.ok(&["undo", "--list"]).contains("redone"));

    // Killed before the source commit: the server rolls the transaction back when the
    // connection goes; the next run settles it as abandoned and applies anew.
    db.run(&mut c, "INSERT INTO dbo.Keyed (K, V) VALUES (500, N'x');");
    cli.ok(&["read", "--quiet"]);
    let (id, _) = cli.newest();
    let one = ["undo", "--change", &id.to_string(), "--apply"];
    kill_at(cli.cmd(&one), "undo-before-source-commit");
    let out = cli.ok(&one);
    assert!(
        out.contains("it never committed (abandoned)") && out.contains("applied: 1 applied"),
        "{out}"
    );
    let left = c
        .query("count", "SELECT COUNT(*) FROM dbo.Keyed WHERE K = 500", &[])
        .unwrap();
    assert_eq!(left[0].get::<i32, _>(0), Some(0));

    // Killed after it: the run is settled from its write, still in staging, as applied.
    db.run(&mut c, "INSERT INTO dbo.Keyed (K, V) VALUES (501, N'y');");
    cli.ok(&["read", "--quiet"]);
    let (id, _) = cli.newest();
    let one = ["undo", "--change", &id.to_string(), "--apply"];
    kill_at(cli.cmd(&one), "undo-after-source-commit");
    let out = cli.ok(&one);
    assert!(
        out.contains("it had committed (applied)") && out.contains("nothing to undo"),
        "{out}"
    );
    let left = c
        .query("count", "SELECT COUNT(*) FROM dbo.Keyed WHERE K = 501", &[])
        .unwrap();
    assert_eq!(left[0].get::<i32, _>(0), Some(0));
    cli.ok(&["read", "--quiet"]);
    assert!(cli.ok(&["verify"]).contains("archive verified"));
}

#[test]
#[ignore = "needs ROWTRAIL_MSSQL_URL (a SQL Server to run against)"]
fn a_guard_that_fails_at_apply_time_rolls_back_and_exits_3() {
    let db = TestDb::new();
    let mut c = db.client();
    db.run(
        &mut c,
        "CREATE TABLE dbo.Keyed (K int NOT NULL PRIMARY KEY, V nvarchar(20) NULL);",
    );
    let cli = Cli::new(&db);
    cli.ok(&["sql", "install", "--tables", "dbo.Keyed"]);
    db.run(
        &mut c,
        "INSERT INTO dbo.Keyed (K, V) VALUES (1, N'a'), (2, N'b'); UPDATE dbo.Keyed SET V = N'c';",
    );
    cli.ok(&["read", "--quiet"]);
    // A write the archive has not seen: the guard of K = 2's undo fails at apply time.
    db.run(&mut c, "UPDATE dbo.Keyed SET V = N'z' WHERE K = 2;");
    let snapshot = |c: &mut MssqlClient| {
        c.query("rows", "SELECT K, V FROM dbo.Keyed ORDER BY K", &[])
            .unwrap()
            .iter()
            .map(|r| format!("{:?}|{:?}", r.get::<i32, _>(0), r.get::<&str, _>(1)))
            .collect::<Vec<_>>()
    };
    let before = snapshot(&mut c);
    let out = cli.run(&["undo", "--last", "2", "--apply"]);
    let text = show(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("undo refused") && text.contains("step ") && text.contains("dbo.Keyed"),
        "names the step and its change:\n{text}"
    );
    assert_eq!(snapshot(&mut c), before, "nothing changed");
    assert!(cli.ok(&["undo", "--list"]).contains("abandoned"));
}

/// Regression tests of issue 15 (SQL Server fidelity): each would have caught its defect.
#[path = "mssql_live/fidelity.rs"]
mod fidelity;

/// Regression tests of issue 15's undo items (large undos and the command timeout, sql_variant
/// base types, transaction ids reused over time).
#[path = "mssql_live/undo_fidelity.rs"]
mod undo_fidelity;

/// Issue 15's pairing of update images (key permutations recorded whole).
#[path = "mssql_live/capture_pairing.rs"]
mod capture_pairing;

/// Issue 16's baseline and cut on SQL Server, and issue 15's quarantine of undecodable rows.
#[path = "mssql_live/standby.rs"]
mod standby;
