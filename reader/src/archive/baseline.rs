//! Baselines: snapshots of captured tables taken online, each table with the exact position in
//! the change stream it reflects (the seq of its source below which every change is in the
//! snapshot and above which none is). A replica or a rebuild starts from a baseline table and
//! applies the archived changes of that table above its position.
//!
//! A table's rows are written in chunks, each in an archive transaction of its own, so memory
//! stays bounded and progress can be shown; they count only once the table's `baseline_tables`
//! row is written, which also records their count and digest in the ledger. A baseline cut short
//! (a kill, an error) leaves rows without that row: taking the table again clears them first.

use std::collections::BTreeMap;
use std::sync::Arc;

use rowtrail_sql::{image, Table, TableName, Value};
use rusqlite::{params, OptionalExtension};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::Archive;
use crate::source::{CapturedTable, SourceInfo};
use crate::{now_micros, ReaderError};

/// One table of a finished baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineTable {
    /// Its id.
    pub id: i64,
    /// The baseline it belongs to.
    pub baseline: i64,
    /// The source incarnation.
    pub incarnation: String,
    /// The archive's id of the table.
    pub table_id: i64,
    /// The table's definition when the snapshot was taken.
    pub table: Arc<Table>,
    /// The position: every change of the table with a seq at or below it is in the snapshot.
    pub seq: i64,
    /// The source's UTC time when the snapshot was taken (the archive's text form).
    pub taken_at: String,
    /// How many rows it holds.
    pub rows: u64,
}

/// A baseline with tables still to take ([`Archive::unfinished_baseline`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedBaseline {
    /// Its id.
    pub id: i64,
    /// The tables it covers.
    pub tables: Vec<TableName>,
    /// Those finished.
    pub done: Vec<TableName>,
}

/// A row of a baseline table: its SQLite rowid (rowid tables) and its values.
pub type BaselineRow = (Option<i64>, Vec<Value>);

/// Writes one table of a baseline, chunk by chunk.
pub struct BaselineWriter<'a> {
    archive: &'a mut Archive,
    baseline: i64,
    table_id: i64,
    version_id: i64,
    written: u64,
    digest: Sha256,
    buf: Vec<u8>,
}

impl BaselineWriter<'_> {
    /// Appends `rows` (in key order, after those written before) in one archive transaction.
    pub fn add(&mut self, rows: &[BaselineRow]) -> Result<(), ReaderError> {
        let path = self.archive.path.clone();
        let e = |cause| ReaderError::archive(&path, "cannot archive baseline rows", cause);
        let tx = self
            .archive
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO baseline_rows (baseline_id, table_id, ordinal, src_rowid, image) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(e)?;
            for (rowid, values) in rows {
                self.buf.clear();
                image::encode_into(values, &mut self.buf);
                digest_row(&mut self.digest, *rowid, &self.buf);
                self.written += 1;
                insert
                    .execute(params![
                        self.baseline,
                        self.table_id,
                        self.written as i64,
                        rowid,
                        self.buf
                    ])
                    .map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// Marks the table done at position `seq` (snapshot time `taken_at`), with every row added.
    pub fn finish(self, seq: i64, taken_at: &str) -> Result<u64, ReaderError> {
        let path = self.archive.path.clone();
        let e = |cause| ReaderError::archive(&path, "cannot finish the baseline table", cause);
        let digest: [u8; 32] = self.digest.finalize().into();
        let tx = self
            .archive
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        tx.execute(
            "INSERT INTO baseline_tables (baseline_id, table_id, version_id, seq, taken_at, \
             row_count, digest, finished_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                self.baseline,
                self.table_id,
                self.version_id,
                seq,
                taken_at,
                self.written as i64,
                digest.as_slice(),
                now_micros()
            ],
        )
        .map_err(e)?;
        let id = tx.last_insert_rowid();
        let body = table_body(
            self.baseline,
            self.table_id,
            self.version_id,
            seq,
            taken_at,
            self.written as i64,
            &digest,
        );
        super::ledger::record(&tx, "baseline-table", id, &body).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(self.written)
    }
}

impl Archive {
    /// Starts a baseline of `source` covering `tables` (recording the source if the archive
    /// has not seen it) and returns its id.
    pub fn begin_baseline(
        &mut self,
        source: &SourceInfo,
        tables: &[TableName],
    ) -> Result<i64, ReaderError> {
        let path = self.path.clone();
        let e = |cause| ReaderError::archive(&path, "cannot start a baseline", cause);
        let names = names_json(tables);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let source_id = super::append::source_id(&tx, &mut self.ids, source).map_err(e)?;
        tx.execute(
            "INSERT INTO baselines (source_id, tables, started_us) VALUES (?1, ?2, ?3)",
            params![source_id, names.to_string(), now_micros()],
        )
        .map_err(e)?;
        let id = tx.last_insert_rowid();
        super::ledger::record(&tx, "baseline", id, &baseline_body(source_id, &names)).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(id)
    }

    /// The newest baseline of `incarnation` that has tables still to take: its id, the tables
    /// it covers and those finished. `None` when the newest baseline is complete (or none
    /// exists).
    pub fn unfinished_baseline(
        &self,
        incarnation: &str,
    ) -> Result<Option<UnfinishedBaseline>, ReaderError> {
        let newest: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT b.id, b.tables FROM baselines b JOIN sources s ON s.id = b.source_id \
                 WHERE s.incarnation = ?1 ORDER BY b.id DESC LIMIT 1",
                [incarnation],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err("cannot read the baselines"))?;
        let Some((id, names)) = newest else {
            return Ok(None);
        };
        let wanted: Vec<TableName> =
            serde_json::from_str(&names).map_err(|e| ReaderError::NotAnArchive {
                path: self.path.clone(),
                reason: format!(
                    "baseline {id} lists its tables in a form rowtrail cannot read: {e}"
                ),
            })?;
        let done: Vec<TableName> = self
            .baseline_tables(incarnation)?
            .into_iter()
            .filter(|t| t.baseline == id)
            .map(|t| t.table.name.clone())
            .collect();
        if wanted.iter().all(|w| done.contains(w)) {
            return Ok(None);
        }
        Ok(Some(UnfinishedBaseline {
            id,
            tables: wanted,
            done,
        }))
    }

    /// A writer for `table`'s rows in baseline `baseline` (rows an interrupted attempt left are
    /// cleared first).
    pub fn baseline_writer<'a>(
        &'a mut self,
        baseline: i64,
        source: &SourceInfo,
        table: &CapturedTable,
    ) -> Result<BaselineWriter<'a>, ReaderError> {
        let path = self.path.clone();
        let e = |cause| ReaderError::archive(&path, "cannot prepare a baseline table", cause);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let source_id = super::append::source_id(&tx, &mut self.ids, source).map_err(e)?;
        let (table_id, version_id) = super::append::version_id(
            &tx,
            &mut self.ids,
            source_id,
            &table.table,
            &table.table.to_json(),
        )
        .map_err(e)?;
        let done: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM baseline_tables WHERE baseline_id = ?1 AND table_id = ?2)",
                [baseline, table_id],
                |r| r.get(0),
            )
            .map_err(e)?;
        if done {
            return Err(ReaderError::BadRequest(format!(
                "baseline {baseline} already holds table {}",
                table.table.name
            )));
        }
        tx.execute(
            "DELETE FROM baseline_rows WHERE baseline_id = ?1 AND table_id = ?2",
            [baseline, table_id],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(BaselineWriter {
            archive: self,
            baseline,
            table_id,
            version_id,
            written: 0,
            digest: Sha256::new(),
            buf: Vec::new(),
        })
    }

    /// The finished baseline tables of `incarnation` (all of its baselines), newest first.
    pub fn baseline_tables(&self, incarnation: &str) -> Result<Vec<BaselineTable>, ReaderError> {
        let mut lookups = super::query::Lookups::default();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT b.id, b.baseline_id, b.table_id, b.version_id, b.seq, b.taken_at, b.row_count \
                 FROM baseline_tables b JOIN baselines l ON l.id = b.baseline_id \
                 JOIN sources s ON s.id = l.source_id WHERE s.incarnation = ?1 ORDER BY b.id DESC",
            )
            .map_err(self.err("cannot read the baselines"))?;
        let rows: Vec<(i64, i64, i64, i64, i64, String, i64)> = stmt
            .query_map([incarnation], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("cannot read the baselines"))?;
        rows.into_iter()
            .map(|(id, baseline, table_id, version, seq, taken_at, n)| {
                Ok(BaselineTable {
                    id,
                    baseline,
                    incarnation: incarnation.to_string(),
                    table_id,
                    table: lookups.version(self, version)?,
                    seq,
                    taken_at,
                    rows: n as u64,
                })
            })
            .collect()
    }

    /// For each table of `incarnation`, its newest finished baseline (taken at or before
    /// `as_of`, an archive time text, when given), by table name.
    pub fn latest_baselines(
        &self,
        incarnation: &str,
        as_of: Option<&str>,
    ) -> Result<Vec<BaselineTable>, ReaderError> {
        let mut out: Vec<BaselineTable> = Vec::new();
        for b in self.baseline_tables(incarnation)? {
            if as_of.is_some_and(|t| b.taken_at.as_str() > t) {
                continue;
            }
            if !out.iter().any(|o| o.table.name == b.table.name) {
                out.push(b);
            }
        }
        out.sort_by(|a, b| a.table.name.cmp(&b.table.name));
        Ok(out)
    }

    /// Calls `each` with the rows of `table`, in the order they were taken, `page` at a time.
    pub fn baseline_rows(
        &self,
        table: &BaselineTable,
        page: usize,
        each: &mut dyn FnMut(&[BaselineRow]) -> Result<(), ReaderError>,
    ) -> Result<(), ReaderError> {
        let e = || self.err("cannot read baseline rows");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT ordinal, src_rowid, image FROM baseline_rows WHERE baseline_id = ?1 \
                 AND table_id = ?2 AND ordinal > ?3 ORDER BY ordinal LIMIT ?4",
            )
            .map_err(e())?;
        let mut after = 0i64;
        loop {
            let mut rows: Vec<BaselineRow> = Vec::with_capacity(page);
            let mut last = after;
            let mut q = stmt
                .query(params![table.baseline, table.table_id, after, page as i64])
                .map_err(e())?;
            while let Some(r) = q.next().map_err(e())? {
                last = r.get(0).map_err(e())?;
                let rowid: Option<i64> = r.get(1).map_err(e())?;
                let bytes: Vec<u8> = r.get(2).map_err(e())?;
                let values = image::decode(&bytes).map_err(|_| ReaderError::NotAnArchive {
                    path: self.path.clone(),
                    reason: format!(
                        "baseline {} of {} has a damaged row; run `rowtrail verify`",
                        table.baseline, table.table.name
                    ),
                })?;
                rows.push((rowid, values));
            }
            drop(q);
            if rows.is_empty() {
                return Ok(());
            }
            each(&rows)?;
            if rows.len() < page {
                return Ok(());
            }
            after = last;
        }
    }

    /// The names of the tables a baseline of `incarnation` holds, for messages.
    pub fn baseline_table_names(&self, incarnation: &str) -> Result<Vec<TableName>, ReaderError> {
        Ok(self
            .latest_baselines(incarnation, None)?
            .into_iter()
            .map(|b| b.table.name.clone())
            .collect())
    }
}

/// Adds one row (its rowid and encoded image) to a baseline table's digest.
fn digest_row(digest: &mut Sha256, rowid: Option<i64>, image: &[u8]) {
    digest.update(rowid.unwrap_or(0).to_le_bytes());
    digest.update((image.len() as u64).to_le_bytes());
    digest.update(image);
}

/// A finished baseline table as the ledger records it.
fn table_body(
    baseline: i64,
    table_id: i64,
    version_id: i64,
    seq: i64,
    taken_at: &str,
    rows: i64,
    digest: &[u8],
) -> serde_json::Value {
    json!({
        "baseline": baseline, "table_id": table_id, "version_id": version_id,
        "seq": seq, "taken_at": taken_at, "rows": rows,
        "sha256": super::chain::hex(digest),
    })
}

/// `verify`'s part for baselines: every baseline and finished table must match its ledger
/// record, and every finished table's rows must hash to the digest recorded for it.
pub(super) fn check(
    conn: &rusqlite::Connection,
    mut baselines: BTreeMap<i64, serde_json::Value>,
    mut tables: BTreeMap<i64, serde_json::Value>,
    problems: &mut Vec<String>,
) -> rusqlite::Result<()> {
    let present: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'baseline_tables')",
        [],
        |r| r.get(0),
    )?;
    if !present {
        return Ok(());
    }
    let found: Vec<(i64, i64, String)> = conn
        .prepare("SELECT id, source_id, tables FROM baselines ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    for (id, source_id, names) in found {
        match baselines.remove(&id) {
            None => problems.push(format!(
                "baseline {id} has no ledger record: it was added outside rowtrail"
            )),
            Some(r) if r != baseline_body(source_id, &tables_of(&names)) => problems.push(format!(
                "baseline {id} differs from its ledger record (its source or tables were edited)"
            )),
            Some(_) => {}
        }
    }
    for id in baselines.keys() {
        problems.push(format!("baseline {id} was removed"));
    }
    type Found = (i64, i64, i64, i64, i64, String, i64, Vec<u8>);
    let found: Vec<Found> = conn
        .prepare(
            "SELECT id, baseline_id, table_id, version_id, seq, taken_at, row_count, digest \
             FROM baseline_tables ORDER BY id",
        )?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut rows = conn.prepare(
        "SELECT src_rowid, image FROM baseline_rows WHERE baseline_id = ?1 AND table_id = ?2 \
         ORDER BY ordinal",
    )?;
    for (id, baseline, table_id, version_id, seq, taken_at, count, digest) in found {
        let body = table_body(
            baseline, table_id, version_id, seq, &taken_at, count, &digest,
        );
        match tables.remove(&id) {
            None => problems.push(format!(
                "baseline {baseline}: table entry {id} has no ledger record: it was added \
                 outside rowtrail"
            )),
            Some(r) if r != body => problems.push(format!(
                "baseline {baseline}: table entry {id} differs from its ledger record (its \
                 position, time, row count or digest was edited)"
            )),
            Some(_) => {}
        }
        let mut hash = Sha256::new();
        let mut n = 0i64;
        let mut q = rows.query([baseline, table_id])?;
        while let Some(r) = q.next()? {
            let rowid: Option<i64> = r.get(0)?;
            let image: Vec<u8> = r.get(1).unwrap_or_default();
            digest_row(&mut hash, rowid, &image);
            n += 1;
        }
        let now: [u8; 32] = hash.finalize().into();
        if n != count || now.as_slice() != digest.as_slice() {
            problems.push(format!(
                "baseline {baseline}: the rows of table entry {id} do not match their digest \
                 ({count} recorded, {n} found): rows were altered, added or removed"
            ));
        }
    }
    for id in tables.keys() {
        problems.push(format!("baseline table entry {id} was removed"));
    }
    Ok(())
}

/// A baseline's table list as JSON.
fn names_json(tables: &[TableName]) -> serde_json::Value {
    serde_json::to_value(tables).unwrap_or_default()
}

/// A stored table list read back as JSON (text that is not JSON stays text, so an edit shows).
fn tables_of(names: &str) -> serde_json::Value {
    serde_json::from_str(names).unwrap_or_else(|_| serde_json::Value::String(names.to_string()))
}

/// A baseline as the ledger records it.
fn baseline_body(source_id: i64, tables: &serde_json::Value) -> serde_json::Value {
    json!({ "source_id": source_id, "tables": tables })
}

impl Archive {
    /// Every incarnation with a finished baseline table, the one with the newest first (a
    /// takeover starts a new incarnation, whose baseline is taken at promotion).
    pub fn baseline_incarnations(&self) -> Result<Vec<String>, ReaderError> {
        self.conn
            .prepare(
                "SELECT s.incarnation FROM baseline_tables t JOIN baselines b ON b.id = t.baseline_id \
                 JOIN sources s ON s.id = b.source_id GROUP BY s.incarnation ORDER BY max(t.id) DESC",
            )
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .map_err(self.err("cannot read the baselines"))
    }

    /// The incarnation whose newest finished baseline table is the newest of all (the source a
    /// replica follows when none is named).
    pub fn newest_baseline_incarnation(&self) -> Result<Option<String>, ReaderError> {
        self.conn
            .query_row(
                "SELECT s.incarnation FROM baseline_tables t JOIN baselines b ON b.id = t.baseline_id \
                 JOIN sources s ON s.id = b.source_id ORDER BY t.id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err("cannot read the baselines"))
    }
}
