//! Checkpointing the archive's WAL on a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold: the writer
//! copies the WAL into the database file and fsyncs it before it can read the next batch. In a
//! 1,000,000-change drain that was a fifth of the reader's time. Here the writer's WAL hook only
//! asks a second connection, on its own thread, for a PASSIVE checkpoint (which never blocks the
//! writer), so copying overlaps the reading, encoding and staging delete of the next batches.
//!
//! A PASSIVE checkpoint cannot finish while the writer keeps appending, and the WAL restarts from
//! its beginning only after one has. So when the WAL reaches [`Thresholds::inline`] anyway, the
//! writer checkpoints inline as SQLite would have (it holds the write lock then, so that
//! checkpoint completes unless the thread is in the middle of one, and the next transaction
//! restarts the WAL). Checkpoints are crash-safe in SQLite whichever connection runs them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};

use crate::ReaderError;

/// When checkpoints happen, in WAL pages (4 KiB each by default).
#[derive(Debug, Clone, Copy)]
pub(super) struct Thresholds {
    /// The writer asks the thread for a checkpoint from this size on (~40 MB).
    pub background: i32,
    /// The writer checkpoints inline from this size on: the thread has not caught up.
    pub inline: i32,
}

/// The archive's thresholds.
pub(super) const THRESHOLDS: Thresholds = Thresholds {
    background: 10_000,
    inline: 40_000,
};

/// The background checkpointer of one writable archive connection. Dropping it stops the
/// thread (after the checkpoint in hand, if any).
pub(super) struct Checkpointer {
    wake: SyncSender<()>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to `path`, and installs the WAL hook on
    /// `writer` that wakes it. Replaces SQLite's automatic checkpoint on `writer`.
    pub(super) fn start(
        writer: &mut Connection,
        path: &Path,
        at: Thresholds,
    ) -> Result<Self, ReaderError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| ReaderError::archive(path, "cannot open the checkpoint connection", e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| ReaderError::archive(path, "cannot set the busy timeout", e))?;
        let (wake, asked) = mpsc::sync_channel::<()>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let file = path.to_path_buf();
            std::thread::Builder::new()
                .name("archive-checkpoint".into())
                .spawn(move || run(conn, &file, &asked, &stop))
                .map_err(|e| ReaderError::Io {
                    path: path.to_path_buf(),
                    context: "cannot start the checkpoint thread".into(),
                    cause: e,
                })?
        };
        let hook_wake = wake.clone();
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
                // The commit has happened when the hook runs; an error returned here would
                // still fail the statement, so an inline checkpoint is best effort (BUSY while
                // the thread is checkpointing is expected: the next commit tries again).
                let inline = pages >= at.inline
                    || (pages >= at.background
                        && matches!(
                            hook_wake.try_send(()),
                            Err(TrySendError::Disconnected(()))
                        ));
                if inline {
                    if let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                        tracing::debug!(wal_pages = pages, error = %e, "inline checkpoint deferred");
                    }
                }
                Ok(())
            }))
            .map_err(|e| ReaderError::archive(path, "cannot install the WAL hook", e))?;
        Ok(Self {
            wake,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.try_send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, path: &Path, asked: &Receiver<()>, stop: &AtomicBool) {
    while asked.recv().is_ok() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((log, done)) => tracing::debug!(
                archive = %path.display(), wal_pages = log, checkpointed = done,
                "background checkpoint"
            ),
            Err(e) => tracing::warn!(
                archive = %path.display(), error = %e,
                "background checkpoint failed; the writer checkpoints inline when the WAL grows"
            ),
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rusqlite::Connection;

    use super::{Checkpointer, Thresholds};

    /// A WAL database with a table, and its path.
    fn wal_db() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (v BLOB);
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
        (dir, path, conn)
    }

    /// Commits about `pages` pages of new rows.
    fn write_pages(conn: &Connection, pages: i64) {
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO t SELECT randomblob(3000) FROM n",
            [pages],
        )
        .unwrap();
    }

    fn db_len(path: &std::path::Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    #[test]
    fn the_thread_copies_the_wal_into_the_database_once_it_is_large() {
        let (_dir, path, mut conn) = wal_db();
        let at = Thresholds {
            background: 50,
            inline: 1_000_000,
        };
        let _c = Checkpointer::start(&mut conn, &path, at).unwrap();
        let empty = db_len(&path);
        write_pages(&conn, 10);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            db_len(&path),
            empty,
            "below the threshold nothing is copied"
        );
        write_pages(&conn, 100);
        let deadline = Instant::now() + Duration::from_secs(20);
        while db_len(&path) < empty + 100 * 3000 {
            assert!(
                Instant::now() < deadline,
                "no background checkpoint: the database file stayed at {} bytes",
                db_len(&path)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_writer_checkpoints_inline_past_the_hard_limit() {
        let (_dir, path, mut conn) = wal_db();
        let at = Thresholds {
            background: 1_000_000,
            inline: 50,
        };
        let _c = Checkpointer::start(&mut conn, &path, at).unwrap();
        let empty = db_len(&path);
        write_pages(&conn, 100);
        // Inline: done when the commit returns.
        assert!(db_len(&path) >= empty + 100 * 3000, "{}", db_len(&path));
    }

    #[test]
    fn dropping_it_stops_the_thread_and_the_writer_still_works() {
        let (_dir, path, mut conn) = wal_db();
        let c = Checkpointer::start(&mut conn, &path, super::THRESHOLDS).unwrap();
        write_pages(&conn, 5);
        drop(c);
        write_pages(&conn, 5);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 10);
    }
}
