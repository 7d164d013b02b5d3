//! Deleting exactly the staged images a pass copied from a SQLite source.
//!
//! Deleting key by key costs a B-tree descent per image. A pass copies, from each staging
//! table, every image whose seq lies in a range (the k-way merge consumes each table in seq
//! order), so each table's part of a batch is usually deleted with range statements instead.
//! That is exact, not a `seq <= max` shortcut:
//!
//! * no image can enter the range after the copy: SQLite has one writer at a time, and a
//!   writer takes its seqs from the counter while holding the write lock, so every image
//!   committed after the copy's snapshot has a seq above every seq the copy saw;
//! * inside the delete's own write transaction, the range is counted first, and the range
//!   statements are used only when it holds exactly as many images as were copied from it;
//!   since it can only have lost images, not gained any, equal counts mean the same images.
//!
//! When the count differs (another process deleted some), the copied keys are deleted one by
//! one, as before.

use rusqlite::{Connection, Transaction};

use super::catalog::incarnation;
use super::connection::err;
use crate::source::{CapturedTable, StagedKey, StagingDeleter};
use crate::{failpoint, ReaderError};

/// One delete statement of a pass.
enum Step {
    /// Every image of a staging table with a seq in `lo..=hi`, `n` of them.
    Range {
        table: usize,
        lo: i64,
        hi: i64,
        n: usize,
    },
    /// One image.
    Key { table: usize, seq: i64 },
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
    tables: &[CapturedTable],
    keys: &[StagedKey],
    location: &str,
) -> Result<(), ReaderError> {
    let mut per_table: Vec<Vec<i64>> = vec![Vec::new(); tables.len()];
    for &(table, seq) in keys {
        per_table[table].push(seq);
    }
    let seq = rowtrail_sql::Ident::new(rowtrail_sql::staging::COL_SEQ)?;
    let mut steps = Vec::new();
    for (table, seqs) in per_table.iter_mut().enumerate() {
        if seqs.is_empty() {
            continue;
        }
        seqs.sort_unstable();
        seqs.dedup();
        let (lo, hi) = (seqs[0], seqs[seqs.len() - 1]);
        let staged: i64 = tx
            .prepare_cached(&format!(
                "SELECT count(*) FROM {} WHERE {} BETWEEN ?1 AND ?2",
                tables[table].staging.sqlite(),
                seq.sqlite()
            ))
            .and_then(|mut s| s.query_row([lo, hi], |r| r.get(0)))
            .map_err(err(location, "cannot count staged images"))?;
        if staged == seqs.len() as i64 {
            // Two halves, so that a kill between them is a kill in the middle of the delete.
            let mid = seqs.len() / 2;
            if mid > 0 {
                steps.push(Step::Range {
                    table,
                    lo,
                    hi: seqs[mid - 1],
                    n: mid,
                });
            }
            steps.push(Step::Range {
                table,
                lo: seqs[mid],
                hi,
                n: seqs.len() - mid,
            });
        } else {
            steps.extend(seqs.iter().map(|&seq| Step::Key { table, seq }));
        }
    }
    let half = keys.len() / 2;
    let mut done = 0usize;
    let mut hit = false;
    for step in &steps {
        if !hit && done >= half {
            failpoint::hit("during-staging-delete");
            hit = true;
        }
        let (table, lo, hi) = match *step {
            Step::Range { table, lo, hi, .. } => (table, lo, hi),
            Step::Key { table, seq } => (table, seq, seq),
        };
        let deleted = tx
            .prepare_cached(&format!(
                "DELETE FROM {} WHERE {} BETWEEN ?1 AND ?2",
                tables[table].staging.sqlite(),
                seq.sqlite()
            ))
            .and_then(|mut s| s.execute([lo, hi]))
            .map_err(err(location, "cannot delete from staging"))?;
        if let Step::Range { n, .. } = step {
            if deleted != *n {
                // Impossible by the count above; refuse to commit rather than guess.
                return Err(ReaderError::Source {
                    location: location.to_string(),
                    context: format!(
                        "a range delete in staging removed {deleted} images where {n} were copied; \
                         nothing was deleted"
                    ),
                    cause: rusqlite::Error::StatementChangedRows(deleted),
                });
            }
        }
        done += step.images();
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

    fn staged(conn: &Connection) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        let names: Vec<(String, String)> = conn
            .prepare("SELECT table_name, staging_name FROM rowtrail_registry ORDER BY table_name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (table, staging) in names {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT rowtrail_seq FROM \"{staging}\" ORDER BY rowtrail_seq"
                ))
                .unwrap();
            let seqs: Vec<i64> = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            out.extend(seqs.into_iter().map(|s| (table.clone(), s)));
        }
        out.sort_by_key(|(_, s)| *s);
        out
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
        let staging: Vec<String> = conn
            .prepare("SELECT staging_name FROM rowtrail_registry")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (i, name) in staging.iter().enumerate() {
            let seq = copied.iter().find(|k| k.0 == i).unwrap().1;
            conn.execute(
                &format!("DELETE FROM \"{name}\" WHERE rowtrail_seq = ?1"),
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
