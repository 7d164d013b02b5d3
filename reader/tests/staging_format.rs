//! The shared staging table (staging format 2): the seq never goes back after the reader
//! deletes what it archived, `sequence_value` reads the highest seq taken in the same snapshot
//! as the staged rows, and an install of format 1 (a staging table per captured table and a
//! counter row) migrates with its waiting images kept and read on in seq order.

use rowtrail_reader::source::Source;
use rowtrail_reader::sqlite::staging::sequence_value;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_sql::sqlite::CaptureNames;
use rowtrail_sql::Value;
use rusqlite::Connection;

fn source(dir: &std::path::Path) -> (std::path::PathBuf, Connection) {
    let db = dir.join("src.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
    )
    .unwrap();
    (db, conn)
}

fn seqs(src: &mut SqliteSource) -> Vec<(i64, String, Vec<Value>)> {
    src.read_batch(1000, None)
        .unwrap()
        .into_iter()
        .map(|i| (i.seq, i.op.code().to_string(), i.values))
        .collect()
}

fn drain(src: &mut SqliteSource) {
    let batch = src.read_batch(1000, None).unwrap();
    let keys: Vec<_> = batch.iter().map(|i| (i.table, i.seq)).collect();
    src.delete_staged(&keys).unwrap();
}

#[test]
fn seqs_never_go_back_after_the_reader_deletes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn) = source(dir.path());
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    assert_eq!(sequence_value(&conn, "src").unwrap(), 0);
    conn.execute_batch(
        "INSERT INTO t VALUES (1, 'a'), (2, 'b'); UPDATE t SET v = 'c' WHERE id = 1",
    )
    .unwrap();
    let mut src = SqliteSource::open(&db).unwrap();
    let read: Vec<i64> = seqs(&mut src).iter().map(|s| s.0).collect();
    assert_eq!(read, vec![1, 2, 3, 4]);
    assert_eq!(sequence_value(&conn, "src").unwrap(), 4);
    drain(&mut src);
    // Every image is gone; the highest seq stays taken.
    assert_eq!(src.staged_count().unwrap(), 0);
    assert_eq!(sequence_value(&conn, "src").unwrap(), 4);
    conn.execute_batch("DELETE FROM t WHERE id = 2").unwrap();
    let after = seqs(&mut src);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].0, 5, "a seq was taken again after the deletes");
    // Twice over: the mark the second drain leaves replaces the first one.
    drain(&mut src);
    conn.execute_batch("INSERT INTO t VALUES (7, 'x')").unwrap();
    assert_eq!(seqs(&mut src)[0].0, 6);
    let marks: i64 = conn
        .query_row(
            "SELECT count(*) FROM rowtrail_staging WHERE rowtrail_op = 'H'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(marks <= 1, "{marks} high-water marks");
}

#[test]
fn sequence_value_and_staged_rows_come_from_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn) = source(dir.path());
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    conn.execute_batch("INSERT INTO t VALUES (1, 'a')").unwrap();
    let mut reader = Connection::open(&db).unwrap();
    let tx = reader.transaction().unwrap();
    let rows: i64 = tx
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    // A write committed inside the read transaction is not seen by it.
    conn.execute_batch("INSERT INTO t VALUES (2, 'b')").unwrap();
    assert_eq!(rows, 1);
    assert_eq!(sequence_value(&tx, "src").unwrap(), 1);
    drop(tx);
    assert_eq!(sequence_value(&reader, "src").unwrap(), 2);
}

/// Capture of `t` as staging format 1 left it: a counter at 10, images with seqs 3, 5 and 6
/// waiting in the table's own staging table, and the old triggers writing into it.
fn format_1_install(conn: &Connection, t: &rowtrail_sql::Table) {
    let names = CaptureNames::for_table(t);
    let (s, p) = (names.staging.as_str(), names.pending.as_str());
    let meta = "\"rowtrail_seq\" INTEGER PRIMARY KEY, \"rowtrail_op\" TEXT NOT NULL, \
        \"rowtrail_image\" TEXT NOT NULL, \"rowtrail_tx\", \"rowtrail_stmt\", \"rowtrail_time\", \
        \"rowtrail_login\", \"rowtrail_host\", \"rowtrail_app\", \"rowtrail_client_ip\", \
        \"rowtrail_rowid\", \"id\", \"v\"";
    conn.execute_batch(&format!(
        "CREATE TABLE rowtrail_meta (\"key\" TEXT PRIMARY KEY, \"value\" TEXT NOT NULL);
         INSERT INTO rowtrail_meta VALUES ('format', '1'), ('incarnation', 'inc-1');
         CREATE TABLE rowtrail_sequence (\"id\" INTEGER PRIMARY KEY CHECK (\"id\" = 1), \"value\" INTEGER NOT NULL);
         INSERT INTO rowtrail_sequence VALUES (1, 10);
         CREATE TABLE rowtrail_context (\"id\" INTEGER PRIMARY KEY CHECK (\"id\" = 1), \"tx\", \"login\", \"host\", \"app\", \"client_ip\");
         CREATE TABLE rowtrail_registry (\"table_schema\" TEXT NOT NULL, \"table_name\" TEXT NOT NULL,
           \"staging_name\" TEXT NOT NULL UNIQUE, \"pending_name\" TEXT NOT NULL UNIQUE,
           \"definition\" TEXT NOT NULL, \"installed_at\" TEXT NOT NULL,
           PRIMARY KEY (\"table_schema\", \"table_name\"));
         INSERT INTO rowtrail_registry VALUES ('', 't', '{s}', '{p}', '{def}', '2026-01-01T00:00:00Z');
         CREATE TABLE \"{s}\" ({meta});
         CREATE TABLE \"{p}\" ({meta});
         INSERT INTO \"{s}\" VALUES (3, 'I', 'A', NULL, NULL, 2461000.5, NULL, NULL, NULL, NULL, 1, 1, 'a'),
           (5, 'U', 'B', NULL, NULL, 2461000.5, NULL, NULL, NULL, NULL, 1, 1, 'a'),
           (6, 'U', 'A', NULL, NULL, 2461000.5, NULL, NULL, NULL, NULL, 1, 1, 'b');
         CREATE TRIGGER \"{ai}\" AFTER INSERT ON t BEGIN
           INSERT INTO \"{s}\" (\"rowtrail_op\", \"rowtrail_image\", \"id\", \"v\") VALUES ('I', 'A', NEW.id, NEW.v);
         END;",
        def = t.to_json().replace('\'', "''"),
        ai = names.triggers[2].as_str(),
    ))
    .unwrap();
    conn.execute_batch("INSERT INTO t VALUES (1, 'b')").unwrap();
    conn.execute_batch(&format!("DELETE FROM \"{s}\" WHERE rowtrail_seq > 6"))
        .unwrap();
}

#[test]
fn a_format_1_install_migrates_with_its_waiting_images_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn) = source(dir.path());
    let t = SqliteSource::candidate_tables(&db, None).unwrap().remove(0);
    format_1_install(&conn, &t);
    assert_eq!(sequence_value(&conn, "src").unwrap(), 10);

    let mut src = SqliteSource::open(&db).unwrap();
    let format: String = conn
        .query_row(
            "SELECT value FROM rowtrail_meta WHERE key = 'format'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(format, rowtrail_sql::sqlite::FORMAT);
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name IN (?1, 'rowtrail_sequence')",
            [CaptureNames::for_table(&t).staging.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "the old staging table and counter are dropped");
    // The counter's value stays taken: the next image's seq is above it.
    assert_eq!(sequence_value(&conn, "src").unwrap(), 10);
    conn.execute_batch("INSERT INTO t VALUES (2, 'c')").unwrap();
    let read = seqs(&mut src);
    let text = |s: &str| Value::Text(s.into());
    assert_eq!(
        read,
        vec![
            (3, "I".into(), vec![Value::Integer(1), text("a")]),
            (5, "U".into(), vec![Value::Integer(1), text("a")]),
            (6, "U".into(), vec![Value::Integer(1), text("b")]),
            (11, "I".into(), vec![Value::Integer(2), text("c")]),
        ]
    );
    // Installing again (a new capture version over the migrated source) keeps everything.
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    assert_eq!(seqs(&mut src).len(), 4);
}

#[test]
fn installing_over_a_format_1_install_migrates_it_first() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn) = source(dir.path());
    let t = SqliteSource::candidate_tables(&db, None).unwrap().remove(0);
    format_1_install(&conn, &t);
    SqliteSource::install(&db, &[t], "test").unwrap();
    conn.execute_batch("INSERT INTO t VALUES (2, 'c')").unwrap();
    let mut src = SqliteSource::open(&db).unwrap();
    let read: Vec<i64> = seqs(&mut src).iter().map(|s| s.0).collect();
    assert_eq!(read, vec![3, 5, 6, 11]);
}

#[test]
fn a_wider_table_captured_later_widens_the_staging_table() {
    let dir = tempfile::tempdir().unwrap();
    let (db, conn) = source(dir.path());
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    conn.execute_batch(
        "CREATE TABLE w (id INTEGER PRIMARY KEY, a, b, c, d);
         INSERT INTO t VALUES (1, 'a');",
    )
    .unwrap();
    let all = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &all, "test").unwrap();
    conn.execute_batch("INSERT INTO w VALUES (1, 2, 3, 4, x'05')")
        .unwrap();
    let mut src = SqliteSource::open(&db).unwrap();
    let read = seqs(&mut src);
    assert_eq!(read.len(), 2);
    assert_eq!(
        read[1].2,
        vec![
            Value::Integer(1),
            Value::Integer(2),
            Value::Integer(3),
            Value::Integer(4),
            Value::Blob(vec![5])
        ]
    );
}
