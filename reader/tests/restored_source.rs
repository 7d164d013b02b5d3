//! A source restored from a backup: its sequence goes back, and new changes reuse seqs the
//! archive already holds. They must not be taken for copies already archived (and deleted from
//! staging, lost): the reader stops with a clear error, keeps them staged, and archives them
//! once the source has a new incarnation. (A batch copied again after a crash, with the same
//! contents, still counts as a duplicate: the fault tests in `tests/e2e/faults.rs` cover it.)

use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::source::Source;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_reader::ReaderError;
use rusqlite::Connection;

#[test]
fn changes_that_reuse_archived_seqs_are_kept_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let backup = dir.path().join("backup.db");
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            .unwrap();
    }
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    std::fs::copy(&db, &backup).unwrap();

    let conn = Connection::open(&db).unwrap();
    conn.execute_batch("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .unwrap();
    drop(conn);
    let trail = dir.path().join("trail.db");
    {
        let mut src = SqliteSource::open(&db).unwrap();
        let mut archive = Archive::open(&trail, &ArchiveOptions::default()).unwrap();
        assert_eq!(
            mover::drain(&mut src, &mut archive, 100).unwrap().archived,
            3
        );
    }

    // Restored from the backup taken before those changes, then written to again.
    std::fs::copy(&backup, &db).unwrap();
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch("INSERT INTO t VALUES (7, 'x'), (8, 'y')")
        .unwrap();
    let mut src = SqliteSource::open(&db).unwrap();
    let mut archive = Archive::open(&trail, &ArchiveOptions::default()).unwrap();
    let e = mover::drain(&mut src, &mut archive, 100).unwrap_err();
    assert!(matches!(e, ReaderError::SeqReused { seq: 1, .. }), "{e}");
    assert!(e.to_string().contains("restored from a backup"), "{e}");
    assert_eq!(
        src.staged_count().unwrap(),
        2,
        "nothing deleted from staging"
    );
    assert_eq!(archive.change_count().unwrap(), 3, "nothing appended");

    // The documented fix: a new incarnation. The reader switches to it and archives both.
    conn.execute(
        "UPDATE rowtrail_meta SET \"value\" = lower(hex(randomblob(16))) WHERE \"key\" = 'incarnation'",
        [],
    )
    .unwrap();
    let stats = mover::drain(&mut src, &mut archive, 100).unwrap();
    assert_eq!((stats.archived, stats.duplicates), (2, 0));
    assert_eq!(src.staged_count().unwrap(), 0);
    assert_eq!(archive.change_count().unwrap(), 5);
    assert!(archive.verify(None).unwrap().ok());
}

/// Issue 15: the same change made again on a restored source (same seq, same row, another
/// transaction) is not a copy of the archived one: before, only table, op and images were
/// compared, so it was counted a duplicate and deleted from staging, lost.
#[test]
fn issue15_an_identical_change_replayed_in_another_transaction_is_not_taken_for_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let backup = dir.path().join("backup.db");
    {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            .unwrap();
    }
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    std::fs::copy(&db, &backup).unwrap();
    let write = |tx: &str| {
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(&format!(
            "BEGIN; INSERT INTO rowtrail_context (id, tx, login) VALUES (1, '{tx}', 'alice'); \
             INSERT INTO t VALUES (7, 'x'); DELETE FROM rowtrail_context; COMMIT;"
        ))
        .unwrap();
    };
    write("first");
    let trail = dir.path().join("trail.db");
    let mut archive = Archive::open(&trail, &ArchiveOptions::default()).unwrap();
    {
        let mut src = SqliteSource::open(&db).unwrap();
        assert_eq!(
            mover::drain(&mut src, &mut archive, 100).unwrap().archived,
            1
        );
    }
    std::fs::copy(&backup, &db).unwrap();
    write("replayed");
    let mut src = SqliteSource::open(&db).unwrap();
    let e = mover::drain(&mut src, &mut archive, 100).unwrap_err();
    assert!(matches!(e, ReaderError::SeqReused { .. }), "{e}");
    assert_eq!(
        src.staged_count().unwrap(),
        1,
        "the replayed change is still staged"
    );
    assert_eq!(archive.change_count().unwrap(), 1);
}
