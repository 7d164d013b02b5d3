//! The standby: a baseline of `items` taken through the real SQLite snapshot reader into a new
//! archive, against a plain `INSERT … SELECT` copy of the same table into a database with the
//! same settings (the ceiling, same run); a replica built from it, then the archived changes of
//! as many inserts applied to it; a rebuild as of now (baseline and every change); a comparison
//! of the replica with its equal source.

use std::path::Path;

use anyhow::{ensure, Result};
use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_standby::as_of::AsOf;
use rowtrail_standby::baseline::{self, Silent};
use rowtrail_standby::compare;
use rowtrail_standby::replica::{self, archive_time, CreateOptions, Replica, Until};

use crate::fixture::{self, timed};
use crate::report::{Figure, Target};
use crate::Settings;

/// The standby scenario.
pub fn run(s: &Settings, dir: &Path) -> Result<Vec<Figure>> {
    let n: i64 = s
        .standby_rows
        .unwrap_or(if s.quick { 5_000 } else { 200_000 });
    let source = dir.join("standby-source.db");
    let archive_path = dir.join("standby-trail.db");
    let copy = dir.join("standby-copy.db");
    let replica_path = dir.join("standby-replica.db");
    let rebuilt = dir.join("standby-rebuilt.db");
    for p in [&archive_path, &copy, &replica_path, &rebuilt] {
        fixture::remove_db(p);
    }
    let conn = fixture::fresh_source(&source, n, true)?;

    // The ceiling: the same rows copied by SQLite itself into a database set up alike.
    let copy_secs = {
        let c = fixture::open_source(&copy)?;
        c.execute_batch(fixture::TABLE_DDL)?;
        drop(c);
        let (secs, _) = timed(|| {
            conn.execute(
                "ATTACH DATABASE ?1 AS copy",
                [copy.to_str().unwrap_or_default()],
            )?;
            conn.execute_batch(
                "BEGIN; INSERT INTO copy.items SELECT * FROM main.items; COMMIT; DETACH DATABASE copy;",
            )?;
            Ok(())
        })?;
        secs
    };

    let mut archive = Archive::open(&archive_path, &ArchiveOptions::default())?;
    let mut src = SqliteSource::open(&source)?;
    let (baseline_secs, report) =
        timed(|| Ok(baseline::take(&mut src, &mut archive, None, &mut Silent)?))?;
    ensure!(
        report.taken.iter().map(|t| t.rows).sum::<u64>() == n as u64,
        "the baseline holds every row"
    );
    let (_, (mut rep, _)) = timed(|| {
        Ok(replica::create(
            &replica_path,
            &archive,
            &CreateOptions::default(),
            &mut |_, _| {},
        )?)
    })?;
    fixture::insert_rows(&conn, n + 1, n, 10_000)?;
    mover::drain(&mut src, &mut archive, mover::DEFAULT_BATCH)?;
    let (apply_secs, applied) = timed(|| Ok(rep.apply(&archive, &Until::Latest)?))?;
    ensure!(
        applied.applied == n as u64,
        "{} of {n} changes applied",
        applied.applied
    );
    let as_of = archive_time(jiff_now());
    let (restore_secs, _) = timed(|| {
        Ok(replica::create(
            &rebuilt,
            &archive,
            &CreateOptions {
                as_of: Some(AsOf::Time(as_of.clone())),
                ..CreateOptions::default()
            },
            &mut |_, _| {},
        )?)
    })?;
    let rep = Replica::open(&replica_path)?;
    let cpu0 = crate::app_view::thread_cpu_secs();
    let (compare_secs, cmp) = timed(|| Ok(compare::compare(&rep, &mut src, &archive)?))?;
    let compare_cpu = match (cpu0, crate::app_view::thread_cpu_secs()) {
        (Some(a), Some(b)) => format!("{:.2} s of CPU (one thread); ", b - a),
        _ => String::new(),
    };
    ensure!(!cmp.differs(), "the replica equals its source");
    let rows_read: u64 = cmp.tables.iter().map(|t| t.rows_read).sum();
    ensure!(
        rows_read == 0,
        "equal tables compare by checksums alone ({rows_read} rows read one by one)"
    );
    drop(rep);
    drop(archive);
    for p in [&archive_path, &copy, &replica_path, &rebuilt, &source] {
        fixture::remove_db(p);
    }
    let rate = n as f64 / baseline_secs;
    let ceiling = n as f64 / copy_secs;
    Ok(vec![
        Figure::new(
            "standby",
            format!("baseline of {n} rows"),
            rate,
            "rows/s",
            Target::AtLeast(300_000.0),
            format!("{baseline_secs:.2} s"),
        ),
        Figure::new(
            "standby",
            "baseline ÷ INSERT … SELECT copy",
            rate / ceiling,
            "ratio",
            Target::AtLeast(0.5),
            format!("copy {copy_secs:.2} s ({ceiling:.0} rows/s)"),
        ),
        Figure::new(
            "standby",
            format!("replica apply of {n} changes"),
            n as f64 / apply_secs,
            "changes/s",
            Target::AtLeast(150_000.0),
            format!("{apply_secs:.2} s"),
        ),
        Figure::new(
            "standby",
            format!("restore --as-of: {n} rows + {n} changes"),
            restore_secs,
            "s",
            if n == 1_000_000 {
                Target::AtMost(10.0)
            } else {
                Target::Report
            },
            "the 1M + 1M target (≤ 10 s) is judged at that size only (--standby-rows 1000000)"
                .to_string(),
        ),
        Figure::new(
            "standby",
            format!("compare of two equal {}-row tables", 2 * n),
            compare_secs,
            "s",
            if 2 * n == 1_000_000 {
                Target::AtMost(3.0)
            } else {
                Target::Report
            },
            format!(
                "{compare_cpu}by key-range checksums, no row read one by one; the 1M-row target \
                 (≤ 3 s) is judged at that size only (--standby-rows 500000)"
            ),
        ),
    ])
}

fn jiff_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}
