//! Schema 6: every change's row key rewritten in the key form of [`rowtrail_sql::key`].
//!
//! Keys were the canonical image of the key values, with integers little-endian: rows inserted
//! with rising ids landed all over the row index (a quarter of the time a 1,000,000-change drain
//! took). Keys are derived data, outside the hash chain, so they are recomputed from each
//! change's stored images and table definition, exactly as appending computes them; hashes,
//! ids and images are untouched.

use std::collections::HashMap;

use rowtrail_sql::{image, Table};
use rusqlite::types::ValueRef;
use rusqlite::Transaction;

use super::append::row_key;

/// Rewrites `row_key` and `prev_key` of every change inside `tx`; returns how many.
pub(super) fn rekey_all(tx: &Transaction<'_>) -> Result<u64, String> {
    let sql_err = |e: rusqlite::Error| e.to_string();
    tx.execute_batch("DROP INDEX changes_by_row; DROP INDEX changes_by_prev_row;")
        .map_err(sql_err)?;
    let mut tables: HashMap<i64, Table> = HashMap::new();
    let mut read = tx
        .prepare(
            "SELECT c.id, c.version_id, v.definition, c.src_rowid, c.before, c.after \
             FROM changes c JOIN table_versions v ON v.id = c.version_id ORDER BY c.id",
        )
        .map_err(sql_err)?;
    let mut write = tx
        .prepare("UPDATE changes SET row_key = ?2, prev_key = ?3 WHERE id = ?1")
        .map_err(sql_err)?;
    let mut rows = read.query([]).map_err(sql_err)?;
    let mut done = 0u64;
    while let Some(r) = rows.next().map_err(sql_err)? {
        let id: i64 = r.get(0).map_err(sql_err)?;
        let version: i64 = r.get(1).map_err(sql_err)?;
        let table = match tables.entry(version) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let definition: String = r.get(2).map_err(sql_err)?;
                e.insert(Table::from_json(&definition).map_err(|err| {
                    format!("change {id}: its table definition does not parse: {err}")
                })?)
            }
        };
        let rowid: Option<i64> = r.get(3).map_err(sql_err)?;
        let image_at = |i: usize| -> Result<Option<Vec<rowtrail_sql::Value>>, String> {
            match r.get_ref(i).map_err(sql_err)? {
                ValueRef::Blob(b) => image::decode(b)
                    .map(Some)
                    .map_err(|e| format!("change {id}: an image does not decode: {e}")),
                _ => Ok(None),
            }
        };
        let (before, after) = (image_at(4)?, image_at(5)?);
        let main = after
            .as_ref()
            .or(before.as_ref())
            .map_or(&[][..], Vec::as_slice);
        let key = row_key(table, main, rowid);
        let prev = match (&before, &after) {
            (Some(b), Some(_)) => Some(row_key(table, b, rowid)).filter(|k| *k != key),
            _ => None,
        };
        write
            .execute(rusqlite::params![id, key, prev])
            .map_err(sql_err)?;
        done += 1;
    }
    drop(rows);
    tx.execute_batch(
        "CREATE INDEX changes_by_row ON changes (table_id, row_key);
         CREATE INDEX changes_by_prev_row ON changes (table_id, prev_key) WHERE prev_key IS NOT NULL;",
    )
    .map_err(sql_err)?;
    Ok(done)
}
