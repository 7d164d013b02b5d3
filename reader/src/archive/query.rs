//! Reading archived changes back: one filtered query ([`ChangeQuery`]), read page by page in
//! archive order ([`ChangeStream`]), every row decoded by one mapper.
//!
//! Every filter is written so SQLite can answer it from an index: a table as a list of table
//! ids, a row's key through the row and previous-row indexes (a UNION, since an OR across the
//! two would scan), a time range through the time index, a transaction through the (source,
//! transaction) index. Pages follow the archive id (keyset), so a listing of any length holds
//! one page in memory and each page starts where the last one ended.

use std::collections::HashMap;
use std::sync::Arc;

use rowtrail_sql::staging::Op;
use rowtrail_sql::{image, Table, TableName, Value};
use rusqlite::types::Value as SqlValue;
use rusqlite::OptionalExtension;

use super::change::ArchivedChange;
use super::journal::NOT_UNDO_WRITES;
use super::Archive;
use crate::sqlite::value_of;
use crate::ReaderError;

/// Which archived changes to read. Every filter given must hold; the default reads everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeQuery {
    /// Only changes of this source incarnation.
    pub incarnation: Option<String>,
    /// Only this table (schema-qualified on SQL Server).
    pub table: Option<TableName>,
    /// Only changes to the row with this archive row key (its key before or after the change);
    /// see [`rowtrail_sql::key::encode_key`].
    pub row_key: Option<Vec<u8>>,
    /// Only these archive ids.
    pub ids: Option<Vec<i64>>,
    /// Only ids above this.
    pub after_id: Option<i64>,
    /// Only ids below this.
    pub before_id: Option<i64>,
    /// Only sequence numbers in this range (inclusive).
    pub seqs: Option<(i64, i64)>,
    /// Only changes at or after this UTC time (the archive's text form,
    /// `YYYY-MM-DDTHH:MM:SS.sssZ`).
    pub since: Option<String>,
    /// Only changes before this UTC time (same form).
    pub until: Option<String>,
    /// Only changes by this login.
    pub login: Option<String>,
    /// Only changes from this client address.
    pub client_ip: Option<String>,
    /// Only this kind of change.
    pub op: Option<Op>,
    /// Only this transaction (matched as text, and as a number when it reads as one).
    pub tx: Option<String>,
    /// Only this statement (matched like `tx`).
    pub statement: Option<String>,
    /// Leave out what undo must never select: the writes of undo and redo runs, and changes an
    /// applied undo run undid. Needs `incarnation`.
    pub undo_eligible: bool,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// At most this many.
    pub limit: Option<u64>,
}

/// Changes read per page when the caller does not say.
pub const DEFAULT_PAGE: u64 = 2048;

/// Ids inlined per page of an id-list query.
const IDS_PER_PAGE: usize = 500;

/// One change as the archive stores it, before decoding: what verification hashes.
#[derive(Debug, Clone)]
pub(super) struct RawChange {
    pub id: i64,
    pub source_id: i64,
    pub seq: i64,
    pub table_id: i64,
    pub version_id: i64,
    pub op: String,
    /// Transaction, statement, time, login, host, application, client address, rowid: as
    /// stored (the form the chain hashes).
    pub meta: [Value; 8],
    pub row_key: Vec<u8>,
    pub prev_key: Option<Vec<u8>>,
    /// The images as stored: NULL, or a blob in the image codec's form (anything else is
    /// damage).
    pub before: Value,
    pub after: Value,
    pub archived_us: i64,
    pub hash: Vec<u8>,
}

impl RawChange {
    /// The stored bytes of an image, when it is a blob.
    pub fn image_bytes(v: &Value) -> Option<&[u8]> {
        match v {
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }
}

const COLUMNS: &str = "c.id, c.source_id, c.seq, c.table_id, c.version_id, c.op, c.tx, c.stmt, \
     c.at, c.login, c.host, c.app, c.client_ip, c.src_rowid, c.row_key, c.prev_key, c.before, \
     c.after, c.archived_us, c.hash";

fn raw_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawChange> {
    let v = |i: usize| r.get_ref(i).map(value_of);
    Ok(RawChange {
        id: r.get(0)?,
        source_id: r.get(1)?,
        seq: r.get(2)?,
        table_id: r.get(3)?,
        version_id: r.get(4)?,
        op: r.get(5)?,
        meta: [v(6)?, v(7)?, v(8)?, v(9)?, v(10)?, v(11)?, v(12)?, v(13)?],
        row_key: r.get(14)?,
        prev_key: r.get(15)?,
        before: v(16)?,
        after: v(17)?,
        archived_us: r.get(18)?,
        hash: r.get(19)?,
    })
}

/// What decoding needs besides a row: definitions, sources and table names, each read once.
#[derive(Default)]
pub(super) struct Lookups {
    texts: HashMap<i64, Arc<str>>,
    owners: HashMap<i64, (i64, i64)>,
    versions: HashMap<i64, Arc<Table>>,
    sources: HashMap<i64, (Arc<str>, Arc<str>)>,
    tables: HashMap<i64, (Arc<str>, Arc<str>)>,
}

impl Lookups {
    /// A version's definition as recorded (JSON text), not decoded.
    pub fn definition_text(&mut self, archive: &Archive, id: i64) -> Result<Arc<str>, ReaderError> {
        if let Some(t) = self.texts.get(&id) {
            return Ok(t.clone());
        }
        let text: Option<String> = archive
            .conn
            .prepare_cached("SELECT definition FROM table_versions WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(archive.err("cannot read a table version"))?;
        let text: Arc<str> = Arc::from(
            text.ok_or_else(|| archive.damaged(&format!("table version {id} is missing")))?,
        );
        self.texts.insert(id, text.clone());
        Ok(text)
    }

    /// A version's decoded definition.
    pub fn version(&mut self, archive: &Archive, id: i64) -> Result<Arc<Table>, ReaderError> {
        if let Some(v) = self.versions.get(&id) {
            return Ok(v.clone());
        }
        let text = self.definition_text(archive, id)?;
        let table = Table::from_json(&text).map_err(|_| {
            archive.damaged(&format!("table version {id} has a damaged definition"))
        })?;
        let table = Arc::new(table);
        self.versions.insert(id, table.clone());
        Ok(table)
    }

    /// A source's incarnation and engine.
    pub fn source(
        &mut self,
        archive: &Archive,
        id: i64,
    ) -> Result<(Arc<str>, Arc<str>), ReaderError> {
        let sql = "SELECT incarnation, engine FROM sources WHERE id = ?1";
        cached(
            &mut self.sources,
            archive,
            id,
            sql,
            "source",
            |a: String, b: String| (Arc::from(a), Arc::from(b)),
        )
    }

    /// The table a version belongs to, and that table's source.
    pub fn version_owner(&mut self, archive: &Archive, id: i64) -> Result<(i64, i64), ReaderError> {
        let sql = "SELECT v.table_id, t.source_id FROM table_versions v \
                   JOIN tables t ON t.id = v.table_id WHERE v.id = ?1";
        cached(
            &mut self.owners,
            archive,
            id,
            sql,
            "table version",
            |a, b| (a, b),
        )
    }

    /// A table's schema (empty on SQLite) and name, as the `tables` table records them.
    pub fn table(
        &mut self,
        archive: &Archive,
        id: i64,
    ) -> Result<(Arc<str>, Arc<str>), ReaderError> {
        let sql = "SELECT schema_name, table_name FROM tables WHERE id = ?1";
        cached(
            &mut self.tables,
            archive,
            id,
            sql,
            "table",
            |a: String, b: String| (Arc::from(a), Arc::from(b)),
        )
    }

    /// Decodes `raw`.
    pub fn decode(
        &mut self,
        archive: &Archive,
        raw: RawChange,
    ) -> Result<ArchivedChange, ReaderError> {
        let id = raw.id;
        let damaged = |what: &str| {
            archive.damaged(&format!(
                "change {id} has a damaged {what}; run `rowtrail verify`"
            ))
        };
        let table = self.version(archive, raw.version_id)?;
        let (incarnation, _) = self.source(archive, raw.source_id)?;
        let img = |v: Value| -> Result<Option<Vec<Value>>, ReaderError> {
            match v {
                Value::Null => Ok(None),
                Value::Blob(b) => image::decode(&b)
                    .map(Some)
                    .map_err(|_| damaged("row image")),
                _ => Err(damaged("row image")),
            }
        };
        let [tx, stmt, at, login, host, app, client_ip, rowid] = raw.meta;
        let op = Op::from_word(&raw.op).ok_or_else(|| damaged("operation"))?;
        let rowid = match rowid {
            Value::Null => None,
            Value::Integer(r) => Some(r),
            _ => return Err(damaged("rowid")),
        };
        Ok(ArchivedChange {
            id,
            source_id: raw.source_id,
            incarnation,
            seq: raw.seq,
            table_id: raw.table_id,
            table,
            op,
            tx: nullable(tx),
            stmt: nullable(stmt),
            at: text(at),
            login: text(login),
            host: text(host),
            app: text(app),
            client_ip: text(client_ip),
            rowid,
            row_key: raw.row_key,
            prev_key: raw.prev_key,
            before: img(raw.before)?,
            after: img(raw.after)?,
            archived_us: raw.archived_us,
            hash: raw.hash.try_into().map_err(|_| damaged("chain hash"))?,
        })
    }
}

/// `cache[id]`, read once (`sql`: one row of two columns for `?1` = `id`) when it is not there
/// yet; a row that is missing is damage (`what` names it).
fn cached<T: Clone, A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
    cache: &mut HashMap<i64, T>,
    archive: &Archive,
    id: i64,
    sql: &str,
    what: &str,
    make: impl FnOnce(A, B) -> T,
) -> Result<T, ReaderError> {
    if let Some(v) = cache.get(&id) {
        return Ok(v.clone());
    }
    let found: Option<(A, B)> = archive
        .conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(archive.err(&format!("cannot read a {what}")))?;
    let (a, b) = found.ok_or_else(|| archive.damaged(&format!("{what} {id} is missing")))?;
    let v = make(a, b);
    cache.insert(id, v.clone());
    Ok(v)
}

fn nullable(v: Value) -> Option<Value> {
    (v != Value::Null).then_some(v)
}

/// A text column's value: text as it is, a number in its text form.
fn text(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Text(t) | Value::Blob(t) => Some(String::from_utf8_lossy(&t).into_owned()),
        other => Some(other.to_string()),
    }
}

/// The WHERE clause of a query (over `changes c`) and its parameters, numbered from `?3`: `?1`
/// is the page's keyset bound and `?2` its size.
struct Condition {
    sql: String,
    params: Vec<SqlValue>,
}

impl Condition {
    fn arg(&mut self, v: SqlValue) -> String {
        self.params.push(v);
        format!("?{}", self.params.len() + 2)
    }
}

/// A label filter: equal as text, or as the number the text reads as.
fn label_clause(c: &mut Condition, column: &str, label: &str) -> String {
    let t = c.arg(label.to_string().into());
    match label.trim().parse::<i64>() {
        Ok(i) => {
            let n = c.arg(i.into());
            format!("({column} = {t} OR {column} = {n})")
        }
        Err(_) => format!("{column} = {t}"),
    }
}

impl Archive {
    pub(super) fn damaged(&self, reason: &str) -> ReaderError {
        ReaderError::NotAnArchive {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// The archive's id of the source whose incarnation is `incarnation`, if it has one.
    pub fn source_id(&self, incarnation: &str) -> Result<Option<i64>, ReaderError> {
        self.conn
            .prepare_cached("SELECT id FROM sources WHERE incarnation = ?1")
            .and_then(|mut s| s.query_row([incarnation], |r| r.get(0)).optional())
            .map_err(self.err("cannot read the sources"))
    }

    /// The WHERE clause for `q`; `None` when nothing can match (an unknown source).
    fn condition(&self, q: &ChangeQuery) -> Result<Option<Condition>, ReaderError> {
        let mut c = Condition {
            sql: String::new(),
            params: Vec::new(),
        };
        let mut clauses: Vec<String> = Vec::new();
        if let Some(inc) = &q.incarnation {
            let Some(id) = self.source_id(inc)? else {
                return Ok(None);
            };
            let s = c.arg(id.into());
            // The unary `+` keeps SQLite from answering the source through the (source, seq)
            // index, which returns rows out of id order and makes it sort them all, instead of
            // walking the table in id order. The (source, tx) index still serves a transaction.
            let column = if q.tx.is_some() {
                "c.source_id"
            } else {
                "+c.source_id"
            };
            clauses.push(format!("{column} = {s}"));
            if q.undo_eligible {
                clauses.push(NOT_UNDO_WRITES.replace("?S", &s));
            }
        } else if q.undo_eligible {
            return Err(ReaderError::BadRequest(
                "undo eligibility is defined per source: the query must name its incarnation"
                    .into(),
            ));
        }
        let mut table_ids = String::new();
        if let Some(t) = &q.table {
            let s = c.arg(
                t.schema
                    .as_ref()
                    .map_or("", |s| s.as_str())
                    .to_string()
                    .into(),
            );
            let n = c.arg(t.name.as_str().to_string().into());
            let mut alternatives = vec![format!(
                "{{c}}table_id IN (SELECT id FROM tables WHERE schema_name = {s} AND table_name = {n})"
            )];
            // A renamed table's history goes on under its old names, each up to the rename.
            for (id, last_seq) in self.former_names(t)? {
                let (i, b) = (c.arg(id.into()), c.arg(last_seq.into()));
                alternatives.push(format!("({{c}}table_id = {i} AND {{c}}seq <= {b})"));
            }
            table_ids = if alternatives.len() == 1 {
                alternatives.remove(0)
            } else {
                format!("({})", alternatives.join(" OR "))
            };
            clauses.push(table_ids.replace("{c}", "c."));
            table_ids = table_ids.replace("{c}", "");
        }
        if let Some(key) = &q.row_key {
            let k = c.arg(key.clone().into());
            let and = if table_ids.is_empty() {
                String::new()
            } else {
                format!("{table_ids} AND ")
            };
            clauses.push(format!(
                "c.id IN (SELECT id FROM changes WHERE {and}row_key = {k} \
                 UNION SELECT id FROM changes WHERE {and}prev_key = {k})"
            ));
        }
        if let Some(a) = q.after_id {
            let a = c.arg(a.into());
            clauses.push(format!("c.id > {a}"));
        }
        if let Some(b) = q.before_id {
            let b = c.arg(b.into());
            clauses.push(format!("c.id < {b}"));
        }
        if let Some((lo, hi)) = q.seqs {
            let (lo, hi) = (c.arg(lo.into()), c.arg(hi.into()));
            clauses.push(format!("c.seq BETWEEN {lo} AND {hi}"));
        }
        for (v, column, op) in [
            (&q.since, "c.at", ">="),
            (&q.until, "c.at", "<"),
            (&q.login, "c.login", "="),
            (&q.client_ip, "c.client_ip", "="),
        ] {
            if let Some(v) = v {
                let a = c.arg(v.clone().into());
                clauses.push(format!("{column} {op} {a}"));
            }
        }
        if let Some(op) = q.op {
            let a = c.arg(op.word().to_string().into());
            clauses.push(format!("c.op = {a}"));
        }
        if let Some(tx) = &q.tx {
            let clause = label_clause(&mut c, "c.tx", tx);
            clauses.push(clause);
        }
        if let Some(stmt) = &q.statement {
            let clause = label_clause(&mut c, "c.stmt", stmt);
            clauses.push(clause);
        }
        c.sql = clauses.join(" AND ");
        Ok(Some(c))
    }

    /// The changes `q` selects, read page by page in archive order.
    pub fn stream<'a>(&'a self, q: &ChangeQuery) -> Result<ChangeStream<'a>, ReaderError> {
        self.stream_pages(q, DEFAULT_PAGE)
    }

    /// Like [`Archive::stream`], reading `page` changes per query.
    pub fn stream_pages<'a>(
        &'a self,
        q: &ChangeQuery,
        page: u64,
    ) -> Result<ChangeStream<'a>, ReaderError> {
        Ok(ChangeStream {
            raw: RawStream::new(self, q, page)?,
            lookups: Lookups::default(),
        })
    }

    /// The changes `q` selects, all at once.
    pub fn changes(&self, q: &ChangeQuery) -> Result<Vec<ArchivedChange>, ReaderError> {
        self.stream(q)?.collect()
    }

    /// The ids of the changes `q` selects, in its order (no images are read).
    pub fn change_ids(&self, q: &ChangeQuery) -> Result<Vec<i64>, ReaderError> {
        let Some(mut c) = self.condition(q)? else {
            return Ok(Vec::new());
        };
        if let Some(ids) = &q.ids {
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            let clause = format!("c.id IN ({})", list.join(", "));
            c.sql = if c.sql.is_empty() {
                clause
            } else {
                format!("{} AND {clause}", c.sql)
            };
        }
        let sql = format!(
            "SELECT c.id FROM changes c WHERE ?1 IS NULL AND ?2 IS NULL{}{} ORDER BY c.id {}{}",
            if c.sql.is_empty() { "" } else { " AND " },
            c.sql,
            if q.newest_first { "DESC" } else { "ASC" },
            q.limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default(),
        );
        let mut params: Vec<SqlValue> = vec![SqlValue::Null, SqlValue::Null];
        params.extend(c.params);
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(self.err("cannot read changes"))?;
        let ids = stmt
            .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<i64>, _>>())
            .map_err(self.err("cannot read changes"));
        ids
    }

    /// One change as stored, by id (`None` when there is none).
    pub(super) fn raw_change(&self, id: i64) -> Result<Option<RawChange>, ReaderError> {
        self.conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM changes c WHERE c.id = ?1"))
            .and_then(|mut s| s.query_row([id], raw_of).optional())
            .map_err(self.err("cannot read a change"))
    }

    /// Every change as stored, in archive order, for verification.
    pub(super) fn raw_stream(&self) -> Result<RawStream<'_>, ReaderError> {
        RawStream::new(self, &ChangeQuery::default(), DEFAULT_PAGE)
    }
}

/// Stored changes page by page (see [`ChangeStream`], which decodes them).
pub(super) struct RawStream<'a> {
    archive: &'a Archive,
    /// The query without its id list; `None` when nothing can match.
    sql: Option<String>,
    params: Vec<SqlValue>,
    /// An id-list query's remaining ids, ascending (descending with `newest_first`).
    ids: Option<std::vec::IntoIter<i64>>,
    cursor: i64,
    page: u64,
    remaining: Option<u64>,
    buffer: std::vec::IntoIter<RawChange>,
    done: bool,
}

impl<'a> RawStream<'a> {
    fn new(archive: &'a Archive, q: &ChangeQuery, page: u64) -> Result<Self, ReaderError> {
        let condition = archive.condition(q)?;
        let ids = q.ids.as_ref().map(|ids| {
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            if q.newest_first {
                ids.reverse();
            }
            ids.into_iter()
        });
        let (sql, params) = match condition {
            None => (None, Vec::new()),
            Some(c) => {
                let keyset = if q.newest_first {
                    "c.id < ?1"
                } else {
                    "c.id > ?1"
                };
                let filters = if c.sql.is_empty() {
                    String::new()
                } else {
                    format!(" AND {}", c.sql)
                };
                let order = if q.newest_first { "DESC" } else { "ASC" };
                (
                    Some(format!(
                        "SELECT {COLUMNS} FROM changes c WHERE {keyset}{filters}{{ids}} \
                         ORDER BY c.id {order} LIMIT ?2"
                    )),
                    c.params,
                )
            }
        };
        Ok(Self {
            archive,
            sql,
            params,
            ids,
            cursor: if q.newest_first { i64::MAX } else { i64::MIN },
            page: page.max(1),
            remaining: q.limit,
            buffer: Vec::new().into_iter(),
            done: false,
        })
    }

    /// Reads the next page into the buffer; false when there is nothing more.
    fn fill(&mut self) -> Result<bool, ReaderError> {
        let Some(sql) = &self.sql else {
            return Ok(false);
        };
        let mut want = match self.remaining {
            Some(0) => return Ok(false),
            Some(n) => n.min(self.page),
            None => self.page,
        };
        let (text, by_ids) = match &mut self.ids {
            None => (sql.replace("{ids}", ""), false),
            Some(ids) => {
                let chunk: Vec<String> = ids
                    .by_ref()
                    .take(IDS_PER_PAGE)
                    .map(|i| i.to_string())
                    .collect();
                if chunk.is_empty() {
                    return Ok(false);
                }
                // A chunk is one page: all of its ids that match, up to what is still wanted.
                want = self.remaining.unwrap_or(u64::MAX).min(chunk.len() as u64);
                (
                    sql.replace("{ids}", &format!(" AND c.id IN ({})", chunk.join(", "))),
                    true,
                )
            }
        };
        let mut params: Vec<SqlValue> = vec![self.cursor.into(), (want as i64).into()];
        params.extend(self.params.iter().cloned());
        let e = self.archive.err("cannot read changes");
        let rows: Vec<RawChange> = if by_ids {
            self.archive
                .conn
                .prepare(&text)
                .and_then(|mut s| {
                    s.query_map(rusqlite::params_from_iter(params), raw_of)?
                        .collect::<Result<_, _>>()
                })
                .map_err(e)?
        } else {
            self.archive
                .conn
                .prepare_cached(&text)
                .and_then(|mut s| {
                    s.query_map(rusqlite::params_from_iter(params), raw_of)?
                        .collect::<Result<_, _>>()
                })
                .map_err(e)?
        };
        if !by_ids && (rows.len() as u64) < want {
            self.done = true;
        }
        if let Some(last) = rows.last() {
            if !by_ids {
                self.cursor = last.id;
            }
        }
        if let Some(r) = &mut self.remaining {
            *r -= (rows.len() as u64).min(*r);
        }
        let got = !rows.is_empty();
        self.buffer = rows.into_iter();
        Ok(got || by_ids)
    }
}

impl Iterator for RawStream<'_> {
    type Item = Result<RawChange, ReaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.buffer.next() {
                return Some(Ok(r));
            }
            if self.done {
                return None;
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            // An id list runs out only when its ids do: a chunk none of whose ids match reads
            // the next one.
        }
    }
}

/// Archived changes page by page, decoded (see [`Archive::stream`]).
pub struct ChangeStream<'a> {
    raw: RawStream<'a>,
    lookups: Lookups,
}

impl Iterator for ChangeStream<'_> {
    type Item = Result<ArchivedChange, ReaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        let raw = match self.raw.next()? {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        let archive = self.raw.archive;
        Some(self.lookups.decode(archive, raw))
    }
}
