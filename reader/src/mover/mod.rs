//! The trace reader's pass: copy staged images in sequence order into the archive, commit
//! durably, then delete exactly the staged rows copied (never everything up to a seq).
//!
//! A crash anywhere leaves either the rows still staged (copied again next time; the archive
//! ignores what it already holds) or archived and deleted: never lost, never doubled.
//!
//! A pass whose first batch comes back full, on a source that can delete behind (see
//! [`Source::delete_behind`]), runs on three threads (`mover/pipeline.rs`). Otherwise each batch is
//! read, archived and deleted in turn.

mod pipeline;

use rowtrail_sql::staging::Op;

use crate::archive::{Archive, NewChange};
use crate::failpoint;
use crate::source::{ImageKind, Source, StagedImage, StagedKey};
use crate::ReaderError;

/// The default number of images per batch.
pub const DEFAULT_BATCH: usize = 10_000;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Batches archived.
    pub batches: u64,
    /// Staged images archived (counting those already in the archive).
    pub images: u64,
    /// Changes newly archived.
    pub archived: u64,
    /// Changes already in the archive (copied again after an interrupted pass).
    pub duplicates: u64,
    /// Staged images deleted from staging after their batch was archived.
    pub removed: u64,
    /// Schema changes followed (capture upgraded, a rename or drop recorded).
    pub schema_changes: u64,
}

impl PassStats {
    fn add(&mut self, images: usize, appended: crate::archive::AppendStats) {
        self.batches += 1;
        self.images += images as u64;
        self.archived += appended.inserted;
        self.duplicates += appended.duplicates;
    }
}

/// A pass that failed, with what it had archived and removed from staging before it failed
/// (every batch archived before the failure stays archived).
#[derive(Debug)]
pub struct PassError {
    /// What the pass did before the failure.
    pub done: PassStats,
    /// Why it stopped.
    pub cause: Box<ReaderError>,
}

impl std::fmt::Display for PassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.done;
        write!(f, "{}", self.cause)?;
        if d.images == 0 {
            // When the archive failed, say what became of staging; otherwise it is noise.
            if matches!(
                *self.cause,
                ReaderError::ArchiveFull { .. } | ReaderError::Archive { .. }
            ) {
                write!(f, "; nothing was removed from staging")?;
            }
        } else if d.removed == d.images {
            write!(
                f,
                "; before the failure this pass archived {} change(s) and removed their {} staged \
                 image(s) from staging; the batch that failed is still staged",
                d.archived, d.removed
            )?;
        } else {
            write!(
                f,
                "; before the failure this pass archived {} change(s) from {} staged image(s) and \
                 removed {} of those images from staging; the rest are still staged and are \
                 skipped as already archived when they are read again",
                d.archived, d.images, d.removed
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for PassError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The cause's text is part of this error's own; its cause comes next.
        std::error::Error::source(&*self.cause)
    }
}

/// Moves batches until staging is empty (or a batch comes back short).
pub fn drain(
    source: &mut dyn Source,
    archive: &mut Archive,
    batch: usize,
) -> Result<PassStats, ReaderError> {
    drain_while(source, archive, batch, &mut |_| true)
        .map(|(stats, _)| stats)
        .map_err(|e| *e.cause)
}

/// Moves batches of up to `batch` images until one comes back short, or until `go_on`, asked
/// after each batch is archived, says no. Returns what the pass did and whether it drained
/// staging (`false`: `go_on` stopped it). Every archived batch's staging delete has committed
/// when this returns `Ok`. On failure the error carries what the pass had done before it.
pub fn drain_while(
    source: &mut dyn Source,
    archive: &mut Archive,
    batch: usize,
    go_on: &mut dyn FnMut(&PassStats) -> bool,
) -> Result<(PassStats, bool), PassError> {
    let mut stats = PassStats::default();
    match drain_counting(source, archive, batch.max(1), &mut stats, go_on) {
        Ok(drained) => Ok((stats, drained)),
        Err(cause) => Err(PassError {
            done: stats,
            cause: Box::new(cause),
        }),
    }
}

/// [`drain_while`]'s pass, counting into `stats` as it goes. Once staging is drained, a schema
/// change since the last pass is followed (what was staged meanwhile is archived under the old
/// capture first).
fn drain_counting(
    source: &mut dyn Source,
    archive: &mut Archive,
    batch: usize,
    stats: &mut PassStats,
    go_on: &mut dyn FnMut(&PassStats) -> bool,
) -> Result<bool, ReaderError> {
    let drained = drain_batches(source, archive, batch, stats, go_on)?;
    if drained {
        // The last read took everything staged in its snapshot: every transaction up to the
        // source's cut is archived now.
        if let Some(seq) = source.cut() {
            archive.record_cut(source.info(), seq)?;
        }
        let followed = source.follow_schema(archive)?;
        stats.schema_changes += followed.len() as u64;
    }
    Ok(drained)
}

/// Moves batches until one comes back short or `go_on` says no.
fn drain_batches(
    source: &mut dyn Source,
    archive: &mut Archive,
    batch: usize,
    stats: &mut PassStats,
    go_on: &mut dyn FnMut(&PassStats) -> bool,
) -> Result<bool, ReaderError> {
    let mut images = source.read_batch(batch, None)?;
    if !images.is_empty() {
        // Nothing is taken out of staging into a file that cannot keep it, or into an archive
        // that is not the one this source's earlier changes went to.
        archive.ensure_intact()?;
        archive.check_home(source)?;
    }
    if images.len() >= batch {
        if let Some(deleter) = source.delete_behind()? {
            return pipeline::run(source, deleter, archive, batch, images, stats, go_on);
        }
    }
    loop {
        let n = images.len();
        if n == 0 {
            return Ok(true);
        }
        failpoint::hit("after-read");
        let keys = keys_of(&images);
        let changes = pair(source.tables(), images)?;
        let appended = archive.append(source.info(), source.tables(), &changes)?;
        failpoint::hit("after-archive-commit");
        stats.add(keys.len(), appended);
        tracing::debug!(
            images = keys.len(),
            archived = appended.inserted,
            duplicates = appended.duplicates,
            "batch archived"
        );
        source.delete_staged(&keys)?;
        failpoint::hit("after-staging-delete");
        stats.removed += keys.len() as u64;
        if n < batch {
            return Ok(true);
        }
        if !go_on(stats) {
            return Ok(false);
        }
        images = source.read_batch(batch, None)?;
    }
}

/// The staging key of every image, in the batch's order.
pub(crate) fn keys_of(images: &[StagedImage]) -> Vec<StagedKey> {
    images.iter().map(|i| (i.table, i.seq)).collect()
}

/// Turns images (in seq order) into row-level changes: an update's before-image (seq `s`) and
/// after-image (seq `s+1`) become one change. `tables` is the registry they were read with.
pub(crate) fn pair(
    tables: &[crate::source::CapturedTable],
    images: Vec<StagedImage>,
) -> Result<Vec<NewChange>, ReaderError> {
    let mut out = Vec::with_capacity(images.len());
    let mut it = images.into_iter().peekable();
    while let Some(img) = it.next() {
        let bad = |reason: &str| ReaderError::BadStaging {
            staging: tables[img.table].staging.to_string(),
            seq: img.seq,
            reason: reason.into(),
        };
        let change = match (img.op, img.image) {
            (Op::Insert, ImageKind::After) => NewChange {
                table: img.table,
                seq: img.seq,
                op: Op::Insert,
                meta: img.meta,
                rowid: img.rowid,
                before: None,
                after: Some(img.values),
            },
            (Op::Delete, ImageKind::Before) => NewChange {
                table: img.table,
                seq: img.seq,
                op: Op::Delete,
                meta: img.meta,
                rowid: img.rowid,
                before: Some(img.values),
                after: None,
            },
            (Op::Update, ImageKind::Before) => {
                let partner = it.next_if(|n| {
                    n.table == img.table
                        && n.seq == img.seq + 1
                        && n.op == Op::Update
                        && n.image == ImageKind::After
                });
                let Some(after) = partner else {
                    return Err(bad(
                        "an update's before-image has no after-image at seq + 1",
                    ));
                };
                NewChange {
                    table: img.table,
                    seq: img.seq,
                    op: Op::Update,
                    meta: img.meta,
                    rowid: after.rowid.or(img.rowid),
                    before: Some(img.values),
                    after: Some(after.values),
                }
            }
            (Op::KeyChange, kind) => {
                let (before, after) = match kind {
                    ImageKind::Before => (Some(img.values), None),
                    ImageKind::After => (None, Some(img.values)),
                };
                NewChange {
                    table: img.table,
                    seq: img.seq,
                    op: Op::KeyChange,
                    meta: img.meta,
                    rowid: img.rowid,
                    before,
                    after,
                }
            }
            _ => return Err(bad("the image kind does not fit the op")),
        };
        out.push(change);
    }
    Ok(out)
}
