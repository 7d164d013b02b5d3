//! Capture on SQLite, end to end within one process: install, DML of every kind, drain, and
//! the archive holds exactly what happened, value for value and bit for bit.

use std::path::Path;

use rowtrail_reader::archive::{Archive, ArchiveOptions, ArchivedChange, ChangeQuery};
use rowtrail_reader::mover;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_sql::{Ident, TableName, Value};
use rusqlite::Connection;

fn setup(ddl: &str) -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(ddl).unwrap();
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    (dir, conn)
}

fn drain(dir: &Path) -> Vec<ArchivedChange> {
    let mut source = SqliteSource::open(&dir.join("src.db")).unwrap();
    let mut archive = Archive::open(&dir.join("trail.db"), &ArchiveOptions::default()).unwrap();
    mover::drain(&mut source, &mut archive, 7).unwrap();
    assert_eq!(
        rowtrail_reader::source::Source::staged_count(&mut source).unwrap(),
        0
    );
    let report = archive.verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    archive.changes(&ChangeQuery::default()).unwrap()
}

fn summary(c: &ArchivedChange) -> (String, String, Option<Vec<Value>>, Option<Vec<Value>>) {
    (
        c.table.name.name.to_string(),
        c.op.word().to_string(),
        c.before.clone(),
        c.after.clone(),
    )
}

fn same_rows(a: &Option<Vec<Value>>, b: &[Value]) -> bool {
    a.as_ref()
        .is_some_and(|a| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y)))
}

#[test]
fn every_storage_class_round_trips_bit_for_bit() {
    let (dir, conn) = setup("CREATE TABLE v (id INTEGER PRIMARY KEY, x, y REAL, z TEXT, w BLOB);");
    let floats = [
        f64::from_bits(1), // smallest subnormal
        f64::MIN_POSITIVE, // smallest normal
        f64::MAX,
        -f64::MAX,
        -0.0,
        0.1 + 0.2,
        f64::from_bits(0x000f_ffff_ffff_ffff), // largest subnormal
    ];
    let mut expected = Vec::new();
    let mut id = 0;
    let mut add = |x: Value, conn: &Connection| {
        id += 1;
        let to_sql = |v: &Value| -> rusqlite::types::Value {
            match v {
                Value::Null => rusqlite::types::Value::Null,
                Value::Integer(i) => (*i).into(),
                Value::Real(r) => (*r).into(),
                Value::Text(t) => String::from_utf8(t.clone()).unwrap().into(),
                Value::Blob(b) => b.clone().into(),
                _ => unreachable!(),
            }
        };
        conn.execute(
            "INSERT INTO v (id, x) VALUES (?1, ?2)",
            rusqlite::params![id, to_sql(&x)],
        )
        .unwrap();
        expected.push((id, x));
    };
    for v in [
        Value::Null,
        Value::Integer(i64::MIN),
        Value::Integer(i64::MAX),
        Value::Integer(0),
        Value::text(""),
        Value::text("žluťoučký kůň 🐎 \u{0}inside"),
        Value::Blob(vec![0, 0, 255, 0]),
        Value::Blob(vec![]),
    ] {
        add(v, &conn);
    }
    for f in floats {
        add(Value::Real(f), &conn);
    }
    // A REAL column: affinity must not turn anything into something else in staging.
    conn.execute(
        "INSERT INTO v (id, y, z, w) VALUES (1000, 5, 12, 'text in blob column')",
        [],
    )
    .unwrap();
    let changes = drain(dir.path());
    assert_eq!(changes.len(), expected.len() + 1);
    for (c, (id, x)) in changes.iter().zip(&expected) {
        let after = c.after.as_ref().unwrap();
        assert!(after[0].same(&Value::Integer(*id)));
        assert!(after[1].same(x), "value {x:?} archived as {:?}", after[1]);
    }
    // What the source itself holds after affinity is what the archive holds.
    let last = changes.last().unwrap().after.clone().unwrap();
    let held: (f64, String, String) = conn
        .query_row("SELECT y, z, w FROM v WHERE id = 1000", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert!(last[2].same(&Value::Real(held.0)));
    assert!(last[3].same(&Value::text(&held.1)));
    assert!(last[4].same(&Value::text(&held.2)));
}

#[test]
fn multi_row_statements_updates_and_deletes_are_each_recorded() {
    let (dir, conn) = setup(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER);
         INSERT INTO t VALUES (1, 'a', 1);",
    );
    conn.execute_batch(
        "INSERT INTO t (id, name, n) VALUES (2, 'b', 2), (3, 'c', 3);
         UPDATE t SET n = n * 10 WHERE id >= 2;
         DELETE FROM t WHERE id = 1;
         UPDATE t SET id = 30 WHERE id = 3;",
    )
    .unwrap();
    let changes = drain(dir.path());
    let ops: Vec<String> = changes.iter().map(|c| c.op.word().to_string()).collect();
    assert_eq!(
        ops,
        ["insert", "insert", "update", "update", "delete", "update"]
    );
    // The statement time arrives as ISO-8601 UTC with milliseconds, and it is now.
    let recent: String = conn
        .query_row(
            "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-60 seconds')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    for c in &changes {
        let at = c.at.as_deref().unwrap();
        assert_eq!(at.len(), 24, "{at}");
        assert!(
            at.ends_with('Z') && at.as_bytes()[10] == b'T' && at.as_bytes()[19] == b'.',
            "{at}"
        );
        assert!(at > recent.as_str(), "{at} is not within the last minute");
    }
    let seqs: Vec<i64> = changes.iter().map(|c| c.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs out of order: {seqs:?}"
    );
    let i = Value::Integer;
    assert!(same_rows(
        &changes[2].before,
        &[i(2), Value::text("b"), i(2)]
    ));
    assert!(same_rows(
        &changes[2].after,
        &[i(2), Value::text("b"), i(20)]
    ));
    assert!(same_rows(
        &changes[4].before,
        &[i(1), Value::text("a"), i(1)]
    ));
    // The key-changing update keeps both images and is found under either key.
    assert!(same_rows(
        &changes[5].before,
        &[i(3), Value::text("c"), i(30)]
    ));
    assert!(same_rows(
        &changes[5].after,
        &[i(30), Value::text("c"), i(30)]
    ));
    let archive = Archive::open_read_only(&dir.path().join("trail.db")).unwrap();
    let t = TableName::bare(Ident::new("t").unwrap());
    for key in [3, 30] {
        let hist = archive
            .changes(&ChangeQuery {
                table: Some(t.clone()),
                row_key: Some(rowtrail_sql::key::encode_key(&[i(key)])),
                ..Default::default()
            })
            .unwrap();
        assert!(
            hist.iter().any(|c| c.seq == changes[5].seq),
            "key {key} misses the key change"
        );
    }
}

#[test]
fn upsert_and_replace_are_recorded_as_what_happened_to_the_rows() {
    let (dir, conn) = setup(
        "CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INTEGER);
         INSERT INTO u VALUES (1, 'a@x', 1), (2, 'b@x', 2);",
    );
    conn.execute_batch(
        "INSERT INTO u VALUES (1, 'a@x', 5) ON CONFLICT (id) DO UPDATE SET n = excluded.n;
         INSERT OR IGNORE INTO u VALUES (2, 'zzz', 9);
         REPLACE INTO u VALUES (7, 'b@x', 70);
         INSERT OR REPLACE INTO u VALUES (1, 'new@x', 100);",
    )
    .unwrap();
    let changes = drain(dir.path());
    let got: Vec<_> = changes.iter().map(summary).collect();
    let i = Value::Integer;
    let t = Value::text;
    let expect = [
        (
            "update",
            Some(vec![i(1), t("a@x"), i(1)]),
            Some(vec![i(1), t("a@x"), i(5)]),
        ),
        ("delete", Some(vec![i(2), t("b@x"), i(2)]), None),
        ("insert", None, Some(vec![i(7), t("b@x"), i(70)])),
        ("delete", Some(vec![i(1), t("a@x"), i(5)]), None),
        ("insert", None, Some(vec![i(1), t("new@x"), i(100)])),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for (g, e) in got.iter().zip(expect) {
        assert_eq!(g.1, e.0, "{got:#?}");
        assert_eq!(g.2, e.1, "{got:#?}");
        assert_eq!(g.3, e.2, "{got:#?}");
    }
}

#[test]
fn replace_with_recursive_triggers_on_is_not_recorded_twice() {
    let (dir, conn) = setup(
        "CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT UNIQUE);
                             INSERT INTO u VALUES (1, 'a'), (2, 'b');",
    );
    conn.execute_batch("PRAGMA recursive_triggers = ON; REPLACE INTO u VALUES (1, 'b');")
        .unwrap();
    let ops: Vec<String> = drain(dir.path())
        .iter()
        .map(|c| c.op.word().to_string())
        .collect();
    assert_eq!(
        ops,
        ["delete", "delete", "insert"],
        "both colliding rows deleted once each"
    );
}

#[test]
fn tables_without_rowid_and_without_key_are_captured() {
    let (dir, conn) = setup(
        "CREATE TABLE w (a TEXT, b INTEGER, c, PRIMARY KEY (a, b)) WITHOUT ROWID;
         CREATE TABLE k (x, y);",
    );
    conn.execute_batch(
        "INSERT INTO w VALUES ('p', 1, 'one'), ('p', 2, 'two');
         REPLACE INTO w VALUES ('p', 1, 'uno');
         UPDATE w SET b = 3 WHERE b = 2;
         INSERT INTO k VALUES (1, 1), (1, 1);
         DELETE FROM k WHERE rowid = 2;",
    )
    .unwrap();
    let changes = drain(dir.path());
    let got: Vec<(String, String)> = changes
        .iter()
        .map(|c| (c.table.name.name.to_string(), c.op.word().to_string()))
        .collect();
    let want = [
        ("w", "insert"),
        ("w", "insert"),
        ("w", "delete"),
        ("w", "insert"),
        ("w", "update"),
        ("k", "insert"),
        ("k", "insert"),
        ("k", "delete"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1.as_str()), w);
    }
    assert_eq!(
        changes[7].rowid,
        Some(2),
        "the keyless row is identified by its rowid"
    );
}

#[test]
fn hostile_names_simply_work() {
    let names = [
        "we\"ird",
        "sq]uare",
        "it's",
        "with space",
        "new\nline",
        "ünï😀",
        "rowid",
        "GO",
    ];
    let mut ddl = String::new();
    for (i, n) in names.iter().enumerate() {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let cols: Vec<String> = names.iter().map(|c| q(&format!("{c}{i}"))).collect();
        ddl.push_str(&format!(
            "CREATE TABLE {} ({} PRIMARY KEY, {});\n",
            q(n),
            cols[0],
            cols[1..].join(", ")
        ));
    }
    let (dir, conn) = setup(&ddl);
    for n in names {
        let q = format!("\"{}\"", n.replace('"', "\"\""));
        conn.execute(
            &format!("INSERT INTO {q} VALUES (1, 2, 3, 4, 5, 6, 7, 8)"),
            [],
        )
        .unwrap();
        conn.execute(
            &format!(
                "UPDATE {q} SET \"ünï😀{}\" = 'x'",
                names.iter().position(|x| *x == n).unwrap()
            ),
            [],
        )
        .unwrap();
        conn.execute(&format!("DELETE FROM {q}"), []).unwrap();
    }
    let changes = drain(dir.path());
    assert_eq!(changes.len(), names.len() * 3);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(changes[i * 3].table.name.name.as_str(), *n);
    }
}
