//! Deleting exactly the staged images a pass copied from a SQLite source.
//!
//! Deleting key by key costs a B-tree descent per image. A pass copies every image whose seq
//! lies in a range of the shared staging table (it reads in seq order), so a batch is usually
//! deleted with range statements instead. That is exact, not a `seq <= max` shortcut:
//!
//! * no image can enter the range after the copy: SQLite has one writer at a time, and a
//!   writer's images take rowids above the highest one while it holds the write lock, so every
//!   image committed after the copy's snapshot has a seq above every seq the copy saw;
//! * inside the delete's own write transaction, the range is counted first, and the range
//!   statements are used only when it holds exactly as many images as were copied from it;
//!   since it can only have lost images, not gained any, equal counts mean the same images.
//!
//! When the count differs (another process deleted some), the copied keys are deleted one by
//! one, as before.
//!
//! The image with the highest seq is never simply deleted: it becomes the high-water mark, so
//! the next image still takes a seq above it (see [`rowtrail_sql::sqlite`]); the mark it
//! overtook goes first.

use rowtrail_sql::sqlite::{self as gen, objects};
use rowtrail_sql::{staging, Ident};
use rusqlite::{Connection, Transaction};

use super::catalog::incarnation;
use super::connection::err;
use crate::source::{CapturedTable, StagedKey, StagingDeleter};
use crate::{failpoint, ReaderError};

/// One delete statement of a pass.
enum Step {
    /// Every image with a seq in `lo..=hi`, `n` of them.
    Range { lo: i64, hi: i64, n: usize },
    /// One image.
    Key { seq: i64 },
}

impl Step {
    fn images(&self) -> usize {
        match self {
            Step::Range { n, .. } => *n,
            Step::Key { .. } => 1,
        }
    }
}

/// Deletes `keys` (copied in one pass) inside `tx`. The failpoint `during-staging-delete` is
/// hit once about half of them are deleted, before the transaction commits.
pub(super) fn delete_copied(
    tx: &Transaction<'_>,
    _tables: &[CapturedTable],
    keys: &[StagedKey],
    location: &str,
) -> Result<(), ReaderError> {
    let mut seqs: Vec<i64> = keys.iter().map(|&(_, seq)| seq).collect();
    if seqs.is_empty() {
        return Ok(());
    }
    seqs.sort_unstable();
    seqs.dedup();
    let shared = Ident::new(objects::STAGING)?;
    let seq = Ident::new(staging::COL_SEQ)?;
    let op = Ident::new(staging::COL_OP)?;
    // A mark below every image and overtaken goes (a mark inside the range goes with it).
    tx.prepare_cached(&format!(
        "DELETE FROM {shared} WHERE {seq} = (SELECT min({seq}) FROM {shared}) \
         AND {op} = '{mark}' AND {seq} < (SELECT max({seq}) FROM {shared})",
        shared = shared.sqlite(),
        seq = seq.sqlite(),
        op = op.sqlite(),
        mark = gen::OP_HIGH_WATER,
    ))
    .and_then(|mut s| s.execute([]))
    .map_err(err(location, "cannot delete from staging"))?;
    let highest: Option<i64> = tx
        .prepare_cached(&format!(
            "SELECT max({seq}) FROM {shared}",
            seq = seq.sqlite(),
            shared = shared.sqlite()
        ))
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(err(location, "cannot read staging"))?;
    // The last copied image is the highest of all: it becomes the mark after the others go.
    let mark = match (highest, seqs.last()) {
        (Some(h), Some(&last)) if h == last => seqs.pop(),
        _ => None,
    };
    let mut steps = Vec::new();
    // Overtaken marks inside the range, which its range statements delete too.
    let mut marks = 0usize;
    if let (Some(&lo), Some(&hi)) = (seqs.first(), seqs.last()) {
        let (staged, in_range): (i64, i64) = tx
            .prepare_cached(&format!(
                "SELECT count(*), coalesce(sum({op} IS '{mark}'), 0) FROM {} WHERE {} BETWEEN ?1 AND ?2",
                shared.sqlite(),
                seq.sqlite(),
                op = op.sqlite(),
                mark = gen::OP_HIGH_WATER,
            ))
            .and_then(|mut s| s.query_row([lo, hi], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(err(location, "cannot count staged images"))?;
        if staged - in_range == seqs.len() as i64 {
            marks = in_range as usize;
            // Two halves, so that a kill between them is a kill in the middle of the delete.
            let mid = seqs.len() / 2;
            if mid > 0 {
                steps.push(Step::Range {
                    lo,
                    hi: seqs[mid - 1],
                    n: mid,
                });
            }
            steps.push(Step::Range {
                lo: seqs[mid],
                hi,
                n: seqs.len() - mid,
            });
        } else {
            steps.extend(seqs.iter().map(|&seq| Step::Key { seq }));
        }
    }
    if let Some(seq) = mark {
        steps.push(Step::Key { seq });
    }
    let half = keys.len() / 2;
    let (mut done, mut removed, mut expected) = (0usize, 0usize, marks);
    let mut hit = false;
    for step in &steps {
        if !hit && done >= half {
            failpoint::hit("during-staging-delete");
            hit = true;
        }
        let (lo, hi) = match *step {
            Step::Range { lo, hi, .. } => (lo, hi),
            Step::Key { seq } => (seq, seq),
        };
        let deleted = tx
            .prepare_cached(&format!(
                "DELETE FROM {} WHERE {} BETWEEN ?1 AND ?2",
                shared.sqlite(),
                seq.sqlite()
            ))
            .and_then(|mut s| s.execute([lo, hi]))
            .map_err(err(location, "cannot delete from staging"))?;
        if let Step::Range { n, .. } = step {
            removed += deleted;
            expected += n;
        }
        done += step.images();
    }
    if removed != expected {
        // Impossible by the count above; refuse to commit rather than guess.
        return Err(ReaderError::Source {
            location: location.to_string(),
            context: format!(
                "the range deletes in staging removed {removed} rows where {expected} were copied \
                 or overtaken marks; nothing was deleted"
            ),
            cause: rusqlite::Error::StatementChangedRows(removed),
        });
    }
    if let Some(m) = mark {
        tx.prepare_cached(&format!(
            "INSERT INTO {shared} ({seq}, {op}) VALUES (?1, '{}')",
            gen::OP_HIGH_WATER,
            shared = shared.sqlite(),
            seq = seq.sqlite(),
            op = op.sqlite(),
        ))
        .and_then(|mut s| s.execute([m]))
        .map_err(err(location, "cannot keep the high-water mark"))?;
    }
    Ok(())
}

/// Deletes `keys` (read under `expected`, indexing `tables`) in one immediate transaction.
pub(super) fn delete_under(
    conn: &mut Connection,
    location: &str,
    expected: &str,
    tables: &[CapturedTable],
    keys: &[StagedKey],
) -> Result<(), ReaderError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err(location, "cannot start the staging delete"))?;
    // The batch was read under this incarnation; after a reinstall the same staging names
    // hold the new incarnation's images, which must not be touched.
    let found = incarnation(&tx, location)?.unwrap_or_default();
    if found != expected {
        return Err(ReaderError::IncarnationChanged {
            location: location.to_string(),
            expected: expected.to_string(),
            found,
        });
    }
    delete_copied(&tx, tables, keys, location)?;
    tx.commit()
        .map_err(err(location, "cannot commit the staging delete"))
}

/// The delete-behind handle of a [`SqliteSource`]: a second connection to the same file.
pub(super) struct SqliteDeleter {
    pub(super) conn: Connection,
    pub(super) location: String,
}

impl StagingDeleter for SqliteDeleter {
    fn delete(
        &mut self,
        incarnation: &str,
        tables: &[CapturedTable],
        keys: &[StagedKey],
    ) -> Result<(), ReaderError> {
        delete_under(&mut self.conn, &self.location, incarnation, tables, keys)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use crate::source::Source;
    use crate::sqlite::SqliteSource;

    /// A captured database with tables `a` and `b`, and a writer connection to it.
    fn captured() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT);",
        )
        .unwrap();
        let tables = SqliteSource::candidate_tables(&path, None).unwrap();
        SqliteSource::install(&path, &tables, "test").unwrap();
        (dir, path, conn)
    }

    /// Every staged image as (table, seq), in seq order (the high-water mark is no image).
    fn staged(conn: &Connection) -> Vec<(String, i64)> {
        conn.prepare(
            "SELECT r.table_name, s.rowtrail_seq FROM rowtrail_staging AS s \
             JOIN rowtrail_registry AS r ON r.table_id = s.rowtrail_table ORDER BY s.rowtrail_seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn write(conn: &Connection, from: i64, to: i64) {
        for i in from..to {
            let table = if i % 3 == 0 { "b" } else { "a" };
            conn.execute(
                &format!("INSERT INTO {table} (id, v) VALUES (?1, 'x')"),
                [i],
            )
            .unwrap();
            if i % 4 == 0 {
                conn.execute(&format!("UPDATE {table} SET v = 'y' WHERE id = ?1"), [i])
                    .unwrap();
            }
        }
    }

    #[test]
    fn deletes_exactly_the_copied_images_of_every_table() {
        let (_dir, path, conn) = captured();
        write(&conn, 1, 60);
        let before = staged(&conn);
        let mut source = SqliteSource::open(&path).unwrap();
        let batch = source.read_batch(31, None).unwrap();
        let copied: Vec<(usize, i64)> = batch.iter().map(|i| (i.table, i.seq)).collect();
        // Written after the copy: must survive the delete.
        write(&conn, 60, 70);
        source.delete_staged(&copied).unwrap();
        let after = staged(&conn);
        let copied_seqs: Vec<i64> = copied.iter().map(|k| k.1).collect();
        let expected: Vec<(String, i64)> = before
            .iter()
            .filter(|(_, s)| !copied_seqs.contains(s))
            .cloned()
            .collect();
        assert_eq!(after[..expected.len()], expected[..]);
        assert!(after[expected.len()..]
            .iter()
            .all(|(_, s)| *s > *copied_seqs.iter().max().unwrap()));
        // 10 inserts and 3 updates (60, 64, 68) of two images each.
        assert_eq!(after.len() - expected.len(), 16);
    }

    #[test]
    fn falls_back_to_single_keys_when_some_were_already_deleted() {
        let (_dir, path, conn) = captured();
        write(&conn, 1, 40);
        let mut source = SqliteSource::open(&path).unwrap();
        let batch = source.read_batch(20, None).unwrap();
        let copied: Vec<(usize, i64)> = batch.iter().map(|i| (i.table, i.seq)).collect();
        // Another process removes one copied image of each table between copy and delete.
        for i in 0..2 {
            let seq = copied.iter().find(|k| k.0 == i).unwrap().1;
            conn.execute(
                "DELETE FROM rowtrail_staging WHERE rowtrail_seq = ?1",
                [seq],
            )
            .unwrap();
        }
        let left_before: Vec<i64> = staged(&conn).into_iter().map(|(_, s)| s).collect();
        source.delete_staged(&copied).unwrap();
        let left: Vec<i64> = staged(&conn).into_iter().map(|(_, s)| s).collect();
        let expected: Vec<i64> = left_before
            .into_iter()
            .filter(|s| !copied.iter().any(|k| k.1 == *s))
            .collect();
        assert_eq!(left, expected);
        assert!(!left.is_empty());
    }
}
