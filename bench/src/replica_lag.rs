//! Replica lag under the demo's workload: the real watcher (`rowtrail watch`, default settings,
//! one `[[replica]]`) keeps a replica of `items` (1,000 rows, baselined before the watcher
//! starts) current while a writer thread commits as `rowtrail demo`'s quick commits do: one
//! labelled single-row `UPDATE` per transaction (`BEGIN IMMEDIATE`, the `rowtrail_context` row,
//! the update, `COMMIT`), waits until the archive holds it, then pauses 2 ms. Each commit writes
//! a marker into `qty` of row 1 or 2 (alternating); the main thread polls the replica file
//! (read-only, every 200 µs) and a commit's lag runs from its COMMIT returning to the first read
//! of the replica that shows its marker (or a later one: the replica applies whole transactions
//! in order).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_standby::baseline::{self, Silent};
use rowtrail_standby::replica::{self, CreateOptions};
use rusqlite::{Connection, OpenFlags};

use crate::fixture::{self, percentile};
use crate::report::{Figure, Target};
use crate::Settings;

/// Markers are written as `MARK + commit number`, above any `qty` the table starts with.
const MARK: i64 = 1_000_000;

/// How long a commit may take to reach the archive, or the replica, before the run fails.
const BOUND: Duration = Duration::from_secs(10);

/// The replica lag scenario.
pub fn run(s: &Settings, dir: &Path) -> Result<Vec<Figure>> {
    let commits: i64 = if s.quick { 50 } else { 1_000 };
    let bin = s.rowtrail.as_deref().context("the rowtrail binary")?;
    let work = dir.join("replica-lag");
    std::fs::create_dir_all(&work)?;
    let source = work.join("source.db");
    let archive = work.join("trail.db");
    let standby = work.join("standby.db");
    for p in [&archive, &standby] {
        fixture::remove_db(p);
    }
    let conn = fixture::fresh_source(&source, 1_000, true)?;
    {
        // What `sql install` and `replica create` do before the watcher runs.
        let mut src = SqliteSource::open(&source)?;
        let mut trail = Archive::open(&archive, &ArchiveOptions::default())?;
        baseline::take(&mut src, &mut trail, None, &mut Silent)?;
        replica::create(&standby, &trail, &CreateOptions::default(), &mut |_, _| {})?;
    }
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
    let replica = Connection::open_with_flags(&standby, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    replica.busy_timeout(BOUND)?;
    let mut applied = replica.prepare("SELECT max(qty) FROM items WHERE id IN (1, 2)")?;

    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(i64, Instant)>();
    let mut lags = Vec::with_capacity(commits as usize);
    let outcome = std::thread::scope(|scope| -> Result<()> {
        let writer = scope.spawn(|| write(conn, &archive, commits, tx, &stop));
        let polled = (|| -> Result<()> {
            let mut pending: VecDeque<(i64, Instant)> = VecDeque::new();
            let mut writing = true;
            loop {
                loop {
                    match rx.try_recv() {
                        Ok(c) => pending.push_back(c),
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            writing = false;
                            break;
                        }
                    }
                }
                if !pending.is_empty() {
                    let top: i64 = applied.query_row([], |r| r.get(0))?;
                    let seen = Instant::now();
                    while let Some(&(i, committed)) = pending.front() {
                        if top < MARK + i {
                            break;
                        }
                        lags.push((seen - committed).as_secs_f64() * 1e3);
                        pending.pop_front();
                    }
                }
                match pending.front() {
                    Some(&(i, committed)) if committed.elapsed() > BOUND => {
                        watcher.check_alive()?;
                        bail!(
                            "commit {i} was not in the replica within {} s",
                            BOUND.as_secs()
                        );
                    }
                    None if !writing => return Ok(()),
                    _ => std::thread::sleep(Duration::from_micros(200)),
                }
            }
        })();
        if polled.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
        polled?;
        written
    });
    drop(applied);
    drop(replica);
    if let Err(e) = outcome {
        let _ = watcher.check_alive();
        return Err(e);
    }
    watcher.stop(Duration::from_secs(30))?;
    if lags.len() != commits as usize {
        bail!("{} of {commits} commits measured", lags.len());
    }
    let detail = format!(
        "{commits} demo-paced commits (archived, then 2 ms); p50 {:.2} ms, max {:.2} ms",
        percentile(&lags, 0.5),
        percentile(&lags, 1.0)
    );
    Ok(vec![
        Figure::new(
            "replica-lag",
            "commit→replica p50, watcher running",
            percentile(&lags, 0.5),
            "ms",
            Target::Report,
            detail.clone(),
        ),
        Figure::new(
            "replica-lag",
            "commit→replica p99, watcher running",
            percentile(&lags, 0.99),
            "ms",
            Target::AtMost(50.0),
            detail.clone(),
        ),
        Figure::new(
            "replica-lag",
            "commit→replica max, watcher running",
            percentile(&lags, 1.0),
            "ms",
            Target::Report,
            detail,
        ),
    ])
}

/// The demo's quick commits: each a labelled single-row update, waited for in the archive, then
/// 2 ms of pause. Sends each commit's number and the moment its COMMIT returned.
fn write(
    conn: Connection,
    archive: &Path,
    commits: i64,
    committed: mpsc::Sender<(i64, Instant)>,
    stop: &AtomicBool,
) -> Result<()> {
    let trail = Connection::open_with_flags(archive, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    trail.busy_timeout(BOUND)?;
    let mut archived = trail.prepare("SELECT coalesce(max(id), 0) FROM changes")?;
    let mut label = conn.prepare(
        "INSERT INTO rowtrail_context (id, login, host, app, client_ip) \
         VALUES (1, 'bob', 'payroll-srv', 'payroll-batch', '192.0.2.22')",
    )?;
    let mut update = conn.prepare("UPDATE items SET qty = ?1 WHERE id = ?2")?;
    let mut unlabel = conn.prepare("DELETE FROM rowtrail_context")?;
    for i in 1..=commits {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let before: i64 = archived.query_row([], |r| r.get(0))?;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        label.execute([])?;
        update.execute([MARK + i, 1 + i % 2])?;
        unlabel.execute([])?;
        conn.execute_batch("COMMIT")?;
        let at = Instant::now();
        if committed.send((i, at)).is_err() {
            return Ok(());
        }
        loop {
            let now: i64 = archived.query_row([], |r| r.get(0))?;
            if now > before {
                break;
            }
            if at.elapsed() > BOUND {
                bail!("commit {i} was not archived within {} s", BOUND.as_secs());
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}
