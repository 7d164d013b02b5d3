//! Baseline snapshots of a SQLite source's tables: one read transaction per table covers its
//! rows, the sequence's value and the time, so the snapshot's position in the change stream is
//! exact (seqs are taken under the write lock, so every image up to the sequence's value was
//! committed before the snapshot began, and none after it).
//!
//! The read holds a snapshot for as long as the table takes to read; writers go on meanwhile
//! (WAL), though the WAL cannot be checkpointed past the snapshot until it ends.

use rowtrail_sql::Value;

use super::connection::err;
use super::staging::sequence_value;
use super::value::value_of;
use super::SqliteSource;
use crate::archive::BaselineRow;
use crate::source::{CapturedTable, SnapshotPosition};
use crate::ReaderError;

impl SqliteSource {
    /// Reads `table` in one snapshot, in key order (rowid order for a table without a key),
    /// handing `each` `page` rows at a time.
    pub(super) fn snapshot(
        &mut self,
        table: &CapturedTable,
        page: usize,
        each: &mut dyn FnMut(&[BaselineRow]) -> Result<(), ReaderError>,
    ) -> Result<SnapshotPosition, ReaderError> {
        let location = self.info.location.clone();
        let t = &table.table;
        let rowid = if t.rowid {
            Some(rowtrail_sql::sqlite::rowid_alias(t).ok_or_else(|| {
                ReaderError::BadRequest(format!(
                    "table {} hides its rowid behind columns named rowid, _rowid_ and oid",
                    t.name
                ))
            })?)
        } else {
            None
        };
        let mut cols: Vec<String> = Vec::with_capacity(t.columns.len() + 1);
        if let Some(alias) = rowid {
            cols.push(alias.to_string());
        }
        cols.extend(t.columns.iter().map(|c| c.name.sqlite().to_string()));
        let order: Vec<String> = if t.primary_key.is_empty() {
            vec![rowid.unwrap_or("rowid").to_string()]
        } else {
            t.primary_key
                .iter()
                .map(|&i| t.columns[i].name.sqlite().to_string())
                .collect()
        };
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {}",
            cols.join(", "),
            t.name.name.sqlite(),
            order.join(", ")
        );
        let tx = self.conn.transaction().map_err(err(
            &location,
            "cannot start the baseline's read transaction",
        ))?;
        let (seq, taken_at) = snapshot_start(&tx, &location)?;
        let mut rows_read = 0u64;
        {
            let mut stmt = tx
                .prepare(&sql)
                .map_err(err(&location, "cannot read the table for its baseline"))?;
            let mut q = stmt
                .query([])
                .map_err(err(&location, "cannot read the table for its baseline"))?;
            let skip = usize::from(rowid.is_some());
            let mut buf: Vec<BaselineRow> = Vec::with_capacity(page);
            while let Some(r) = q
                .next()
                .map_err(err(&location, "cannot read the table for its baseline"))?
            {
                let id = match rowid {
                    Some(_) => Some(
                        r.get::<_, i64>(0)
                            .map_err(err(&location, "cannot read a rowid"))?,
                    ),
                    None => None,
                };
                let mut values: Vec<Value> = Vec::with_capacity(t.columns.len());
                for i in 0..t.columns.len() {
                    values.push(value_of(
                        r.get_ref(i + skip)
                            .map_err(err(&location, "cannot read a column"))?,
                    ));
                }
                buf.push((id, values));
                rows_read += 1;
                if buf.len() >= page {
                    each(&buf)?;
                    buf.clear();
                }
            }
            if !buf.is_empty() {
                each(&buf)?;
            }
        }
        tx.commit()
            .map_err(err(&location, "cannot end the baseline's read transaction"))?;
        Ok(SnapshotPosition {
            seq,
            taken_at,
            rows: rows_read,
        })
    }
}

/// Starts the snapshot of the read transaction `tx` with its first read: the sequence's value
/// and the source's time, both as of the snapshot.
pub(super) fn snapshot_start(
    tx: &rusqlite::Transaction<'_>,
    location: &str,
) -> Result<(i64, String), ReaderError> {
    let seq = sequence_value(tx, location)?;
    let taken_at: String = tx
        .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
            r.get(0)
        })
        .map_err(err(location, "cannot read the time"))?;
    Ok((seq, taken_at))
}
