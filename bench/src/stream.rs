//! The change stream: the real watcher publishing to a real `nats-server -js` on loopback
//! (installed by `scripts/nats/setup.sh`), in three runs on copies of one staged backlog.
//!
//! 1. The archive path alone: `rowtrail watch` without `[stream]` drains the backlog (start to
//!    last change archived).
//! 2. The archive path with the publisher: the same drain from a copy of the same backlog with
//!    `[stream]` configured, the publisher running beside the mover; the ratio of the two drain
//!    times is the job's added cost to the archive path.
//! 3. Publishing alone: the watcher restarted with `[stream]` (another subject) on the archive
//!    of run 1, whose source is drained: start to the last change acknowledged, which is the
//!    rate at which an archive's changes reach the stream (reading the archive, building the
//!    envelopes, pipelined publishes, acknowledgements, positions recorded).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rowtrail_tests::nats::NatsServer;
use rowtrail_watcher::process::WatcherProcess;
use rusqlite::{Connection, OpenFlags};

use crate::fixture::{self, Backlogs};
use crate::report::{Figure, Target};
use crate::Settings;

/// Polls `query` (one integer) on the archive until it reaches `n`; the seconds since `since`.
fn wait_for(
    archive: &Path,
    query: &str,
    n: i64,
    since: Instant,
    watcher: &mut WatcherProcess,
    what: &str,
) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let got: i64 = Connection::open_with_flags(archive, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.busy_timeout(Duration::from_secs(10))?;
                c.query_row(query, [], |r| r.get(0))
            })
            .unwrap_or(0);
        if got >= n {
            return Ok(since.elapsed().as_secs_f64());
        }
        watcher.check_alive()?;
        if Instant::now() > deadline {
            bail!("{what}: only {got} of {n} in 30 min");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const ARCHIVED: &str = "SELECT coalesce(max(id), 0) FROM changes";
const PUBLISHED: &str = "SELECT coalesce(max(published_id), 0) FROM stream_positions";

/// The stream scenario.
pub fn run(s: &Settings, dir: &Path, backlogs: &mut Backlogs) -> Result<Vec<Figure>> {
    let n: i64 = if s.quick { 20_000 } else { 300_000 };
    let bin = s.rowtrail.as_deref().context("the rowtrail binary")?;
    let nats = NatsServer::start();
    let section = |subject: &str| {
        format!(
            "\n[stream]\nurl = \"{}\"\nsubject = \"{subject}\"\n",
            nats.url()
        )
    };

    // 1: the archive path alone.
    let plain = dir.join("stream-plain");
    std::fs::create_dir_all(&plain)?;
    let (src1, arc1) = (plain.join("source.db"), plain.join("trail.db"));
    backlogs.copy(n, &src1)?;
    let t = Instant::now();
    let mut w = fixture::start_watcher(bin, &plain, &src1, &arc1)?;
    let alone = wait_for(&arc1, ARCHIVED, n, t, &mut w, "archived without the stream")?;
    w.stop(Duration::from_secs(30))?;

    // 2: the archive path with the publisher beside it.
    let both = dir.join("stream-both");
    std::fs::create_dir_all(&both)?;
    let (src2, arc2) = (both.join("source.db"), both.join("trail.db"));
    backlogs.copy(n, &src2)?;
    let t = Instant::now();
    let mut w = fixture::start_watcher_with(bin, &both, &src2, &arc2, &section("bench.both"))?;
    let with_stream = wait_for(&arc2, ARCHIVED, n, t, &mut w, "archived with the stream")?;
    let both_published = wait_for(&arc2, PUBLISHED, n, t, &mut w, "published beside the mover")?;
    w.stop(Duration::from_secs(30))?;
    fixture::remove_db(&arc2);
    fixture::remove_db(&src2);

    // 3: publishing alone, from the archive of run 1.
    let t = Instant::now();
    let mut w = fixture::start_watcher_with(bin, &plain, &src1, &arc1, &section("bench.alone"))?;
    let publish = wait_for(&arc1, PUBLISHED, n, t, &mut w, "published from the archive")?;
    w.stop(Duration::from_secs(30))?;
    fixture::remove_db(&arc1);
    fixture::remove_db(&src1);

    Ok(vec![
        Figure::new(
            "stream",
            format!("publish {n} archived changes to JetStream (file storage, loopback)"),
            n as f64 / publish,
            "changes/s",
            Target::AtLeast(100_000.0),
            format!("{publish:.2} s from watcher start to the last acknowledgement recorded"),
        ),
        Figure::new(
            "stream",
            "archive path with the publisher ÷ without",
            with_stream / alone,
            "x",
            Target::AtMost(1.10),
            format!(
                "drain of {n} staged changes: {with_stream:.2} s with, {alone:.2} s without; \
                 all published after {both_published:.2} s"
            ),
        ),
    ])
}
