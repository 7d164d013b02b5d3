//! Transaction labels are archived as captured, whatever they look like, and archives written
//! before schema 4 (which turned integer-looking labels into integers) still verify.

use std::path::Path;

use rowtrail_reader::archive::{Archive, ArchiveOptions, ChangeQuery};
use rowtrail_reader::mover;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_sql::Value;
use rusqlite::Connection;

/// A captured table `t` in `dir/src.db`.
fn source(dir: &Path) -> Connection {
    let db = dir.join("src.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    conn
}

/// One insert in a transaction labelled `label`.
fn labelled_insert(conn: &Connection, id: i64, label: &str) {
    conn.execute_batch("BEGIN").unwrap();
    conn.execute(
        "INSERT INTO rowtrail_context (id, tx, login) VALUES (1, ?1, 'alice')",
        [label],
    )
    .unwrap();
    conn.execute("INSERT INTO t (id, v) VALUES (?1, 'x')", [id])
        .unwrap();
    conn.execute_batch("DELETE FROM rowtrail_context; COMMIT")
        .unwrap();
}

fn drain(dir: &Path) -> Archive {
    let mut src = SqliteSource::open(&dir.join("src.db")).unwrap();
    let mut archive = Archive::open(&dir.join("trail.db"), &ArchiveOptions::default()).unwrap();
    mover::drain(&mut src, &mut archive, 100).unwrap();
    archive
}

fn labels(archive: &Archive) -> Vec<Option<Value>> {
    archive
        .changes(&ChangeQuery::default())
        .unwrap()
        .into_iter()
        .map(|c| c.tx)
        .collect()
}

#[test]
fn integer_looking_labels_stay_text_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let conn = source(dir.path());
    for (id, label) in [(1, "81723"), (2, "042"), (3, "1e3"), (4, "batch-7")] {
        labelled_insert(&conn, id, label);
    }
    let archive = drain(dir.path());
    let got = labels(&archive);
    let want: Vec<Option<Value>> = ["81723", "042", "1e3", "batch-7"]
        .iter()
        .map(|l| Some(Value::text(l)))
        .collect();
    assert_eq!(got, want);
    let report = archive.verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
}

#[test]
fn archives_from_schema_3_migrate_and_their_converted_labels_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let conn = source(dir.path());
    labelled_insert(&conn, 1, "81723");
    labelled_insert(&conn, 2, "batch-7");
    drop(drain(dir.path()));
    // Make the file what schema 3 wrote: `tx ANY` (NUMERIC affinity), the label converted.
    let trail = dir.path().join("trail.db");
    let a = Connection::open(&trail).unwrap();
    a.execute_batch(
        "BEGIN;
         CREATE TABLE old AS SELECT * FROM changes;
         DROP TABLE changes;
         CREATE TABLE changes (id INTEGER PRIMARY KEY, source_id INTEGER NOT NULL, seq INTEGER NOT NULL,
           table_id INTEGER NOT NULL, version_id INTEGER NOT NULL, op TEXT NOT NULL, tx ANY, stmt ANY,
           at TEXT, login TEXT, host TEXT, app TEXT, client_ip TEXT, row_key BLOB NOT NULL,
           prev_key BLOB, src_rowid INTEGER, before BLOB, after BLOB, archived_us INTEGER NOT NULL,
           hash BLOB NOT NULL);
         INSERT INTO changes SELECT * FROM old;
         DROP TABLE old;
         PRAGMA user_version = 3;
         COMMIT;",
    )
    .unwrap();
    let kind: String = a
        .query_row("SELECT typeof(tx) FROM changes WHERE id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(kind, "integer", "schema 3 converted the label");
    drop(a);

    labelled_insert(&conn, 3, "90001");
    let archive = drain(dir.path());
    let report = archive.verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        labels(&archive),
        vec![
            Some(Value::Integer(81723)),
            Some(Value::text("batch-7")),
            Some(Value::text("90001")),
        ],
        "old rows stay as stored, new ones keep their text"
    );
    drop(archive);

    // The allowance is for the text form only: another number is still tampering.
    Connection::open(&trail)
        .unwrap()
        .execute("UPDATE changes SET tx = 81724 WHERE id = 1", [])
        .unwrap();
    let archive = Archive::open_read_only(&trail).unwrap();
    let report = archive.verify(None).unwrap();
    assert!(!report.ok());
    assert!(
        report.problems[0].contains("change 1"),
        "{:?}",
        report.problems
    );
}
