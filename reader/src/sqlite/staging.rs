//! Reading staged images from a SQLite source: one snapshot per batch, every staging table read
//! in seq order and merged, each row checked against the staging contract.

use rowtrail_sql::staging;
use rowtrail_sql::{Ident, Value};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};

use super::catalog::{incarnation, registry, schema_version, table_exists};
use super::connection::err;
use super::time::time_text;
use super::value::value_of;
use super::SqliteSource;
use crate::source::{CapturedTable, Meta, StagedImage};
use crate::ReaderError;

impl SqliteSource {
    /// One batch read in one snapshot, provided the incarnation in that snapshot is still the
    /// one this source reads for; otherwise `Err` with the incarnation found.
    pub(super) fn read_under_incarnation(
        &mut self,
        limit: usize,
        above: Option<i64>,
    ) -> Result<Result<Vec<StagedImage>, String>, ReaderError> {
        let location = self.info.location.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(err(&location, "cannot start a read transaction"))?;
        match incarnation(&tx, &location)? {
            None => return Err(ReaderError::NotInstalled { location }),
            Some(found) if found != self.info.incarnation => return Ok(Err(found)),
            Some(_) => {}
        }
        // A table captured since the registry was read must be merged in this very snapshot:
        // its images take seqs from the same counter, and reading them in a later pass, after
        // higher seqs of other tables, would archive them out of order.
        let version = schema_version(&tx, &location)?;
        if version != self.schema_version {
            self.tables = registry(&tx, &location)?;
            self.selects = staging_selects(&self.tables);
            self.schema_version = version;
        }
        let out = read_staged(&tx, &location, &self.tables, &self.selects, limit, above)?;
        if let (Some(first), Some(last)) = (out.first(), out.last()) {
            self.first_read.get_or_insert(first.seq);
            // Read in the schema last seen to match capture: captured as recorded.
            if self.clean_version == Some(version) {
                self.clean_below = Some(self.clean_below.unwrap_or(i64::MIN).max(last.seq));
            }
        }
        // In the same snapshot: the sequence's value. A read that took every image staged in
        // it ends on a transaction boundary there (seqs are taken under the write lock).
        self.snapshot_cut = if out.len() < limit {
            Some(sequence_value(&tx, &location)?)
        } else {
            None
        };
        tx.commit()
            .map_err(err(&location, "cannot end the read transaction"))?;
        Ok(Ok(out))
    }
}

/// Up to `limit` staged images above `above` in seq order across every staging table (never
/// splitting an update's pair), read on `conn` (in the caller's transaction: one snapshot).
/// `selects` are [`staging_selects`] of `tables`.
pub(super) fn read_staged(
    conn: &Connection,
    location: &str,
    tables: &[CapturedTable],
    selects: &[String],
    limit: usize,
    above: Option<i64>,
) -> Result<Vec<StagedImage>, ReaderError> {
    let mut stmts = Vec::with_capacity(selects.len());
    for sql in selects {
        stmts.push(
            conn.prepare_cached(sql)
                .map_err(err(location, "cannot read staging"))?,
        );
    }
    let per_table = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
    let above = above.unwrap_or(i64::MIN);
    let mut cursors = Vec::with_capacity(stmts.len());
    for s in stmts.iter_mut() {
        cursors.push(
            s.query([per_table, above])
                .map_err(err(location, "cannot read staging"))?,
        );
    }
    let streams = cursors
        .iter_mut()
        .enumerate()
        .map(|(i, rows)| {
            std::iter::from_fn(move || next_image(rows, i, &tables[i], location).transpose())
        })
        .collect();
    crate::source::merge_by_seq(streams, limit)
}

/// Per captured table, the SELECT of its staged images in seq order, at most `?1`, with a seq
/// above `?2`.
pub(super) fn staging_selects(tables: &[CapturedTable]) -> Vec<String> {
    let seq = Ident::new(staging::COL_SEQ).expect("valid");
    tables
        .iter()
        .map(|c| {
            let mut cols: Vec<String> = staging::METADATA_COLUMNS
                .iter()
                .map(|m| Ident::new(*m).expect("valid").sqlite().to_string())
                .collect();
            if c.table.rowid {
                cols.push(
                    Ident::new(staging::COL_ROWID)
                        .expect("valid")
                        .sqlite()
                        .to_string(),
                );
            }
            cols.extend(
                c.table
                    .columns
                    .iter()
                    .map(|col| col.name.sqlite().to_string()),
            );
            format!(
                "SELECT {} FROM {} WHERE {seq} > ?2 ORDER BY {seq} LIMIT ?1",
                cols.join(", "),
                c.staging.sqlite(),
                seq = seq.sqlite()
            )
        })
        .collect()
}

/// Whether any staging table of the source behind `conn` still holds an image whose
/// transaction is `tx` (a run's tag: not yet archived).
pub fn staged_with_tx(conn: &Connection, location: &str, tx: &str) -> Result<bool, ReaderError> {
    let tx_col = Ident::new(staging::COL_TX)?;
    for c in registry(conn, location)? {
        let found: Option<i64> = conn
            .query_row(
                &format!(
                    "SELECT 1 FROM {} WHERE {} = ?1 LIMIT 1",
                    c.staging.sqlite(),
                    tx_col.sqlite()
                ),
                [tx],
                |r| r.get(0),
            )
            .optional()
            .map_err(err(location, "cannot read staging"))?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The global sequence's value: the seq the newest committed image took.
pub fn sequence_value(conn: &Connection, location: &str) -> Result<i64, ReaderError> {
    conn.query_row(
        &format!(
            "SELECT \"value\" FROM {} WHERE \"id\" = 1",
            Ident::new(rowtrail_sql::sqlite::objects::SEQUENCE)?.sqlite()
        ),
        [],
        |r| r.get(0),
    )
    .map_err(err(location, "cannot read the sequence"))
}

/// How many images `staging` holds (0 when the table does not exist).
pub(crate) fn count(
    conn: &Connection,
    location: &str,
    staging: &Ident,
) -> Result<u64, ReaderError> {
    if !table_exists(conn, staging.as_str(), location)? {
        return Ok(0);
    }
    conn.query_row(
        &format!("SELECT count(*) FROM {}", staging.sqlite()),
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
    .map_err(err(location, "cannot count staged images"))
}

fn text_of(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
    }
}

/// A staged op or image code as text, borrowed from the row when it is text already.
fn code_of(v: ValueRef<'_>) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t)),
        other => text_of(other).map(std::borrow::Cow::Owned),
    }
}

fn nullable(v: Value) -> Option<Value> {
    (v != Value::Null).then_some(v)
}

fn next_image(
    rows: &mut rusqlite::Rows<'_>,
    table: usize,
    captured: &CapturedTable,
    location: &str,
) -> Result<Option<StagedImage>, ReaderError> {
    let Some(row) = rows.next().map_err(err(location, "cannot read staging"))? else {
        return Ok(None);
    };
    let get = |i: usize| row.get_ref(i).map_err(err(location, "cannot read staging"));
    let seq = match get(0)? {
        ValueRef::Integer(s) => Some(s),
        _ => None,
    };
    let (seq, op, image) = crate::source::staged_kind(
        &captured.staging,
        seq,
        code_of(get(1)?).as_deref(),
        code_of(get(2)?).as_deref(),
    )?;
    let bad = |reason: &str| ReaderError::BadStaging {
        staging: captured.staging.to_string(),
        seq,
        reason: reason.into(),
    };
    let meta = Meta {
        tx: nullable(value_of(get(3)?)),
        stmt: nullable(value_of(get(4)?)),
        time: nullable(value_of(get(5)?)).map(time_text),
        login: text_of(get(6)?),
        host: text_of(get(7)?),
        app: text_of(get(8)?),
        client_ip: text_of(get(9)?),
    };
    let mut col = staging::METADATA_COLUMNS.len();
    let rowid = if captured.table.rowid {
        col += 1;
        match get(col - 1)? {
            ValueRef::Integer(r) => Some(r),
            _ => return Err(bad("its rowid is not an integer")),
        }
    } else {
        None
    };
    let mut values = Vec::with_capacity(captured.table.columns.len());
    for i in 0..captured.table.columns.len() {
        values.push(value_of(get(col + i)?));
    }
    Ok(Some(StagedImage {
        table,
        seq,
        op,
        image,
        meta,
        rowid,
        values,
    }))
}
