//! Schema 6 recomputes every row key from the stored images: an archive written before it
//! (keys in the old form) comes out with exactly the keys appending writes now, its history
//! lookups work, and its chain still verifies.

use rowtrail_reader::archive::{Archive, ArchiveOptions, ChangeQuery};
use rowtrail_reader::mover;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_sql::{Ident, TableName, Value};
use rusqlite::Connection;

type Keys = Vec<(i64, Vec<u8>, Option<Vec<u8>>)>;

fn keys(trail: &std::path::Path) -> Keys {
    Connection::open(trail)
        .unwrap()
        .prepare("SELECT id, row_key, prev_key FROM changes ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn row_keys_are_recomputed_exactly_and_history_still_finds_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("src.db");
    let trail = dir.path().join("trail.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT);
         CREATE TABLE c (a TEXT, b INTEGER, v REAL, PRIMARY KEY (a, b)) WITHOUT ROWID;
         CREATE TABLE n (x, y);",
    )
    .unwrap();
    let tables = SqliteSource::candidate_tables(&db, None).unwrap();
    SqliteSource::install(&db, &tables, "test").unwrap();
    conn.execute_batch(
        "INSERT INTO k VALUES (-5, 'a'), (7, 'b'), (300, 'c');
         UPDATE k SET v = 'bb' WHERE id = 7;
         UPDATE k SET id = 8 WHERE id = 7;
         DELETE FROM k WHERE id = 300;
         INSERT INTO c VALUES ('p', 1, 1.5), ('p', 2, 2.5);
         UPDATE c SET b = 3 WHERE b = 2;
         INSERT INTO n VALUES (1, 'one'), (1, 'one');
         DELETE FROM n WHERE rowid = 1;",
    )
    .unwrap();
    {
        let mut src = SqliteSource::open(&db).unwrap();
        let mut archive = Archive::open(&trail, &ArchiveOptions::default()).unwrap();
        mover::drain(&mut src, &mut archive, 4).unwrap();
    }
    let written = keys(&trail);
    assert!(
        written.iter().any(|k| k.2.is_some()),
        "a key change is present"
    );

    // What an archive of schema 5 looks like: keys in another form.
    let a = Connection::open(&trail).unwrap();
    a.execute_batch(
        "UPDATE changes SET row_key = CAST(x'01' || row_key AS BLOB),
           prev_key = CAST(x'01' || prev_key AS BLOB);
         PRAGMA user_version = 5;",
    )
    .unwrap();
    drop(a);
    assert_ne!(keys(&trail), written);

    let archive = Archive::open(&trail, &ArchiveOptions::default()).unwrap();
    assert_eq!(
        keys(&trail),
        written,
        "the migration recomputes what appending writes"
    );
    let report = archive.verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let history = |table: &str, key: Vec<Value>| {
        archive
            .changes(&ChangeQuery {
                table: Some(TableName::bare(Ident::new(table).unwrap())),
                row_key: Some(rowtrail_sql::key::encode_key(&key)),
                ..ChangeQuery::default()
            })
            .unwrap()
            .len()
    };
    // By key, or by old key for a key change (which is how history follows a row).
    assert_eq!(
        history("k", vec![Value::Integer(7)]),
        3,
        "insert, update, key change"
    );
    assert_eq!(history("k", vec![Value::Integer(8)]), 1, "the key change");
    assert_eq!(history("k", vec![Value::Integer(-5)]), 1);
    assert_eq!(history("c", vec![Value::text("p"), Value::Integer(2)]), 2);
    assert_eq!(history("c", vec![Value::text("p"), Value::Integer(3)]), 1);
    let version: i64 = Connection::open(&trail)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, rowtrail_reader::archive::schema::LATEST);
}
