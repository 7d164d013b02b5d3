//! Reading staged images from a SQLite source: one snapshot per batch, the shared staging table
//! read in seq order (its rowid), each row checked against the staging contract and given to the
//! captured table its table id names. Also the source's sequence value and staging counts.

use std::collections::HashMap;

use rowtrail_sql::sqlite::{self as gen, objects};
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
            self.selects = StagingQuery::new(&self.tables);
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

/// The read of the shared staging table for a set of captured tables: its SELECT and which
/// table each table id names.
#[derive(Debug, Clone, Default)]
pub(super) struct StagingQuery {
    sql: String,
    by_id: HashMap<i64, usize>,
}

impl StagingQuery {
    /// The staged images of `tables` in seq order, at most `?1`, with a seq above `?2`.
    pub(super) fn new(tables: &[CapturedTable]) -> Self {
        let width = tables
            .iter()
            .map(|c| c.table.columns.len())
            .max()
            .unwrap_or(0);
        let mut cols: Vec<String> = gen::staging_metadata_columns()
            .into_iter()
            .map(|m| Ident::new(m).expect("valid").sqlite().to_string())
            .collect();
        cols.extend((1..=width).map(|i| gen::value_column(i).sqlite().to_string()));
        let seq = Ident::new(staging::COL_SEQ).expect("valid");
        Self {
            sql: format!(
                "SELECT {} FROM {} WHERE {seq} > ?2 ORDER BY {seq} LIMIT ?1",
                cols.join(", "),
                Ident::new(objects::STAGING).expect("valid").sqlite(),
                seq = seq.sqlite()
            ),
            by_id: tables
                .iter()
                .enumerate()
                .map(|(i, c)| (gen::table_id(&c.table.name), i))
                .collect(),
        }
    }
}

/// Up to `limit` staged images above `above` in seq order (never splitting an update's pair),
/// read on `conn` (in the caller's transaction: one snapshot). `query` is the
/// [`StagingQuery`] of `tables`.
pub(super) fn read_staged(
    conn: &Connection,
    location: &str,
    tables: &[CapturedTable],
    query: &StagingQuery,
    limit: usize,
    above: Option<i64>,
) -> Result<Vec<StagedImage>, ReaderError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare_cached(&query.sql)
        .map_err(err(location, "cannot read staging"))?;
    // One more to finish an update's pair, one more for the high-water mark.
    let rows_wanted = i64::try_from(limit.saturating_add(2)).unwrap_or(i64::MAX);
    let above = above.unwrap_or(i64::MIN);
    let mut rows = stmt
        .query([rows_wanted, above])
        .map_err(err(location, "cannot read staging"))?;
    let stream = std::iter::from_fn(|| next_image(&mut rows, tables, query, location).transpose());
    crate::source::merge_by_seq(vec![stream], limit)
}

/// Whether the shared staging table of the source behind `conn` still holds an image whose
/// transaction is `tx` (a run's tag, or a writer's declared label, text or integer: not yet
/// archived).
pub fn staged_with_tx(
    conn: &Connection,
    location: &str,
    tx: &dyn rusqlite::ToSql,
) -> Result<bool, ReaderError> {
    if !table_exists(conn, objects::STAGING, location)? {
        return Ok(false);
    }
    let found: Option<i64> = conn
        .query_row(
            &format!(
                "SELECT 1 FROM {} WHERE {} = ?1 LIMIT 1",
                Ident::new(objects::STAGING)?.sqlite(),
                Ident::new(staging::COL_TX)?.sqlite()
            ),
            [tx],
            |r| r.get(0),
        )
        .optional()
        .map_err(err(location, "cannot read staging"))?;
    Ok(found.is_some())
}

/// How many images wait in staging: of the table `only` names, or of every table (0 when
/// there is no staging table). The high-water mark is not an image. Of every table, it is
/// counted without reading the rows, so a mark between images counts as one: the reader's
/// deletes only ever leave a mark below or above every image, but uninstalling one table with
/// its staged images discarded, while other tables' images wait below them, leaves the mark
/// where later images overtake it, until the reader's next delete removes it with the range.
pub(crate) fn count(
    conn: &Connection,
    location: &str,
    only: Option<&CapturedTable>,
) -> Result<u64, ReaderError> {
    if !table_exists(conn, objects::STAGING, location)? {
        return Ok(0);
    }
    let staging = Ident::new(objects::STAGING)?;
    let sql = match only {
        Some(c) => format!(
            "SELECT count(*) FROM {} WHERE {} = {}",
            staging.sqlite(),
            Ident::new(gen::COL_TABLE)?.sqlite(),
            gen::table_id(&c.table.name)
        ),
        // SQLite counts a whole table from its b-tree pages without reading rows; the mark
        // is the lowest row or the highest (see `delete.rs`), and is no image.
        None => format!(
            "SELECT count(*) - coalesce((SELECT {op} = '{mark}' FROM {t} ORDER BY {seq} LIMIT 1), 0) \
             - coalesce((SELECT {op} = '{mark}' AND {seq} > (SELECT min({seq}) FROM {t}) \
                FROM {t} ORDER BY {seq} DESC LIMIT 1), 0) FROM {t}",
            t = staging.sqlite(),
            op = Ident::new(staging::COL_OP)?.sqlite(),
            seq = Ident::new(staging::COL_SEQ)?.sqlite(),
            mark = gen::OP_HIGH_WATER
        ),
    };
    conn.query_row(&sql, [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(err(location, "cannot count staged images"))
}

/// The highest seq any committed image of the source behind `conn` has taken (0 before the
/// first): every image staged so far has a seq at or below it, and every image committed later
/// a seq above it. It never goes back: the reader's deletes keep the high-water mark. Read in
/// the caller's transaction, it belongs to the same snapshot as the staging rows read there.
pub fn sequence_value(conn: &Connection, location: &str) -> Result<i64, ReaderError> {
    let sql = if table_exists(conn, objects::STAGING, location)? {
        format!(
            "SELECT coalesce(max({}), 0) FROM {}",
            Ident::new(staging::COL_SEQ)?.sqlite(),
            Ident::new(objects::STAGING)?.sqlite()
        )
    } else {
        // Staging format 1, not yet migrated: its counter row.
        format!(
            "SELECT \"value\" FROM {} WHERE \"id\" = 1",
            Ident::new(objects::SEQUENCE)?.sqlite()
        )
    };
    conn.query_row(&sql, [], |r| r.get(0))
        .map_err(err(location, "cannot read the sequence"))
}

/// How many value columns the shared staging table has (0 when there is none yet).
pub(crate) fn staging_width(conn: &Connection, location: &str) -> Result<usize, ReaderError> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info(?1)",
            [objects::STAGING],
            |r| r.get(0),
        )
        .map_err(err(location, "cannot read the staging table's columns"))?;
    Ok((n as usize).saturating_sub(gen::staging_metadata_columns().len()))
}

/// Widens the shared staging table, if it exists, for `tables` (in the caller's transaction).
pub(crate) fn widen_for(
    conn: &Connection,
    location: &str,
    tables: &[&rowtrail_sql::Table],
) -> Result<(), ReaderError> {
    if !table_exists(conn, objects::STAGING, location)? {
        return Ok(());
    }
    let needed = tables.iter().map(|t| t.columns.len()).max().unwrap_or(0);
    let sql = gen::widen_staging(staging_width(conn, location)?, needed);
    if !sql.is_empty() {
        conn.execute_batch(&sql)
            .map_err(err(location, "cannot widen the staging table"))?;
    }
    Ok(())
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
    tables: &[CapturedTable],
    query: &StagingQuery,
    location: &str,
) -> Result<Option<StagedImage>, ReaderError> {
    let shared = || Ident::new(objects::STAGING).expect("valid");
    let row = loop {
        let Some(row) = rows.next().map_err(err(location, "cannot read staging"))? else {
            return Ok(None);
        };
        let op = row
            .get_ref(1)
            .map_err(err(location, "cannot read staging"))?;
        if !matches!(op, ValueRef::Text(t) if t == gen::OP_HIGH_WATER.as_bytes()) {
            break row;
        }
    };
    let get = |i: usize| row.get_ref(i).map_err(err(location, "cannot read staging"));
    let seq = match get(0)? {
        ValueRef::Integer(s) => Some(s),
        _ => None,
    };
    let meta_cols = staging::METADATA_COLUMNS.len();
    let table = match get(meta_cols)? {
        ValueRef::Integer(id) => query.by_id.get(&id).copied(),
        _ => None,
    };
    let Some(table) = table else {
        return Err(ReaderError::BadStaging {
            staging: shared().to_string(),
            seq: seq.unwrap_or(0),
            reason: "its table id names no captured table".into(),
        });
    };
    let captured = &tables[table];
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
    let rowid = if captured.table.rowid {
        match get(meta_cols + 1)? {
            ValueRef::Integer(r) => Some(r),
            _ => return Err(bad("its rowid is not an integer")),
        }
    } else {
        None
    };
    let col = meta_cols + 2;
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
