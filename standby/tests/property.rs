//! Property: random workloads over several tables (inserts, updates with key changes, deletes,
//! REPLACE and UPSERT, multi-row statements, foreign-key cascades, NULLs, blobs, reals), with the
//! source's state noted after each drain: a replica built after the last drain equals the
//! source row for row, and a rebuild as of each noted time, and as of the seq of the cut the
//! drain recorded, equals the state noted then.
//!
//! `ROWTRAIL_PROPERTY_SEEDS=N` runs N seeds (default 200).

use std::path::Path;

use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::source::Source;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_standby::as_of::AsOf;
use rowtrail_standby::baseline::{self, Silent};
use rowtrail_standby::replica::{self, archive_time, CreateOptions};
use rusqlite::Connection;

const DDL: &str = "
    PRAGMA journal_mode = WAL;
    CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT UNIQUE, r REAL, b BLOB);
    CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id) ON DELETE CASCADE, v);
    CREATE TABLE free (a, b);
    CREATE TABLE wr (k TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;
    INSERT INTO parent VALUES (1, 'one', 1.5, x'01'), (2, 'two', NULL, NULL), (3, NULL, -0.25, x'');
    INSERT INTO child VALUES (1, 1, 'a'), (2, 1, 2), (3, 2, NULL);
    INSERT INTO free VALUES (1, 1), (1, 1), (NULL, 'x');
    INSERT INTO wr VALUES ('k1', 1), ('k2', 2);
";

const TABLES: [(&str, &str); 4] = [
    ("parent", "id"),
    ("child", "id"),
    ("free", "a, b"),
    ("wr", "k"),
];

fn state(c: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    for (t, order) in TABLES {
        let mut s = c
            .prepare(&format!("SELECT * FROM {t} ORDER BY {order}"))
            .unwrap();
        let n = s.column_count();
        let rows = s
            .query_map([], |r| {
                let mut line = t.to_string();
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

fn statement(rng: &mut fastrand::Rng) -> String {
    let id = rng.i64(1..30);
    let name = if rng.u8(0..4) == 0 {
        "NULL".to_string()
    } else {
        format!("'n{}'", rng.u8(0..12))
    };
    match rng.u8(0..14) {
        0 => format!("INSERT OR REPLACE INTO parent VALUES ({id}, {name}, {}.25, x'{:02x}')", rng.i16(..), rng.u8(..)),
        1 => format!("INSERT INTO parent (id, name, r) VALUES ({id}, {name}, NULL) ON CONFLICT (id) DO UPDATE SET r = coalesce(r, 0) + 1"),
        2 => format!("UPDATE OR IGNORE parent SET id = id + 100 WHERE id = {id}"),
        3 => "UPDATE parent SET r = r * 2, b = NULL WHERE id % 2 = 0".to_string(),
        4 => format!("DELETE FROM parent WHERE id = {id}"),
        5 => format!("INSERT OR IGNORE INTO child VALUES ({}, {id}, {})", rng.i64(1..40), rng.i64(..)),
        6 => format!("UPDATE child SET v = 'u{}' WHERE parent_id = {id}", rng.u8(..)),
        7 => format!("DELETE FROM child WHERE id % 5 = {}", id % 5),
        8 => format!("INSERT INTO free VALUES ({}, {})", id % 3, rng.u8(0..3)),
        9 => format!("UPDATE free SET b = b + 1 WHERE a = {}", id % 3),
        10 => format!("DELETE FROM free WHERE rowid IN (SELECT rowid FROM free WHERE a = {} LIMIT 1)", id % 3),
        11 => format!("INSERT OR REPLACE INTO wr VALUES ('k{}', {id})", id % 6),
        12 => format!("UPDATE OR REPLACE wr SET k = 'k{}' WHERE k = 'k{}'", id % 6, (id + 1) % 6),
        _ => format!("DELETE FROM wr WHERE n < {}", id / 3),
    }
}

fn run_seed(seed: u64, dir: &Path) {
    let source_path = dir.join("source.db");
    let archive_path = dir.join("trail.db");
    let c = Connection::open(&source_path).unwrap();
    c.execute_batch(DDL).unwrap();
    c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    let survey = SqliteSource::survey(&source_path, None).unwrap();
    SqliteSource::install(&source_path, &survey.tables, "test").unwrap();
    let mut source = SqliteSource::open(&source_path).unwrap();
    let mut archive = Archive::open(&archive_path, &ArchiveOptions::default()).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed);
    // Some changes staged before the baseline, so it must pass over them.
    for _ in 0..rng.usize(0..10) {
        let _ = c.execute_batch(&statement(&mut rng));
    }
    baseline::take(&mut source, &mut archive, None, &mut Silent).unwrap();
    let mut noted = Vec::new();
    for _ in 0..4 {
        for _ in 0..rng.usize(5..30) {
            let sql = statement(&mut rng);
            // A statement a constraint refuses changes nothing, as for an application.
            let _ = c.execute_batch(&sql);
        }
        mover::drain(&mut source as &mut dyn Source, &mut archive, 64).unwrap();
        let cut = archive
            .cut(&source.info().incarnation, None)
            .unwrap()
            .expect("a drain records a cut");
        std::thread::sleep(std::time::Duration::from_millis(2));
        noted.push((archive_time(jiff::Timestamp::now()), cut.seq, state(&c)));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let latest = dir.join("replica.db");
    replica::create(&latest, &archive, &CreateOptions::default(), &mut |_, _| {})
        .unwrap_or_else(|e| panic!("seed {seed}: replica: {e}"));
    assert_eq!(
        state(&Connection::open(&latest).unwrap()),
        state(&c),
        "seed {seed}: the replica equals the source"
    );
    for (i, (time, seq, want)) in noted.iter().enumerate() {
        for (form, as_of) in [("time", AsOf::Time(time.clone())), ("seq", AsOf::Seq(*seq))] {
            let path = dir.join(format!("as-of-{i}-{form}.db"));
            let options = CreateOptions {
                as_of: Some(as_of.clone()),
                ..CreateOptions::default()
            };
            replica::create(&path, &archive, &options, &mut |_, _| {})
                .unwrap_or_else(|e| panic!("seed {seed}: as of {as_of}: {e}"));
            assert_eq!(
                &state(&Connection::open(&path).unwrap()),
                want,
                "seed {seed}: the rebuild as of {as_of} equals the state noted then"
            );
        }
    }
}

#[test]
fn replicas_and_rebuilds_equal_the_source_under_random_workloads() {
    let seeds: u64 = std::env::var("ROWTRAIL_PROPERTY_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    for seed in 0..seeds {
        let dir = tempfile::tempdir().unwrap();
        run_seed(seed, dir.path());
    }
}
