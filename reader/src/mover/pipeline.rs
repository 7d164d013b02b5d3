//! The delete-behind pass: three threads, each holding one batch at a time.
//!
//! * the read thread reads batch n+1, above batch n's highest seq, and pairs its images;
//! * the calling thread archives batch n (the archive is written only here, in seq order);
//! * the delete thread deletes batch n-1 from staging on the source's second connection.
//!
//! A batch's keys reach the delete thread only after its archive commit, so a crash anywhere
//! leaves every image staged, archived, or both, exactly as in the pass that takes one step
//! at a time; the next pass reads from the first staged image again. Reading above the last
//! batch's highest seq cannot skip an image, because only a source where no image commits
//! later with a lower seq hands out a deleter ([`Source::delete_behind`]).
//!
//! On the reader's profile the archive append is about two thirds of a pass; the staging read
//! and delete move to the second core.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;

use super::{keys_of, pair, PassStats};
use crate::archive::{Archive, NewChange};
use crate::failpoint;
use crate::source::{CapturedTable, Source, SourceInfo, StagedImage, StagedKey, StagingDeleter};
use crate::ReaderError;

/// A batch read and paired, waiting to be archived.
struct Read {
    info: SourceInfo,
    tables: Arc<[CapturedTable]>,
    changes: Vec<NewChange>,
    keys: Vec<StagedKey>,
}

/// An archived batch, waiting to be deleted from staging.
struct Archived {
    incarnation: String,
    tables: Arc<[CapturedTable]>,
    keys: Vec<StagedKey>,
}

/// Runs the pass from `first` (a full batch already read) until a batch comes back short or
/// `go_on` says no; returns whether staging was drained. Returns only when all three threads
/// have stopped, so every archived batch's delete has committed (or failed) by then.
pub(super) fn run(
    source: &mut dyn Source,
    deleter: Box<dyn StagingDeleter>,
    archive: &mut Archive,
    batch: usize,
    first: Vec<StagedImage>,
    stats: &mut PassStats,
    go_on: &mut dyn FnMut(&PassStats) -> bool,
) -> Result<bool, ReaderError> {
    thread::scope(|s| {
        // No queue for reads: one batch being read, one being archived, nothing waiting.
        let (read_tx, read_rx) = mpsc::sync_channel(0);
        // Keys are small: one delete may wait while another runs.
        let (delete_tx, delete_rx) = mpsc::sync_channel(1);
        let reading = thread::Builder::new()
            .name("rowtrail-read".into())
            .spawn_scoped(s, move || read_ahead(source, batch, first, read_tx))
            .map_err(|e| thread_error("start the read thread", e))?;
        let deleting = match thread::Builder::new()
            .name("rowtrail-delete".into())
            .spawn_scoped(s, move || delete_each(deleter, delete_rx))
        {
            Ok(h) => h,
            Err(e) => {
                drop(read_rx);
                let _ = reading.join();
                return Err(thread_error("start the delete thread", e));
            }
        };
        let archived = archive_each(archive, read_rx, delete_tx, stats, go_on);
        let (removed, deleted) = deleting
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        stats.removed += removed;
        reading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let drained = archived?;
        deleted?;
        Ok(drained)
    })
}

fn thread_error(what: &str, cause: std::io::Error) -> ReaderError {
    ReaderError::Io {
        context: format!("cannot {what} of the delete-behind pass"),
        path: std::path::PathBuf::new(),
        cause,
    }
}

/// The read thread: pairs `first`, then reads on above each batch, handing every batch (or
/// the error that ended reading) to the archiving thread. Stops after a short batch, or when
/// the archiving thread stops taking batches.
fn read_ahead(
    source: &mut dyn Source,
    batch: usize,
    first: Vec<StagedImage>,
    out: SyncSender<Result<Read, ReaderError>>,
) {
    let mut images = first;
    loop {
        let n = images.len();
        if n == 0 {
            return;
        }
        failpoint::hit("after-read");
        let above = images.iter().map(|i| i.seq).max();
        let keys = keys_of(&images);
        let read = pair(source.tables(), images).map(|changes| Read {
            info: source.info().clone(),
            tables: source.tables().into(),
            changes,
            keys,
        });
        let failed = read.is_err();
        if out.send(read).is_err() || failed || n < batch {
            return;
        }
        images = match source.read_batch(batch, above) {
            Ok(images) => images,
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        };
    }
}

/// The calling thread: archives each batch in turn and hands its keys to the delete thread.
/// Returns whether the read thread ran out of staged images (`false`: `go_on` said no, or
/// the delete thread stopped, and its error is what the pass reports).
fn archive_each(
    archive: &mut Archive,
    reads: Receiver<Result<Read, ReaderError>>,
    deletes: SyncSender<Archived>,
    stats: &mut PassStats,
    go_on: &mut dyn FnMut(&PassStats) -> bool,
) -> Result<bool, ReaderError> {
    for read in reads {
        let read = read?;
        let appended = archive.append(&read.info, &read.tables, &read.changes)?;
        failpoint::hit("after-archive-commit");
        stats.add(read.keys.len(), appended);
        let archived = Archived {
            incarnation: read.info.incarnation,
            tables: read.tables,
            keys: read.keys,
        };
        if deletes.send(archived).is_err() || !go_on(stats) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The delete thread: deletes each archived batch from staging, in the order archived.
/// Returns how many images it deleted, and the error that stopped it, if one did.
fn delete_each(
    mut deleter: Box<dyn StagingDeleter>,
    batches: Receiver<Archived>,
) -> (u64, Result<(), ReaderError>) {
    let mut removed = 0;
    for b in batches {
        if let Err(e) = deleter.delete(&b.incarnation, &b.tables, &b.keys) {
            return (removed, Err(e));
        }
        failpoint::hit("after-staging-delete");
        removed += b.keys.len() as u64;
    }
    (removed, Ok(()))
}
