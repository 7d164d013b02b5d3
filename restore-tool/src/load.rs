//! Loading archived changes for planning: one query, table definitions decoded once per version,
//! and the keys the archive indexes rows by.

use std::collections::HashMap;
use std::sync::Arc;

use rowtrail_reader::archive::Archive;
use rowtrail_reader::source::value_of;
use rowtrail_sql::{image, Table, Value};
use rusqlite::types::ValueRef;

use crate::RestoreError;

/// One archived change as planning needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Archive id (the chain order).
    pub id: i64,
    /// The archive's id of the source (incarnation).
    pub source_id: i64,
    /// Sequence number in its incarnation.
    pub seq: i64,
    /// The archive's id of the table.
    pub table_id: i64,
    /// The table's definition when the change was archived.
    pub table: Arc<Table>,
    /// `insert`, `update`, `delete` or `keychange`.
    pub op: String,
    /// Transaction id, if known.
    pub tx: Option<Value>,
    /// Statement id, if known.
    pub stmt: Option<Value>,
    /// Server UTC time.
    pub at: Option<String>,
    /// Login.
    pub login: Option<String>,
    /// Client host.
    pub host: Option<String>,
    /// Client application.
    pub app: Option<String>,
    /// Client address.
    pub client_ip: Option<String>,
    /// SQLite rowid, for rowid tables.
    pub rowid: Option<i64>,
    /// The archive's row key of the main image (after-image, else before-image).
    pub row_key: Vec<u8>,
    /// The before-image's row key when it differs from `row_key`.
    pub prev_key: Option<Vec<u8>>,
    /// The row before.
    pub before: Option<Vec<Value>>,
    /// The row after.
    pub after: Option<Vec<Value>>,
}

impl Change {
    /// The key the row had before the change (None for an insert).
    pub fn before_key(&self) -> Option<&[u8]> {
        self.before
            .as_ref()
            .map(|_| self.prev_key.as_deref().unwrap_or(&self.row_key))
    }

    /// The key the row has after the change (None for a delete).
    pub fn after_key(&self) -> Option<&[u8]> {
        self.after.as_ref().map(|_| self.row_key.as_slice())
    }

    /// A one-line description without row values: `update of staff (seq 17) by alice at …`.
    pub fn summary(&self) -> String {
        format!(
            "change {} ({} of {}, seq {}) by {} at {}{}",
            self.id,
            self.op,
            self.table.name,
            self.seq,
            self.login.as_deref().unwrap_or("(unknown login)"),
            self.at.as_deref().unwrap_or("(unknown time)"),
            self.tx
                .as_ref()
                .map(|t| match t {
                    Value::Text(b) => format!(", tx {}", String::from_utf8_lossy(b)),
                    other => format!(", tx {other}"),
                })
                .unwrap_or_default()
        )
    }
}

/// The archive's id of the source whose incarnation is `incarnation`, if it has any changes.
pub fn source_id(archive: &Archive, incarnation: &str) -> Result<Option<i64>, RestoreError> {
    use rusqlite::OptionalExtension;
    Ok(archive
        .connection()
        .query_row(
            "SELECT id FROM sources WHERE incarnation = ?1",
            [incarnation],
            |r| r.get(0),
        )
        .optional()?)
}

/// The part of [`ELIGIBLE`] that leaves out undo writes and undone changes.
macro_rules! not_undo_writes {
    () => {
        "(c.tx IS NULL OR (c.tx NOT IN (SELECT tx_tag FROM undo_runs WHERE source_id = ?1) \
         AND c.tx NOT IN (SELECT source_tx FROM undo_runs WHERE source_id = ?1 \
         AND source_tx IS NOT NULL AND state <> 'abandoned'))) \
         AND c.id NOT IN (SELECT i.change_id FROM undo_items i JOIN undo_runs r ON r.id = i.run_id \
         WHERE r.kind = 'undo' AND r.state = 'applied' AND i.outcome <> 'skipped')"
    };
}

/// The SQL condition (over `changes c`) that keeps a source's changes undo may act on: not
/// written by an undo or redo run (labelled with its tag, or on SQL Server written in the source
/// transaction the journal links to a run that did not end abandoned), and not undone by an
/// applied undo run. `?1` is the source id.
pub const ELIGIBLE: &str = concat!("c.source_id = ?1 AND ", not_undo_writes!());

/// [`ELIGIBLE`] for reading every change from an id on: the unary `+` keeps SQLite from
/// answering `source_id = ?1` through the (source, seq) index, which returned the rows out of id
/// order and made it sort them all (spilling 100,000 changes with their images to temporary
/// files) instead of walking the table from that id.
const ELIGIBLE_IN_ID_ORDER: &str = concat!("+c.source_id = ?1 AND ", not_undo_writes!());

const COLUMNS: &str = "c.id, c.seq, c.table_id, c.version_id, c.op, c.tx, c.stmt, c.at, c.login, \
     c.host, c.app, c.client_ip, c.src_rowid, c.row_key, c.prev_key, c.before, c.after, c.source_id";

/// Changes matching `condition` (SQL over `changes c`, with `params` bound as `?1`, `?2`, …),
/// oldest first.
pub fn changes(
    archive: &Archive,
    condition: &str,
    params: &[rusqlite::types::Value],
) -> Result<Vec<Change>, RestoreError> {
    changes_limited(archive, condition, params, None)
}

/// Like [`changes`], at most `limit` of them.
pub fn changes_limited(
    archive: &Archive,
    condition: &str,
    params: &[rusqlite::types::Value],
    limit: Option<u64>,
) -> Result<Vec<Change>, RestoreError> {
    let conn = archive.connection();
    let mut definitions: HashMap<i64, Arc<Table>> = HashMap::new();
    let mut def_stmt =
        conn.prepare_cached("SELECT definition FROM table_versions WHERE id = ?1")?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM changes c WHERE {condition} ORDER BY c.id{}",
        limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default()
    ))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    let damaged = |id: i64, what: &str| {
        RestoreError::BadRequest(format!(
            "change {id} has a damaged {what}; run `rowtrail verify`"
        ))
    };
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let version: i64 = r.get(3)?;
        let table = match definitions.get(&version) {
            Some(t) => t.clone(),
            None => {
                let def: String = def_stmt.query_row([version], |r| r.get(0))?;
                let t =
                    Arc::new(Table::from_json(&def).map_err(|_| damaged(id, "table definition"))?);
                definitions.insert(version, t.clone());
                t
            }
        };
        let img = |i: usize| -> Result<Option<Vec<Value>>, RestoreError> {
            match r.get_ref(i)? {
                ValueRef::Null => Ok(None),
                ValueRef::Blob(b) => image::decode(b)
                    .map(Some)
                    .map_err(|_| damaged(id, "row image")),
                _ => Err(damaged(id, "row image")),
            }
        };
        let meta = |i: usize| -> Result<Option<Value>, RestoreError> {
            Ok(match value_of(r.get_ref(i)?) {
                Value::Null => None,
                v => Some(v),
            })
        };
        out.push(Change {
            id,
            seq: r.get(1)?,
            source_id: r.get(17)?,
            table_id: r.get(2)?,
            table,
            op: r.get(4)?,
            tx: meta(5)?,
            stmt: meta(6)?,
            at: r.get(7)?,
            login: r.get(8)?,
            host: r.get(9)?,
            app: r.get(10)?,
            client_ip: r.get(11)?,
            rowid: r.get(12)?,
            row_key: r.get(13)?,
            prev_key: r.get(14)?,
            before: img(15)?,
            after: img(16)?,
        });
    }
    Ok(out)
}

/// The eligible changes of source `source_id` from archive id `from_id` on, oldest first.
pub fn eligible_from(
    archive: &Archive,
    source_id: i64,
    from_id: i64,
) -> Result<Vec<Change>, RestoreError> {
    changes(
        archive,
        &format!("{ELIGIBLE_IN_ID_ORDER} AND c.id >= ?2"),
        &[source_id.into(), from_id.into()],
    )
}

/// Changes by id (any source), oldest first.
pub fn by_ids(archive: &Archive, ids: &[i64]) -> Result<Vec<Change>, RestoreError> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::with_capacity(sorted.len());
    for chunk in sorted.chunks(500) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        out.extend(changes(
            archive,
            &format!("c.id IN ({})", list.join(", ")),
            &[],
        )?);
    }
    Ok(out)
}
