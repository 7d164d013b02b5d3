//! Commit→archive latency: the real watcher (`rowtrail watch`, default settings) runs against a
//! captured source; single-row commits are made 5 ms apart, and after each the archive is polled
//! (every 100 µs, read-only) until the change is there. Latency is from the moment COMMIT
//! returns to the moment the archived change is visible to a reader.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};

use crate::fixture::{self, percentile};
use crate::report::{Figure, Target};
use crate::Settings;

/// The latency scenario.
pub fn run(s: &Settings, dir: &Path) -> Result<Vec<Figure>> {
    let commits: i64 = if s.quick { 100 } else { 1_000 };
    let spacing = Duration::from_millis(5);
    let bin = s.rowtrail.as_deref().context("the rowtrail binary")?;
    let work = dir.join("latency");
    std::fs::create_dir_all(&work)?;
    let source = work.join("source.db");
    let archive = work.join("trail.db");
    let conn = fixture::fresh_source(&source, 0, true)?;
    let mut watcher = fixture::start_watcher(bin, &work, &source, &archive)?;
    let reader = Connection::open_with_flags(&archive, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    reader.busy_timeout(Duration::from_secs(10))?;
    let mut count = reader.prepare("SELECT coalesce(max(seq), 0) FROM changes")?;
    let mut insert = conn.prepare(
        "INSERT INTO items (id, qty, price, name, note) \
         VALUES (?1, ?1 % 97, ?1 * 0.25, printf('name-%019d', ?1), printf('%0152d', ?1))",
    )?;
    let mut latencies = Vec::with_capacity(commits as usize);
    let mut next = Instant::now();
    for i in 1..=commits {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        next = Instant::now() + spacing;
        insert.execute([i])?;
        let committed = Instant::now();
        let deadline = committed + Duration::from_secs(10);
        // Each commit stages one image; seq numbers rise by one per image.
        loop {
            let seen: i64 = count.query_row([], |r| r.get(0))?;
            if seen >= i {
                latencies.push(committed.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if Instant::now() > deadline {
                watcher.check_alive()?;
                bail!("commit {i} was not archived within 10 s");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    drop(count);
    drop(reader);
    watcher.stop(Duration::from_secs(30))?;
    let detail = format!(
        "{commits} commits {} ms apart; max {:.2} ms",
        spacing.as_millis(),
        percentile(&latencies, 1.0)
    );
    Ok(vec![
        Figure::new(
            "latency",
            "commit→archive p50, watcher running",
            percentile(&latencies, 0.5),
            "ms",
            Target::AtMost(5.0),
            detail.clone(),
        ),
        Figure::new(
            "latency",
            "commit→archive p99, watcher running",
            percentile(&latencies, 0.99),
            "ms",
            Target::AtMost(25.0),
            detail,
        ),
    ])
}
