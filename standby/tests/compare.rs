//! Compare by key-range checksums: equal tables cost no row read, a difference deep inside a
//! large table is found by reading only the rows around it, and every kind of difference
//! (missing, extra, changed, NULL keys, rows without a key, many equal rows) is listed.

use std::path::Path;

use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::source::Source;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_standby::baseline::{self, Silent};
use rowtrail_standby::compare::{self, Comparison, LEAF_ROWS};
use rowtrail_standby::replica::{self, CreateOptions, Replica};
use rusqlite::Connection;

const ROWS: i64 = 60_000;

struct Setup {
    source: SqliteSource,
    archive: Archive,
    app: Connection,
    replica: std::path::PathBuf,
}

fn setup(dir: &Path) -> Setup {
    let source_path = dir.join("source.db");
    let app = Connection::open(&source_path).unwrap();
    app.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT NOT NULL, v REAL, b BLOB);
         CREATE TABLE pairs (a TEXT, n INTEGER, note TEXT, PRIMARY KEY (a, n));
         CREATE TABLE dup (x, y);
         CREATE TABLE ci (k TEXT COLLATE NOCASE PRIMARY KEY, v INTEGER) WITHOUT ROWID;
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < {ROWS})
         INSERT INTO big SELECT i, 'name ' || i, i * 0.5, randomblob(8) FROM k;
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 9000)
         INSERT INTO pairs SELECT CASE WHEN i % 500 = 0 THEN NULL ELSE 'a' || (i % 30) END, i, 'n' FROM k;
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 5000)
         INSERT INTO dup SELECT 1, 'same' FROM k;
         INSERT INTO dup VALUES (NULL, NULL), (2, x'00');
         WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 6000)
         INSERT INTO ci SELECT CASE i % 3 WHEN 0 THEN 'k' WHEN 1 THEN 'K' ELSE '_' END || (i * 7919 % 6007), i FROM k;"
    ))
    .unwrap();
    let survey = SqliteSource::survey(&source_path, None).unwrap();
    SqliteSource::install(&source_path, &survey.tables, "test").unwrap();
    let mut source = SqliteSource::open(&source_path).unwrap();
    let mut archive = Archive::open(&dir.join("trail.db"), &ArchiveOptions::default()).unwrap();
    baseline::take(&mut source, &mut archive, None, &mut Silent).unwrap();
    mover::drain(&mut source as &mut dyn Source, &mut archive, 1_000).unwrap();
    let replica = dir.join("replica.db");
    replica::create(
        &replica,
        &archive,
        &CreateOptions::default(),
        &mut |_, _| {},
    )
    .unwrap();
    Setup {
        source,
        archive,
        app,
        replica,
    }
}

fn run(s: &mut Setup) -> Comparison {
    let r = Replica::open(&s.replica).unwrap();
    compare::compare(&r, &mut s.source, &s.archive).unwrap()
}

fn table<'a>(c: &'a Comparison, name: &str) -> &'a compare::TableComparison {
    c.tables.iter().find(|t| t.table == name).unwrap()
}

fn keys(rows: &[rowtrail_reader::archive::BaselineRow], i: usize) -> Vec<String> {
    rows.iter().map(|r| format!("{:?}", r.1[i])).collect()
}

#[test]
fn equal_tables_are_compared_by_checksum_without_reading_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(dir.path());
    let c = run(&mut s);
    assert!(!c.differs(), "{c:?}");
    for t in &c.tables {
        assert_eq!(t.rows_read, 0, "{}: no row read one by one", t.table);
        assert_eq!(t.ranges_summed, 2, "{}: one checksum per side", t.table);
    }
    assert_eq!(table(&c, "big").source_rows, ROWS as u64);
    assert_eq!(table(&c, "big").replica_rows, ROWS as u64);
}

#[test]
fn a_difference_deep_inside_a_large_table_is_found_reading_only_the_rows_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(dir.path());
    let rep = Connection::open(&s.replica).unwrap();
    rep.execute_batch(
        "UPDATE big SET v = v + 1 WHERE id = 41234;
         DELETE FROM big WHERE id = 7777;
         INSERT INTO big VALUES (70001, 'extra', NULL, NULL);
         UPDATE pairs SET note = 'forged' WHERE a IS NULL AND n = 4500;
         DELETE FROM pairs WHERE a = 'a7' AND n = 8227;
         DELETE FROM dup WHERE rowid IN (SELECT rowid FROM dup WHERE x = 1 LIMIT 1);
         INSERT INTO dup VALUES (NULL, NULL);
         UPDATE ci SET v = -1 WHERE k = 'K' || (4000 * 7919 % 6007);",
    )
    .unwrap();
    drop(rep);
    let c = run(&mut s);
    let big = table(&c, "big");
    assert_eq!(keys(&big.different, 0), ["Integer(41234)"], "{big:?}");
    assert_eq!(keys(&big.missing, 0), ["Integer(7777)"]);
    assert_eq!(keys(&big.extra, 0), ["Integer(70001)"]);
    // Three leaves at most, each read on both sides: far fewer than the table's rows.
    assert!(
        big.rows_read <= 3 * 2 * LEAF_ROWS,
        "{} rows read of {} on each side",
        big.rows_read,
        ROWS
    );
    let pairs = table(&c, "pairs");
    assert_eq!(keys(&pairs.different, 1), ["Integer(4500)"], "{pairs:?}");
    assert_eq!(keys(&pairs.missing, 1), ["Integer(8227)"]);
    assert!(pairs.extra.is_empty());
    let dup = table(&c, "dup");
    assert_eq!(dup.missing.len(), 1, "one of 5,000 equal rows: {dup:?}");
    assert_eq!(
        dup.missing[0].1[1],
        rowtrail_sql::Value::Text(b"same".to_vec())
    );
    assert_eq!(dup.extra.len(), 1);
    assert_eq!(dup.extra[0].1[0], rowtrail_sql::Value::Null);
    // A key the source orders NOCASE: compared in BINARY order on both sides, no false pairs.
    let ci = table(&c, "ci");
    assert_eq!(ci.different.len(), 1, "{ci:?}");
    assert!(ci.missing.is_empty() && ci.extra.is_empty(), "{ci:?}");
    assert!(
        ci.rows_read <= 2 * LEAF_ROWS,
        "narrowed to one range, not read whole: {} rows read",
        ci.rows_read
    );
    // Repair makes the replica equal; the next comparison reads no row.
    let mut r = Replica::open(&s.replica).unwrap();
    compare::repair(&mut r, &c).unwrap();
    drop(r);
    let c = run(&mut s);
    assert!(!c.differs(), "{c:?}");
    assert!(c.tables.iter().all(|t| t.rows_read == 0), "{c:?}");
}

#[test]
fn a_row_changing_at_the_source_is_not_a_difference() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = setup(dir.path());
    s.app
        .execute_batch("UPDATE big SET name = 'moved on' WHERE id = 30000")
        .unwrap();
    let c = run(&mut s);
    let big = table(&c, "big");
    assert!(!c.differs(), "{c:?}");
    assert_eq!(big.changing, 1);
}

/// Random differences injected into a replica of random tables (a key, a key over two columns
/// with NULLs in it, no key): compare reports each changed key exactly once, as missing, extra
/// or different (a value of another type included), and after repair the replica is equal.
#[test]
fn every_injected_difference_is_found_and_repaired() {
    for seed in 0..8u64 {
        let dir = tempfile::tempdir().unwrap();
        let source_path = dir.path().join("source.db");
        let app = Connection::open(&source_path).unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        let n = rng.i64(3_000..9_000);
        app.execute_batch(&format!(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE k (id INTEGER PRIMARY KEY, a TEXT, b REAL);
             CREATE TABLE p (x TEXT, y INTEGER, v BLOB, PRIMARY KEY (x, y));
             CREATE TABLE f (u, w);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
             INSERT INTO k SELECT i * 3, 'a' || i, i / 7.0 FROM s;
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
             INSERT INTO p SELECT CASE WHEN i % 97 = 0 THEN NULL ELSE 'x' || (i % 41) END, i, randomblob(4) FROM s;
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})
             INSERT INTO f SELECT i % 50, CASE WHEN i % 3 = 0 THEN NULL ELSE i % 7 END FROM s;"
        ))
        .unwrap();
        let survey = SqliteSource::survey(&source_path, None).unwrap();
        SqliteSource::install(&source_path, &survey.tables, "test").unwrap();
        let mut source = SqliteSource::open(&source_path).unwrap();
        let mut archive =
            Archive::open(&dir.path().join("trail.db"), &ArchiveOptions::default()).unwrap();
        baseline::take(&mut source, &mut archive, None, &mut Silent).unwrap();
        let replica_path = dir.path().join("replica.db");
        replica::create(
            &replica_path,
            &archive,
            &CreateOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
        // Inject: (table, what, key) for keyed tables; counts for the keyless one.
        let rep = Connection::open(&replica_path).unwrap();
        let mut want: Vec<(String, &str, String)> = Vec::new();
        let mut touched = std::collections::HashSet::new();
        for _ in 0..rng.usize(1..12) {
            let i = rng.i64(1..=n);
            if !touched.insert(i) {
                continue;
            }
            match rng.u8(0..7) {
                0 => {
                    rep.execute("DELETE FROM k WHERE id = ?1", [i * 3]).unwrap();
                    want.push(("k".into(), "missing", format!("Integer({})", i * 3)));
                }
                1 => {
                    rep.execute("INSERT INTO k VALUES (?1, 'extra', NULL)", [i * 3 + 1])
                        .unwrap();
                    want.push(("k".into(), "extra", format!("Integer({})", i * 3 + 1)));
                }
                2 => {
                    rep.execute("UPDATE k SET b = b + 1 WHERE id = ?1", [i * 3])
                        .unwrap();
                    want.push(("k".into(), "different", format!("Integer({})", i * 3)));
                }
                3 => {
                    // Same text, another type: a blob where the source has text.
                    rep.execute("UPDATE k SET a = CAST(a AS BLOB) WHERE id = ?1", [i * 3])
                        .unwrap();
                    want.push(("k".into(), "different", format!("Integer({})", i * 3)));
                }
                4 => {
                    rep.execute("UPDATE p SET v = x'00' WHERE y = ?1", [i])
                        .unwrap();
                    want.push(("p".into(), "different", format!("Integer({i})")));
                }
                5 => {
                    rep.execute("DELETE FROM p WHERE y = ?1", [i]).unwrap();
                    want.push(("p".into(), "missing", format!("Integer({i})")));
                }
                _ => {
                    rep.execute(
                        "DELETE FROM f WHERE rowid IN (SELECT rowid FROM f WHERE u = ?1 LIMIT 1)",
                        [i % 50],
                    )
                    .unwrap();
                    want.push(("f".into(), "missing", String::new()));
                }
            }
        }
        drop(rep);
        let c = run(&mut Setup {
            source,
            archive,
            app,
            replica: replica_path.clone(),
        });
        let mut got: Vec<(String, &str, String)> = Vec::new();
        for t in &c.tables {
            let key = |r: &rowtrail_reader::archive::BaselineRow| match t.table.as_str() {
                "k" => format!("{:?}", r.1[0]),
                "p" => format!("{:?}", r.1[1]),
                _ => String::new(),
            };
            for (what, rows) in [
                ("missing", &t.missing),
                ("extra", &t.extra),
                ("different", &t.different),
            ] {
                got.extend(rows.iter().map(|r| (t.table.clone(), what, key(r))));
            }
        }
        want.sort();
        got.sort();
        assert_eq!(got, want, "seed {seed}");
        let mut r = Replica::open(&replica_path).unwrap();
        compare::repair(&mut r, &c).unwrap();
        drop(r);
        let mut source = SqliteSource::open(&source_path).unwrap();
        let archive = Archive::open_read_only(&dir.path().join("trail.db")).unwrap();
        let r = Replica::open(&replica_path).unwrap();
        let again = compare::compare(&r, &mut source, &archive).unwrap();
        assert!(!again.differs(), "seed {seed}: repaired: {again:?}");
    }
}
