//! Capture uninstalled and installed again while a reader holds the source open: the new
//! incarnation's images (whose seqs start again from 1) are archived as a new source, never
//! dropped as "already archived", and a batch read under the old incarnation never deletes the
//! new one's images that reuse its staging names and seqs.

mod common;

use std::path::Path;

use common::assert_archived_in_seq_order;
use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::source::Source;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_reader::ReaderError;
use rusqlite::Connection;

fn setup(dir: &Path) -> (Connection, Vec<rowtrail_sql::Table>) {
    let db = dir.join("src.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    (conn, tables)
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

#[test]
fn a_reinstall_between_passes_starts_a_new_source_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let (conn, tables) = setup(dir.path());
    conn.execute_batch("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        .unwrap();
    let mut src = SqliteSource::open(&db).unwrap();
    let mut archive =
        Archive::open(&dir.path().join("trail.db"), &ArchiveOptions::default()).unwrap();
    let first = mover::drain(&mut src, &mut archive, 100).unwrap();
    assert_eq!(first.archived, 2);
    let old = src.info().incarnation.clone();

    SqliteSource::uninstall(&db, None, false, "test").unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    conn.execute_batch("INSERT INTO t VALUES (3, 'c'), (4, 'd')")
        .unwrap();
    let second = mover::drain(&mut src, &mut archive, 100).unwrap();
    assert_eq!((second.archived, second.duplicates), (2, 0), "{second:?}");
    assert_ne!(src.info().incarnation, old);
    assert_eq!(archive.change_count().unwrap(), 4);
    assert_eq!(archive.sources().unwrap().len(), 2);
    assert_eq!(staged(&conn), 0);
    assert!(archive.verify(None).unwrap().ok());
}

#[test]
fn a_batch_read_before_a_reinstall_deletes_nothing_of_the_new_incarnation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let (conn, tables) = setup(dir.path());
    conn.execute_batch("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        .unwrap();
    let mut src = SqliteSource::open(&db).unwrap();
    let batch = src.read_batch(100, None).unwrap();
    let keys: Vec<(usize, i64)> = batch.iter().map(|i| (i.table, i.seq)).collect();

    // Reinstalled (its staged images discarded) and written to, reusing seqs 1 and 2.
    SqliteSource::uninstall(&db, None, true, "test").unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    conn.execute_batch("INSERT INTO t VALUES (3, 'c'), (4, 'd')")
        .unwrap();
    let e = src.delete_staged(&keys).unwrap_err();
    assert!(matches!(e, ReaderError::IncarnationChanged { .. }), "{e}");
    assert_eq!(
        staged(&conn),
        2,
        "the new incarnation's images are untouched"
    );
}

#[test]
fn a_table_captured_while_the_reader_runs_is_read_in_seq_order_with_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let (conn, _) = setup(dir.path());
    conn.execute_batch("CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let mut src = SqliteSource::open(&db).unwrap();
    let mut archive =
        Archive::open(&dir.path().join("trail.db"), &ArchiveOptions::default()).unwrap();
    conn.execute_batch("INSERT INTO t VALUES (1, 'a')").unwrap();
    // `u` is captured too while the reader is between batches of a pass (no refresh).
    let both = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &both, "test").unwrap();
    conn.execute_batch("INSERT INTO u VALUES (1, 'b'); INSERT INTO t VALUES (2, 'c');")
        .unwrap();
    let stats = mover::drain(&mut src, &mut archive, 100).unwrap();
    assert_eq!(stats.archived, 3, "{stats:?}");
    assert_archived_in_seq_order(&archive);
}
