//! History of one row in a large archive: an archive of 10,000,000 changes (1,000,000 rows of a
//! small `staff` table, ten changes each: an insert, then nine updates, interleaved across rows
//! as a busy database would) is built by appending directly through `Archive::append` (no
//! triggers: only the archive's shape matters here), then `rowtrail history` look-ups of random
//! rows are timed through the restore library.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Result};
use rowtrail_reader::archive::{Archive, ArchiveOptions, NewChange};
use rowtrail_reader::source::{CapturedTable, Meta, SourceInfo};
use rowtrail_sql::staging::Op;
use rowtrail_sql::{Column, Ident, Table, TableName, Value};

use crate::fixture::{self, percentile};
use crate::report::{Figure, Target};
use crate::Settings;

fn staff() -> Result<Table> {
    let col =
        |name: &str, ty: &str| -> Result<Column> { Ok(Column::new(Ident::new(name)?, ty, true)) };
    Ok(Table {
        name: TableName::bare(Ident::new("staff")?),
        columns: vec![
            col("id", "INTEGER")?,
            col("name", "TEXT")?,
            col("salary", "INTEGER")?,
        ],
        primary_key: vec![0],
        unique_keys: vec![],
        rowid: true,
    })
}

/// Appends `n` changes (ten per row) to a new archive at `path`; returns the number of rows.
fn build(path: &Path, n: i64) -> Result<i64> {
    let mut archive = Archive::open(path, &ArchiveOptions::default())?;
    let tables = [CapturedTable {
        table: staff()?,
        staging: Ident::new("rowtrail_s_staff")?,
    }];
    let source = SourceInfo {
        incarnation: "bench-incarnation".into(),
        engine: "sqlite",
        location: "bench".into(),
    };
    let rows = (n / 10).max(1);
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let (id, round) = (i % rows, i / rows);
        let image = |salary: i64| {
            vec![
                Value::Integer(id),
                Value::text(&format!("person {id}")),
                Value::Integer(salary),
            ]
        };
        batch.push(NewChange {
            table: 0,
            seq: i + 1,
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
            archive.append(&source, &tables, &batch)?;
            batch.clear();
        }
    }
    archive.append(&source, &tables, &batch)?;
    ensure!(
        archive.change_count()? == n as u64,
        "the archive holds the wrong count"
    );
    Ok(rows)
}

/// The history scenario.
pub fn run(s: &Settings, dir: &Path) -> Result<Vec<Figure>> {
    let n: i64 = if s.quick { 100_000 } else { 10_000_000 };
    let lookups = if s.quick { 50 } else { 200 };
    let path = dir.join("history-trail.db");
    fixture::remove_db(&path);
    let started = Instant::now();
    let rows = build(&path, n)?;
    let build_secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path)?.len();
    let archive = Archive::open_read_only(&path)?;
    let name = TableName::bare(Ident::new("staff")?);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut times = Vec::with_capacity(lookups);
    for _ in 0..lookups {
        let key = rng.i64(0..rows).to_string();
        let t = Instant::now();
        let h = rowtrail_restore::history::row_history(&archive, &name, &[key])?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        ensure!(
            h.len() as i64 == n / rows,
            "a row's history has {} changes",
            h.len()
        );
    }
    drop(archive);
    fixture::remove_db(&path);
    Ok(vec![Figure::new(
        "history",
        format!("history of one row, archive of {n} changes"),
        percentile(&times, 0.5),
        "ms",
        Target::AtMost(5.0),
        format!(
            "p99 {:.2} ms over {lookups} random rows; archive built in {build_secs:.1} s ({:.0} changes/s, {:.2} GB)",
            percentile(&times, 0.99),
            n as f64 / build_secs,
            bytes as f64 / 1e9
        ),
    )])
}
