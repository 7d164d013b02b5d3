//! The watcher's memory: a backlog of 1,000,000 staged changes is waiting when `rowtrail watch`
//! (default settings) starts; it drains it, and its peak resident set (`VmHWM` in
//! `/proc/<pid>/status`) is read before it is stopped. The drain rate through the real daemon is
//! reported alongside.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};

use crate::fixture::{self, Backlogs};
use crate::report::{Figure, Target};
use crate::Settings;

/// The memory scenario.
pub fn run(s: &Settings, dir: &Path, backlogs: &mut Backlogs) -> Result<Vec<Figure>> {
    let n: i64 = if s.quick { 20_000 } else { 1_000_000 };
    let bin = s.rowtrail.as_deref().context("the rowtrail binary")?;
    let work = dir.join("memory");
    std::fs::create_dir_all(&work)?;
    let source = work.join("source.db");
    let archive = work.join("trail.db");
    backlogs.copy(n, &source)?;
    let started = Instant::now();
    let mut watcher = fixture::start_watcher(bin, &work, &source, &archive)?;
    let reader = Connection::open_with_flags(&archive, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    reader.busy_timeout(Duration::from_secs(10))?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let archived: i64 =
            reader.query_row("SELECT coalesce(max(id), 0) FROM changes", [], |r| r.get(0))?;
        if archived >= n {
            break;
        }
        watcher.check_alive()?;
        if Instant::now() > deadline {
            bail!("the watcher archived only {archived} of {n} changes in 30 min");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
