//! The trace reader's pass: copy staged images in sequence order into the archive, commit
//! durably, then delete exactly the staged rows copied (never everything up to a seq).
//!
//! A crash anywhere leaves either the rows still staged (copied again next time; the archive
//! ignores what it already holds) or archived and deleted: never lost, never doubled.

use rowtrail_sql::staging::Op;

use crate::archive::{Archive, NewChange};
use crate::failpoint;
use crate::source::{ImageKind, Source, StagedImage, StagedKey};
use crate::ReaderError;

/// The default number of images per batch.
pub const DEFAULT_BATCH: usize = 20_000;

/// What one [`drain`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// Batches moved.
    pub batches: u64,
    /// Staged images read.
    pub images: u64,
    /// Changes newly archived.
    pub archived: u64,
    /// Changes already in the archive (copied again after an interrupted pass).
    pub duplicates: u64,
}

/// Moves one batch; returns how many images it read (0 when staging is empty).
pub fn move_batch(
    source: &mut dyn Source,
    archive: &mut Archive,
    batch: usize,
    stats: &mut PassStats,
) -> Result<usize, ReaderError> {
    let images = source.read_batch(batch)?;
    if images.is_empty() {
        return Ok(0);
    }
    failpoint::hit("after-read");
    let keys: Vec<StagedKey> = images.iter().map(|i| (i.table, i.seq)).collect();
    let changes = pair(source, images)?;
    let appended = archive.append(source.info(), source.tables(), &changes)?;
    failpoint::hit("after-archive-commit");
    source.delete_staged(&keys)?;
    failpoint::hit("after-staging-delete");
    stats.batches += 1;
    stats.images += keys.len() as u64;
    stats.archived += appended.inserted;
    stats.duplicates += appended.duplicates;
    Ok(keys.len())
}

/// Moves batches until staging is empty (or a batch comes back short).
pub fn drain(
    source: &mut dyn Source,
    archive: &mut Archive,
    batch: usize,
) -> Result<PassStats, ReaderError> {
    let mut stats = PassStats::default();
    loop {
        let n = move_batch(source, archive, batch, &mut stats)?;
        if n < batch {
            return Ok(stats);
        }
    }
}

/// Turns images (in seq order) into row-level changes: an update's before-image (seq `s`) and
/// after-image (seq `s+1`) become one change.
fn pair(source: &dyn Source, images: Vec<StagedImage>) -> Result<Vec<NewChange>, ReaderError> {
    let mut out = Vec::with_capacity(images.len());
    let mut it = images.into_iter().peekable();
    while let Some(img) = it.next() {
        let bad = |reason: &str| ReaderError::BadStaging {
            staging: source.tables()[img.table].staging.to_string(),
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
