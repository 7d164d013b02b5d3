//! The delete-behind pass on a real SQLite source: the next batch is read above the last one
//! while that one's staging delete runs on a second connection. Nothing may be skipped while a
//! writer commits during the pass, a failed delete loses nothing, a stop waits for the deletes
//! in hand, and a delete never touches another incarnation's images.

mod common;

use std::path::{Path, PathBuf};

use common::assert_archived_in_seq_order;
use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::source::{
    CapturedTable, Source, SourceInfo, StagedImage, StagedKey, StagingDeleter,
};
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_reader::ReaderError;
use rusqlite::Connection;

/// A captured source `src.db` with tables `a` and `b` (a WAL database, as applications that
/// write while the reader runs use), and an archive beside it.
fn setup(dir: &Path) -> (PathBuf, Connection, Archive) {
    let db = dir.join("src.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE b (k TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID;",
    )
    .unwrap();
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    let archive = Archive::open(&dir.join("trail.db"), &ArchiveOptions::default()).unwrap();
    (db, conn, archive)
}

/// Rows `from..to` inserted into both tables, every third one updated: returns the changes.
fn write(conn: &Connection, from: i64, to: i64) -> u64 {
    let mut made = 0;
    for i in from..to {
        conn.execute("INSERT INTO a (id, v) VALUES (?1, 'x')", [i])
            .unwrap();
        conn.execute("INSERT INTO b (k, n) VALUES (?1, ?2)", (format!("k{i}"), i))
            .unwrap();
        made += 2;
        if i % 3 == 0 {
            conn.execute("UPDATE a SET v = 'y' WHERE id = ?1", [i])
                .unwrap();
            made += 1;
        }
    }
    made
}

/// Images waiting in the shared staging table (its high-water mark is no image).
fn staged(conn: &Connection) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM rowtrail_staging WHERE rowtrail_op IS NOT 'H'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// The archive holds every change once, in seq order, and verifies.
fn assert_archived_once(archive: &Archive, made: u64) {
    let archived = assert_archived_in_seq_order(archive);
    assert_eq!(archived as u64, made, "every change archived once");
}

#[test]
fn a_writer_committing_during_the_pass_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn, mut archive) = setup(dir.path());
    let mut made = write(&conn, 0, 400);
    let mut src = SqliteSource::open(&db).unwrap();
    let writer = std::thread::spawn({
        let db = db.clone();
        move || {
            let c = Connection::open(&db).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            write(&c, 400, 1000)
        }
    });
    let mut stats = mover::drain(&mut src, &mut archive, 40).unwrap();
    made += writer.join().unwrap();
    let last = mover::drain(&mut src, &mut archive, 40).unwrap();
    stats.archived += last.archived;
    stats.duplicates += last.duplicates;
    assert_eq!((stats.archived, stats.duplicates), (made, 0), "{stats:?}");
    assert_eq!(staged(&conn), 0);
    assert_archived_once(&archive, made);
}

#[test]
fn a_stopped_pass_has_deleted_every_batch_it_archived() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn, mut archive) = setup(dir.path());
    write(&conn, 0, 300);
    let before = staged(&conn);
    let mut src = SqliteSource::open(&db).unwrap();
    let (stats, drained) =
        mover::drain_while(&mut src, &mut archive, 50, &mut |s| s.batches < 3).unwrap();
    assert!(!drained);
    assert_eq!(stats.batches, 3, "{stats:?}");
    assert_eq!(
        staged(&conn),
        before - stats.images as i64,
        "the archived batches' deletes committed before the pass returned"
    );
    let rest = mover::drain(&mut src, &mut archive, 50).unwrap();
    assert_eq!(rest.duplicates, 0, "{rest:?}");
    assert_eq!(staged(&conn), 0);
}

/// A [`SqliteSource`] whose deleter fails its `fail_at`-th delete (1-based), deleting nothing.
struct FailingDelete {
    inner: SqliteSource,
    fail_at: usize,
}

struct FailingDeleter {
    inner: Box<dyn StagingDeleter>,
    left: usize,
}

impl StagingDeleter for FailingDeleter {
    fn delete(
        &mut self,
        incarnation: &str,
        tables: &[CapturedTable],
        keys: &[StagedKey],
    ) -> Result<(), ReaderError> {
        self.left -= 1;
        if self.left == 0 {
            return Err(ReaderError::NotInstalled {
                location: "the failing deleter".into(),
            });
        }
        self.inner.delete(incarnation, tables, keys)
    }
}

impl Source for FailingDelete {
    fn info(&self) -> &SourceInfo {
        self.inner.info()
    }
    fn tables(&self) -> &[CapturedTable] {
        self.inner.tables()
    }
    fn refresh(&mut self) -> Result<(), ReaderError> {
        self.inner.refresh()
    }
    fn read_batch(
        &mut self,
        limit: usize,
        above: Option<i64>,
    ) -> Result<Vec<StagedImage>, ReaderError> {
        self.inner.read_batch(limit, above)
    }
    fn delete_staged(&mut self, keys: &[StagedKey]) -> Result<(), ReaderError> {
        self.inner.delete_staged(keys)
    }
    fn delete_behind(&mut self) -> Result<Option<Box<dyn StagingDeleter>>, ReaderError> {
        let inner = self.inner.delete_behind()?.expect("SQLite deletes behind");
        Ok(Some(Box::new(FailingDeleter {
            inner,
            left: self.fail_at,
        })))
    }
    fn probe(&mut self) -> Result<i64, ReaderError> {
        self.inner.probe()
    }
    fn staged_count(&mut self) -> Result<u64, ReaderError> {
        self.inner.staged_count()
    }
}

#[test]
fn a_failed_delete_fails_the_pass_and_the_next_pass_archives_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn, mut archive) = setup(dir.path());
    let made = write(&conn, 0, 300);
    let before = staged(&conn);
    let mut src = FailingDelete {
        inner: SqliteSource::open(&db).unwrap(),
        fail_at: 3,
    };
    let e = mover::drain(&mut src, &mut archive, 50).unwrap_err();
    assert!(e.to_string().contains("the failing deleter"), "{e}");
    // Two batches deleted; the third archived and still staged, and up to two more archived
    // while its delete ran.
    let archived = archive.change_count().unwrap();
    let left = staged(&conn);
    assert!(
        (100..=102).contains(&(before - left)),
        "{} images deleted",
        before - left
    );
    src.fail_at = usize::MAX;
    let next = mover::drain(&mut src, &mut archive, 50).unwrap();
    assert!(next.duplicates > 0, "{next:?}");
    assert_eq!(archived + next.archived, made);
    assert_eq!(staged(&conn), 0);
    assert_archived_once(&archive, made);
}

#[test]
fn a_read_above_a_seq_skips_only_lower_seqs_and_a_reinstall_starts_from_the_first_image() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn, _archive) = setup(dir.path());
    write(&conn, 0, 10);
    let mut src = SqliteSource::open(&db).unwrap();
    let all: Vec<i64> = src
        .read_batch(100, None)
        .unwrap()
        .iter()
        .map(|i| i.seq)
        .collect();
    let above = all[11];
    let rest: Vec<i64> = src
        .read_batch(100, Some(above))
        .unwrap()
        .iter()
        .map(|i| i.seq)
        .collect();
    assert_eq!(rest, all[12..]);

    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::uninstall(&db, None, true, "test").unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    write(&conn, 10, 12);
    let after: Vec<i64> = src
        .read_batch(100, Some(above))
        .unwrap()
        .iter()
        .map(|i| i.seq)
        .collect();
    assert_eq!(after, [1, 2, 3, 4], "the new incarnation's seqs start at 1");
}

#[test]
fn a_deleter_refuses_keys_read_under_another_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn, _archive) = setup(dir.path());
    write(&conn, 0, 5);
    let mut src = SqliteSource::open(&db).unwrap();
    let keys: Vec<StagedKey> = src
        .read_batch(100, None)
        .unwrap()
        .iter()
        .map(|i| (i.table, i.seq))
        .collect();
    let mut deleter = src.delete_behind().unwrap().expect("SQLite deletes behind");
    let e = deleter
        .delete("an-older-incarnation", src.tables(), &keys)
        .unwrap_err();
    assert!(matches!(e, ReaderError::IncarnationChanged { .. }), "{e}");
    assert_eq!(staged(&conn), keys.len() as i64, "nothing deleted");
    deleter
        .delete(&src.info().incarnation, src.tables(), &keys)
        .unwrap();
    assert_eq!(staged(&conn), 0);
}
