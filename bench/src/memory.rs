//! The watcher's memory: a backlog of 1,000,000 staged changes is waiting when `rowtrail watch`
//! (default settings) starts; it drains it, and its peak resident set (`VmHWM` in
//! `/proc/<pid>/status`) is read before it is stopped. The drain rate through the real daemon is
//! reported alongside.
//!
//! The same again with one `[[replica]]` configured: the backlog is staged after a baseline of
//! the (then empty) table was taken and a replica built from it, so the watcher both archives
//! the backlog and applies all of it to the replica; the peak is read once the replica holds
//! the last change.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_standby::baseline::{self, Silent};
use rowtrail_standby::replica::{self, CreateOptions};
use rusqlite::{Connection, OpenFlags};

use crate::fixture::{self, Backlogs};
use crate::report::{Figure, Target};
use crate::Settings;

/// How long a drain (and the replica's catch-up) may take before the run fails.
const BOUND: Duration = Duration::from_secs(1800);

/// The memory scenario.
pub fn run(s: &Settings, dir: &Path, backlogs: &mut Backlogs) -> Result<Vec<Figure>> {
    let n: i64 = if s.quick { 20_000 } else { 1_000_000 };
    let bin = s.rowtrail.as_deref().context("the rowtrail binary")?;
    let mut figures = alone(bin, dir, backlogs, n)?;
    figures.extend(with_replica(bin, dir, n)?);
    Ok(figures)
}

/// The watcher archiving a backlog of `n`, no replica configured.
fn alone(bin: &Path, dir: &Path, backlogs: &mut Backlogs, n: i64) -> Result<Vec<Figure>> {
    let work = dir.join("memory");
    std::fs::create_dir_all(&work)?;
    let source = work.join("source.db");
    let archive = work.join("trail.db");
    backlogs.copy(n, &source)?;
    let started = Instant::now();
    let mut watcher = fixture::start_watcher(bin, &work, &source, &archive)?;
    let reader = Connection::open_with_flags(&archive, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    reader.busy_timeout(Duration::from_secs(10))?;
    wait_for(&mut watcher, n, "archived", || {
        Ok(reader.query_row("SELECT coalesce(max(id), 0) FROM changes", [], |r| r.get(0))?)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let peak = watcher
        .peak_rss()
        .context("read the watcher's peak memory (/proc/<pid>/status, Linux only)")?;
    drop(reader);
    watcher.stop(Duration::from_secs(30))?;
    let mib = peak as f64 / (1024.0 * 1024.0);
    Ok(vec![
        Figure::new(
            "memory",
            format!("watcher peak RSS draining {n} staged changes"),
            mib,
            "MiB",
            Target::AtMost(64.0),
            "VmHWM of the rowtrail watch process",
        ),
        Figure::new(
            "memory",
            "watcher drain rate (start to last change archived)",
            n as f64 / secs,
            "changes/s",
            Target::Report,
            format!("{secs:.1} s, including start-up"),
        ),
    ])
}

/// The watcher archiving a backlog of `n` and applying it to one replica.
fn with_replica(bin: &Path, dir: &Path, n: i64) -> Result<Vec<Figure>> {
    let work = dir.join("memory-replica");
    std::fs::create_dir_all(&work)?;
    let source = work.join("source.db");
    let archive = work.join("trail.db");
    let standby = work.join("standby.db");
    for p in [&archive, &standby] {
        fixture::remove_db(p);
    }
    let conn = fixture::fresh_source(&source, 0, true)?;
    {
        let mut src = SqliteSource::open(&source)?;
        let mut trail = Archive::open(&archive, &ArchiveOptions::default())?;
        baseline::take(&mut src, &mut trail, None, &mut Silent)?;
        replica::create(&standby, &trail, &CreateOptions::default(), &mut |_, _| {})?;
    }
    let staging = Instant::now();
    fixture::insert_rows(&conn, 1, n, 100_000)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    eprintln!(
        "  (staged {n} changes after the replica's baseline in {:.1} s)",
        staging.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let mut watcher = fixture::start_watcher_with(
        bin,
        &work,
        &source,
        &archive,
        &format!(
            "\n[[replica]]\npath = {:?}\n",
            standby.display().to_string()
        ),
    )?;
    let trail = Connection::open_with_flags(&archive, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    trail.busy_timeout(Duration::from_secs(10))?;
    wait_for(&mut watcher, n, "archived", || {
        Ok(trail.query_row("SELECT coalesce(max(id), 0) FROM changes", [], |r| r.get(0))?)
    })?;
    let archived_secs = started.elapsed().as_secs_f64();
    drop(trail);
    let copy = Connection::open_with_flags(&standby, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    copy.busy_timeout(Duration::from_secs(10))?;
    // Rows arrive in id order, whole source transactions at a time.
    wait_for(&mut watcher, n, "applied to the replica", || {
        Ok(copy.query_row("SELECT coalesce(max(id), 0) FROM items", [], |r| r.get(0))?)
    })?;
    let secs = started.elapsed().as_secs_f64();
    let rows: i64 = copy.query_row("SELECT count(*) FROM items", [], |r| r.get(0))?;
    if rows != n {
        bail!("the replica holds {rows} rows, not {n}");
    }
    let peak = watcher
        .peak_rss()
        .context("read the watcher's peak memory (/proc/<pid>/status, Linux only)")?;
    drop(copy);
    watcher.stop(Duration::from_secs(30))?;
    let mib = peak as f64 / (1024.0 * 1024.0);
    Ok(vec![
        Figure::new(
            "memory",
            format!("watcher peak RSS, one replica, {n} staged changes archived and applied"),
            mib,
            "MiB",
            Target::AtMost(96.0),
            "VmHWM of the rowtrail watch process with one [[replica]]",
        ),
        Figure::new(
            "memory",
            "watcher with one replica: start to last change in the replica",
            n as f64 / secs,
            "changes/s",
            Target::Report,
            format!(
                "{secs:.1} s, including start-up; the last change archived at {archived_secs:.1} s"
            ),
        ),
    ])
}

/// Polls `progress` every 50 ms until it reaches `n` (bounded; the watcher must stay alive).
fn wait_for(
    watcher: &mut rowtrail_watcher::process::WatcherProcess,
    n: i64,
    what: &str,
    mut progress: impl FnMut() -> Result<i64>,
) -> Result<()> {
    let deadline = Instant::now() + BOUND;
    loop {
        let got = progress()?;
        if got >= n {
            return Ok(());
        }
        watcher.check_alive()?;
        if Instant::now() > deadline {
            bail!(
                "the watcher {what} only {got} of {n} changes in {} min",
                BOUND.as_secs() / 60
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
