//! The reader draining a staged backlog into the archive, against its ceiling: a plain batched
//! INSERT of the same staged images into an equivalent SQLite table (untyped columns, the seq as
//! its key, no other index) in a WAL database with the same `synchronous=FULL` and the archive's
//! checkpoint interval, in batches of the same size, measured in the same run on the same
//! backlog. The ceiling neither deletes from staging, nor hashes, nor maintains indexes.

use std::path::Path;

use anyhow::{ensure, Result};
use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::sqlite::SqliteSource;
use rusqlite::types::Value;
use rusqlite::Connection;

use crate::fixture::{self, timed, Backlogs};
use crate::report::{Figure, Target};
use crate::Settings;

/// The ceiling: reads the staging table of `source` in seq order, `batch` images at a time, and
/// inserts each batch into a copy table in `ceiling` in one durable transaction. Returns the
/// number of images copied.
fn plain_copy(source: &Path, ceiling: &Path, batch: usize) -> Result<i64> {
    let src = Connection::open(source)?;
    let staging = "rowtrail_staging";
    let columns: Vec<String> = src
        .prepare(&format!("SELECT * FROM {staging} LIMIT 0"))?
        .column_names()
        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
        .collect();
    fixture::remove_db(ceiling);
    let dst = fixture::open_source(ceiling)?;
    // The archive's own WAL settings (checkpoint interval, size limit), so only the work differs.
    dst.execute_batch("PRAGMA wal_autocheckpoint = 10000; PRAGMA journal_size_limit = 67108864;")?;
    let mut defs = columns.clone();
    defs[0] = format!("{} INTEGER PRIMARY KEY", columns[0]);
    dst.execute_batch(&format!("CREATE TABLE copy ({})", defs.join(", ")))?;
    let marks = vec!["?"; columns.len()].join(", ");
    let mut select = src.prepare(&format!(
        "SELECT * FROM {staging} WHERE {} > ?1 ORDER BY {} LIMIT ?2",
        columns[0], columns[0]
    ))?;
    let mut insert = dst.prepare(&format!("INSERT INTO copy VALUES ({marks})"))?;
    let (mut last, mut copied) = (i64::MIN, 0i64);
    loop {
        // Owned values, as the reader holds them between its read and its write.
        let rows: Vec<Vec<Value>> = select
            .query_map(rusqlite::params![last, batch as i64], |r| {
                (0..columns.len()).map(|i| r.get::<_, Value>(i)).collect()
            })?
            .collect::<rusqlite::Result<_>>()?;
        if rows.is_empty() {
            break;
        }
        dst.execute_batch("BEGIN IMMEDIATE")?;
        for row in &rows {
            insert.execute(rusqlite::params_from_iter(row.iter()))?;
        }
        dst.execute_batch("COMMIT")?;
        if let Some(Value::Integer(s)) = rows.last().and_then(|r| r.first()) {
            last = *s;
        }
        copied += rows.len() as i64;
    }
    Ok(copied)
}

/// The reader scenario.
pub fn run(s: &Settings, dir: &Path, backlogs: &mut Backlogs) -> Result<Vec<Figure>> {
    let n: i64 = if s.quick { 20_000 } else { 1_000_000 };
    let batch = mover::DEFAULT_BATCH;
    let source = dir.join("reader-source.db");
    let archive_path = dir.join("reader-trail.db");
    let ceiling_path = dir.join("reader-ceiling.db");
    backlogs.copy(n, &source)?;

    let (ceiling_secs, copied) = timed(|| plain_copy(&source, &ceiling_path, batch))?;
    ensure!(copied == n, "the plain copy moved {copied} of {n} images");
    fixture::remove_db(&ceiling_path);

    fixture::remove_db(&archive_path);
    let cpu0 = cpu_secs();
    let (drain_secs, stats) = timed(|| {
        let mut src = SqliteSource::open(&source)?;
        let mut archive = Archive::open(&archive_path, &ArchiveOptions::default())?;
        Ok(mover::drain(&mut src, &mut archive, batch)?)
    })?;
    let cpu = cpu_secs().zip(cpu0).map(|(end, start)| end - start);
    ensure!(
        stats.archived == n as u64,
        "the reader archived {} of {n} changes",
        stats.archived
    );
    let staged = fixture::staged(&Connection::open(&source)?)?;
    ensure!(
        staged == 0,
        "{staged} images left in staging after the drain"
    );
    fixture::remove_db(&archive_path);
    fixture::remove_db(&source);

    let rate = n as f64 / drain_secs;
    let ceiling = n as f64 / ceiling_secs;
    Ok(vec![
        Figure::new(
            "reader",
            format!("drain {n} staged inserts (batch {batch})"),
            rate,
            "changes/s",
            Target::AtLeast(200_000.0),
            match cpu {
                Some(cpu) => format!(
                    "{drain_secs:.2} s; {cpu:.2} s of CPU in all threads (reading, archiving, staging delete, archive checkpoint)"
                ),
                None => format!("{drain_secs:.2} s"),
            },
        ),
        Figure::new(
            "reader",
            "drain ÷ ceiling (plain batched INSERT, same images, same sync)",
            rate / ceiling,
            "x",
            Target::AtLeast(0.65),
            format!("ceiling {ceiling:.0} images/s ({ceiling_secs:.2} s)"),
        ),
    ])
}

/// CPU seconds (user + system) this process has used so far, where `/proc` tells.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
