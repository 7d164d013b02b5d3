//! Reading archived changes back, decoded.

use rowtrail_sql::{image, Table, TableName, Value};
use rusqlite::types::ValueRef;

use super::Archive;
use crate::ReaderError;

/// One archived change, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedChange {
    /// Archive position (the chain order).
    pub id: i64,
    /// The source's incarnation.
    pub incarnation: String,
    /// Sequence number in that incarnation.
    pub seq: i64,
    /// The table's definition when the change was archived.
    pub table: Table,
    /// `insert`, `update`, `delete` or `keychange`.
    pub op: String,
    /// Transaction id, if known.
    pub tx: Option<Value>,
    /// Statement id, if known.
    pub stmt: Option<Value>,
    /// Server UTC time of the statement.
    pub at: Option<String>,
    /// Login.
    pub login: Option<String>,
    /// Client host (client-supplied).
    pub host: Option<String>,
    /// Client application (client-supplied).
    pub app: Option<String>,
    /// Client address.
    pub client_ip: Option<String>,
    /// SQLite rowid of the row, for rowid tables.
    pub rowid: Option<i64>,
    /// The row before.
    pub before: Option<Vec<Value>>,
    /// The row after.
    pub after: Option<Vec<Value>>,
    /// When the archive received it (µs since the epoch).
    pub archived_us: i64,
}

/// Which changes to read.
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    /// Only this table.
    pub table: Option<TableName>,
    /// Only this row (its key values in key order; the rowid for keyless rowid tables).
    pub key: Option<Vec<Value>>,
    /// Only changes with an archive id above this.
    pub after_id: Option<i64>,
    /// At most this many.
    pub limit: Option<u64>,
}

const SELECT: &str = "SELECT c.id, s.incarnation, c.seq, v.definition, c.op, c.tx, c.stmt, c.at, \
     c.login, c.host, c.app, c.client_ip, c.src_rowid, c.before, c.after, c.archived_us \
     FROM changes c JOIN sources s ON s.id = c.source_id \
     JOIN table_versions v ON v.id = c.version_id";

fn opt_value(v: ValueRef<'_>) -> Option<Value> {
    match crate::source::value_of(v) {
        Value::Null => None,
        other => Some(other),
    }
}

impl Archive {
    /// Changes matching `filter`, oldest first.
    pub fn changes(&self, filter: &ChangeFilter) -> Result<Vec<ArchivedChange>, ReaderError> {
        let mut sql = String::from(SELECT);
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut clauses = Vec::new();
        // Every filter is written so SQLite can answer it from an index: the table as a list of
        // table ids, a row's key through the row and previous-row indexes (a UNION, since an OR
        // across the two would scan).
        let mut table_ids = String::new();
        if let Some(t) = &filter.table {
            args.push(
                t.schema
                    .as_ref()
                    .map_or("", |s| s.as_str())
                    .to_string()
                    .into(),
            );
            args.push(t.name.as_str().to_string().into());
            table_ids = format!(
                "table_id IN (SELECT id FROM tables WHERE schema_name = ?{} AND table_name = ?{})",
                args.len() - 1,
                args.len()
            );
            clauses.push(format!("c.{table_ids}"));
        }
        if let Some(after) = filter.after_id {
            args.push(after.into());
            clauses.push(format!("c.id > ?{}", args.len()));
        }
        if let Some(key) = &filter.key {
            args.push(rowtrail_sql::key::encode_key(key).into());
            let n = args.len();
            let and = if table_ids.is_empty() {
                String::new()
            } else {
                format!("{table_ids} AND ")
            };
            clauses.push(format!(
                "c.id IN (SELECT id FROM changes WHERE {and}row_key = ?{n} \
                 UNION SELECT id FROM changes WHERE {and}prev_key = ?{n})"
            ));
        }
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY c.id");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let path = self.path.clone();
        let e = |cause| ReaderError::archive(&path, "cannot read changes", cause);
        let mut stmt = self.conn.prepare(&sql).map_err(e)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args)).map_err(e)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(e)? {
            out.push(decode_row(r, &self.path)?);
        }
        Ok(out)
    }
}

fn decode_row(
    r: &rusqlite::Row<'_>,
    path: &std::path::Path,
) -> Result<ArchivedChange, ReaderError> {
    let e = |cause| ReaderError::archive(path, "cannot read a change", cause);
    let damaged = |what: &str, id: i64| ReaderError::NotAnArchive {
        path: path.to_path_buf(),
        reason: format!("change {id} has a damaged {what}; run `rowtrail verify`"),
    };
    let id: i64 = r.get(0).map_err(e)?;
    let definition: String = r.get(3).map_err(e)?;
    let table = Table::from_json(&definition).map_err(|_| damaged("table definition", id))?;
    let img = |i: usize| -> Result<Option<Vec<Value>>, ReaderError> {
        match r.get_ref(i).map_err(e)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(b) => image::decode(b)
                .map(Some)
                .map_err(|_| damaged("row image", id)),
            _ => Err(damaged("row image", id)),
        }
    };
    Ok(ArchivedChange {
        id,
        incarnation: r.get(1).map_err(e)?,
        seq: r.get(2).map_err(e)?,
        table,
        op: r.get(4).map_err(e)?,
        tx: opt_value(r.get_ref(5).map_err(e)?),
        stmt: opt_value(r.get_ref(6).map_err(e)?),
        at: r.get(7).map_err(e)?,
        login: r.get(8).map_err(e)?,
        host: r.get(9).map_err(e)?,
        app: r.get(10).map_err(e)?,
        client_ip: r.get(11).map_err(e)?,
        rowid: r.get(12).map_err(e)?,
        before: img(13)?,
        after: img(14)?,
        archived_us: r.get(15).map_err(e)?,
    })
}
