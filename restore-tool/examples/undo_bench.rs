//! Figures for the audit-and-undo note (run in release):
//!
//! ```text
//! cargo run --release -p rowtrail-restore --example undo_bench [-- CHANGES ARCHIVE_CHANGES]
//! ```
//!
//! 1. Undo with apply of CHANGES (default 100,000) captured updates (one statement), then of
//!    as many inserts: the real triggers capture the workload, the real mover archives it, then
//!    the undo is planned and applied (its own writes captured too). Prints changes/s for
//!    planning, applying and both.
//! 2. History of one row in an archive of ARCHIVE_CHANGES (default 1,000,000) changes, built by
//!    appending directly to the archive: the median and worst of 50 look-ups.

use std::time::Instant;

use rowtrail_reader::archive::{Archive, ArchiveOptions, NewChange};
use rowtrail_reader::mover;
use rowtrail_reader::source::{CapturedTable, Meta, SourceInfo, SqliteSource};
use rowtrail_restore::plan::Mode;
use rowtrail_restore::run::{self, Actor};
use rowtrail_restore::scope::Scope;
use rowtrail_sql::staging::Op;
use rowtrail_sql::{Column, Ident, Table, TableName, Value};

fn dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rtbench")
        .tempdir()
        .expect("temp dir")
}

fn undo_figure(n: i64) {
    let d = dir();
    let source = d.path().join("source.db");
    let archive_path = d.path().join("trail.db");
    let conn = rusqlite::Connection::open(&source).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, qty INTEGER, price REAL, note TEXT);",
    )
    .unwrap();
    let tables = SqliteSource::candidate_tables(&source, None).unwrap();
    SqliteSource::install(&source, &tables, "bench").unwrap();
    conn.execute_batch("BEGIN").unwrap();
    {
        let mut ins = conn
            .prepare("INSERT INTO t VALUES (?1, ?1 % 97, ?1 * 0.25, 'row ' || ?1)")
            .unwrap();
        for i in 0..n {
            ins.execute([i]).unwrap();
        }
    }
    conn.execute_batch("COMMIT").unwrap();
    let mut src = SqliteSource::open(&source).unwrap();
    let mut archive = Archive::open(&archive_path, &ArchiveOptions::default()).unwrap();
    mover::drain(&mut src, &mut archive, 5000).unwrap();
    let mut conn = conn;
    // First the undo of one statement that updated every row, then of all the inserts.
    conn.execute_batch("UPDATE t SET qty = qty + 1, note = note || '!'")
        .unwrap();
    mover::drain(&mut src, &mut archive, 5000).unwrap();
    timed_undo(&archive, &mut conn, n, "updates");
    mover::drain(&mut src, &mut archive, 5000).unwrap();
    timed_undo(&archive, &mut conn, 0, "inserts");
    let left: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0, "everything undone");
}

fn timed_undo(archive: &Archive, conn: &mut rusqlite::Connection, after: i64, what: &str) {
    let scope = Scope {
        after_change: Some(after),
        ..Scope::default()
    };
    let started = Instant::now();
    let prepared = run::prepare_undo(archive, conn, &scope, Mode::Refuse).unwrap();
    let planned = started.elapsed();
    // Rendering measured on its own (not part of the undo: the clock skips it).
    let t = Instant::now();
    for s in &prepared.plan.steps {
        let r = rowtrail_sql::undo::render_guarded(
            &s.step(),
            rowtrail_sql::Dialect::Sqlite,
            rowtrail_sql::undo::Values::Bound,
        )
        .unwrap();
        std::hint::black_box(r);
    }
    println!("(rendering alone: {:.3} s)", t.elapsed().as_secs_f64());
    let started = started + t.elapsed();
    let actor = Actor {
        login: "bench".into(),
        host: None,
    };
    let (r, results) = run::execute(archive, conn, &prepared, &actor)
        .unwrap()
        .expect("a run");
    let total = started.elapsed();
    let rate = |secs: f64| results.len() as f64 / secs;
    println!(
        "undo --apply of {} {what} (run {}): plan {:.3} s, apply {:.3} s, total {:.3} s = {:.0} changes/s (plan {:.0}/s, apply {:.0}/s)",
        results.len(),
        r.id,
        planned.as_secs_f64(),
        (total - planned).as_secs_f64(),
        total.as_secs_f64(),
        rate(total.as_secs_f64()),
        rate(planned.as_secs_f64()),
        rate((total - planned).as_secs_f64()),
    );
}

fn history_figure(n: i64) {
    let d = dir();
    let path = d.path().join("trail.db");
    let mut archive = Archive::open(&path, &ArchiveOptions::default()).unwrap();
    let col = |name: &str, ty: &str| Column::new(Ident::new(name).unwrap(), ty, true);
    let table = Table {
        name: TableName::bare(Ident::new("staff").unwrap()),
        columns: vec![
            col("id", "INTEGER"),
            col("name", "TEXT"),
            col("salary", "INTEGER"),
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        rowid: true,
    };
    let tables = [CapturedTable {
        table,
        staging: Ident::new("rowtrail_s_staff").unwrap(),
    }];
    let source = SourceInfo {
        incarnation: "bench-incarnation".into(),
        engine: "sqlite",
        location: "bench".into(),
    };
    let rows = (n / 10).max(1);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let id = i % rows;
        let round = i / rows;
        let seq = i + 1;
        let image = |salary: i64| {
            vec![
                Value::Integer(id),
                Value::text(&format!("person {id}")),
                Value::Integer(salary),
            ]
        };
        batch.push(NewChange {
            table: 0,
            seq,
            op: if round == 0 { Op::Insert } else { Op::Update },
            meta: Meta {
                login: Some(format!("user{}", i % 7)),
                time: Some(Value::text("2026-11-21T05:00:00.000Z")),
                ..Meta::default()
            },
            rowid: Some(id),
            before: (round > 0).then(|| image(round - 1)),
            after: Some(image(round)),
        });
        if batch.len() == 10_000 {
            archive.append(&source, &tables, &batch).unwrap();
            batch.clear();
        }
    }
    archive.append(&source, &tables, &batch).unwrap();
    println!(
        "built an archive of {} changes ({} rows, 10 changes each) in {:.1} s",
        archive.change_count().unwrap(),
        rows,
        started.elapsed().as_secs_f64()
    );
    drop(archive);
    let archive = Archive::open_read_only(&path).unwrap();
    let name = TableName::bare(Ident::new("staff").unwrap());
    let mut times = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..50 {
        let key = rng.i64(0..rows).to_string();
        let t = Instant::now();
        let h = rowtrail_restore::history::row_history(&archive, &name, &[key]).unwrap();
        times.push(t.elapsed());
        assert_eq!(h.len() as i64, n / rows);
    }
    times.sort();
    println!(
        "history of one row in {} changes: median {:.3} ms, worst {:.3} ms (50 random rows)",
        n,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let changes = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let archive_changes = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    undo_figure(changes);
    history_figure(archive_changes);
}
