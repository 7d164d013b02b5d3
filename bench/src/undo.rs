//! Undo of 100,000 changes with one `--apply`: the real triggers capture 100,000 inserts, the
//! real mover archives them (its archive handle then closed), then `rowtrail undo
//! --after-change 0 --apply` is done through the restore library on an archive handle of its
//! own, as the CLI opens one (plan, then apply in one guarded, journalled transaction, its own
//! writes captured too). The figure is changes undone per second, plan and apply together.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use rowtrail_apply::sqlite::SqliteTarget;
use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_restore::plan::Mode;
use rowtrail_restore::run::{self, Actor};
use rowtrail_restore::scope::Scope;

use crate::fixture::{self, timed};
use crate::report::{Figure, Target};
use crate::Settings;

/// The undo scenario.
pub fn run(s: &Settings, dir: &Path) -> Result<Vec<Figure>> {
    let n: i64 = if s.quick { 5_000 } else { 100_000 };
    let source = dir.join("undo-source.db");
    let archive_path = dir.join("undo-trail.db");
    fixture::remove_db(&archive_path);
    let conn = fixture::fresh_source(&source, 0, true)?;
    fixture::insert_rows(&conn, 1, n, n)?;
    {
        // The reader's own archive handle, closed when the drain is done (its checkpoint thread
        // stops and the WAL is folded in), as a watcher's would be long before anyone undoes.
        let mut archive = Archive::open(&archive_path, &ArchiveOptions::default())?;
        let mut src = SqliteSource::open(&source)?;
        mover::drain(&mut src, &mut archive, mover::DEFAULT_BATCH)?;
    }
    // `rowtrail undo --apply` opens the archive itself.
    let archive = Archive::open(&archive_path, &ArchiveOptions::default())?;
    let scope = Scope {
        after_change: Some(0),
        ..Scope::default()
    };
    let actor = Actor {
        login: "bench".into(),
        host: None,
    };
    let mut target = SqliteTarget::from_connection(conn);
    let (plan_secs, prepared) =
        timed(|| Ok(run::prepare_undo(&archive, &target, &scope, Mode::Refuse)?))?;
    let (apply_secs, outcome) =
        timed(|| Ok(run::execute(&archive, &mut target, &prepared, &actor)?))?;
    let conn = target.into_connection();
    let (_, results) = outcome.context("the undo had nothing to do")?;
    let left: i64 = conn.query_row("SELECT count(*) FROM items", [], |r| r.get(0))?;
    ensure!(left == 0, "{left} rows left after undoing every insert");
    ensure!(
        results.len() as i64 == n,
        "{} of {n} changes undone",
        results.len()
    );
    drop(archive);
    fixture::remove_db(&archive_path);
    fixture::remove_db(&source);
    let total = plan_secs + apply_secs;
    Ok(vec![Figure::new(
        "undo",
        format!("undo {n} changes, one --apply"),
        n as f64 / total,
        "changes/s",
        Target::AtLeast(100_000.0),
        format!("plan {plan_secs:.2} s + apply {apply_secs:.2} s"),
    )])
}
