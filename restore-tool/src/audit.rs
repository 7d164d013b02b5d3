//! Audit listings: changes filtered by table, login, client address, operation, time range and
//! transaction, streamed page by page (keyset on the archive id), never loaded all at once.
//!
//! The JSON form ([`to_json`]) is one object per change (JSON Lines); see
//! `docs/audit-and-undo.md` for its shape. Values keep their type: integers are JSON integers,
//! reals always carry a `.` or an exponent, text is a string, and kinds JSON lacks are tagged
//! objects (`{"blob": "<hex>"}`, `{"text_hex": …}` for text that is not UTF-8, `{"real": "inf"}`,
//! `{"decimal": …}`, `{"datetime": …}`, `{"uuid": …}`; a SQL Server `sql_variant` archived with
//! its base type: `{"sql_variant": "money", "value": {"decimal": "12.5000"}}`).

use rowtrail_reader::archive::{Archive, ArchivedChange as Change, ChangeQuery};
use rowtrail_sql::staging::Op;
use rowtrail_sql::{Ident, TableName, Value};
use serde_json::{json, Map};

use crate::scope::normalise_time;
use crate::RestoreError;

/// Which changes to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this table.
    pub table: Option<String>,
    /// The table's schema (SQL Server).
    pub schema: Option<String>,
    /// Only changes by this login.
    pub login: Option<String>,
    /// Only changes from this client address.
    pub client_ip: Option<String>,
    /// Only this operation (`insert`, `update`, `delete`, `keychange`).
    pub op: Option<String>,
    /// Only changes at or after this UTC time.
    pub since: Option<String>,
    /// Only changes before this UTC time.
    pub until: Option<String>,
    /// Only this transaction.
    pub tx: Option<String>,
    /// Only changes after this archive id (to resume a listing).
    pub after_id: Option<i64>,
    /// At most this many.
    pub limit: Option<u64>,
}

/// The operations an archive records.
pub const OPS: [&str; 4] = ["insert", "update", "delete", "keychange"];

impl AuditFilter {
    /// The archive query this filter asks.
    pub fn query(&self) -> Result<ChangeQuery, RestoreError> {
        let op = match &self.op {
            None => None,
            Some(op) => Some(Op::from_word(op).ok_or_else(|| {
                RestoreError::BadRequest(format!("--op {op:?}: use one of {}", OPS.join(", ")))
            })?),
        };
        let table = match &self.table {
            None => None,
            Some(t) => Some(TableName {
                schema: self.schema.clone().map(Ident::new).transpose()?,
                name: Ident::new(t.clone())?,
            }),
        };
        Ok(ChangeQuery {
            table,
            login: self.login.clone(),
            client_ip: self.client_ip.clone(),
            op,
            since: self.since.as_deref().map(normalise_time).transpose()?,
            until: self.until.as_deref().map(normalise_time).transpose()?,
            tx: self.tx.clone(),
            after_id: self.after_id,
            limit: self.limit,
            ..ChangeQuery::default()
        })
    }
}

/// Calls `each` with every change `filter` selects, oldest first, reading `page` changes at a
/// time; returns how many there were and the last id (to resume after).
pub fn stream(
    archive: &Archive,
    filter: &AuditFilter,
    page: u64,
    each: &mut dyn FnMut(&Change) -> Result<(), RestoreError>,
) -> Result<(u64, Option<i64>), RestoreError> {
    let query = filter.query()?;
    if let Some(t) = &query.table {
        // A table the archive has never seen is a mistake to say so about, not an empty list.
        crate::history::latest_definition(archive, t)?;
    }
    let mut count = 0u64;
    let mut last = None;
    for c in archive.stream_pages(&query, page)? {
        let c = c?;
        each(&c)?;
        count += 1;
        last = Some(c.id);
    }
    Ok((count, last))
}

/// A value as JSON, keeping its type (see the module documentation).
pub fn value_json(v: &Value) -> serde_json::Value {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => json!(i),
        Value::Real(r) if r.is_finite() => json!(r),
        Value::Real(r) => {
            json!({ "real": if r.is_nan() { "nan" } else if *r > 0.0 { "inf" } else { "-inf" } })
        }
        Value::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => json!(s),
            Err(_) => json!({ "text_hex": hex(t) }),
        },
        Value::Blob(b) => json!({ "blob": hex(b) }),
        Value::Decimal(d) => json!({ "decimal": d }),
        Value::DateTime(d) => json!({ "datetime": d }),
        Value::Uuid(_) => json!({ "uuid": v.to_string() }),
        Value::Variant(x) => {
            json!({ "sql_variant": x.declared_type(), "value": value_json(&x.value) })
        }
    }
}

/// The row's key as `{column: value}` (`{"rowid": n}` for a table without a key).
pub fn key_json(c: &Change) -> serde_json::Value {
    let image = c.after.as_ref().or(c.before.as_ref());
    let mut m = Map::new();
    match (c.table.key(), image) {
        (Some(k), Some(img)) => {
            for &i in k {
                m.insert(c.table.columns[i].name.to_string(), value_json(&img[i]));
            }
        }
        _ => {
            if let Some(r) = c.rowid {
                m.insert("rowid".into(), json!(r));
            }
        }
    }
    serde_json::Value::Object(m)
}

/// One change as a JSON object; unchanged columns only with `all_columns`.
pub fn to_json(c: &Change, all_columns: bool) -> serde_json::Value {
    let cols = &c.table.columns;
    let columns: Vec<serde_json::Value> = (0..cols.len())
        .filter_map(|i| {
            let before = c.before.as_ref().map(|b| &b[i]);
            let after = c.after.as_ref().map(|a| &a[i]);
            let changed = match (before, after) {
                (Some(b), Some(a)) => !b.same(a),
                _ => true,
            };
            (all_columns || changed).then(|| {
                json!({
                    "column": cols[i].name.as_str(),
                    "before": before.map_or(serde_json::Value::Null, value_json),
                    "after": after.map_or(serde_json::Value::Null, value_json),
                    "changed": changed,
                })
            })
        })
        .collect();
    let meta = |v: &Option<Value>| v.as_ref().map_or(serde_json::Value::Null, value_json);
    json!({
        "id": c.id,
        "incarnation": &*c.incarnation,
        "seq": c.seq,
        "schema": c.table.name.schema.as_ref().map(|s| s.as_str()),
        "table": c.table.name.name.as_str(),
        "op": c.op.word(),
        "at": c.at,
        "login": c.login,
        "host": c.host,
        "app": c.app,
        "client_ip": c.client_ip,
        "tx": meta(&c.tx),
        "statement": meta(&c.stmt),
        "rowid": c.rowid,
        "key": key_json(c),
        "columns": columns,
    })
}

/// The CSV header line (no line break).
pub const CSV_HEADER: &str = "id,seq,at,table,op,login,host,app,client_ip,tx,statement,key,columns";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A change's key as text: `id=3` (`rowid=7` without a key).
pub fn key_text(c: &Change) -> String {
    match key_json(c) {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The columns of a change as text: `col: before → after` for updates, `col = value` otherwise.
pub fn columns_text(c: &Change, all_columns: bool) -> String {
    let cols = &c.table.columns;
    (0..cols.len())
        .filter_map(|i| {
            let name = cols[i].name.as_str();
            match (
                c.before.as_ref().map(|b| &b[i]),
                c.after.as_ref().map(|a| &a[i]),
            ) {
                (Some(b), Some(a)) if b.same(a) => all_columns.then(|| format!("{name}: {b}")),
                (Some(b), Some(a)) => Some(format!("{name}: {b} → {a}")),
                (None, Some(v)) | (Some(v), None) => Some(format!("{name} = {v}")),
                (None, None) => None,
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One change as a CSV line (no line break).
pub fn to_csv(c: &Change, all_columns: bool) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let meta = |v: &Option<Value>| match v {
        None => String::new(),
        Some(Value::Text(t)) => String::from_utf8_lossy(t).into_owned(),
        Some(other) => other.to_string(),
    };
    [
        c.id.to_string(),
        c.seq.to_string(),
        opt(&c.at),
        c.table.name.to_string(),
        c.op.word().to_string(),
        opt(&c.login),
        opt(&c.host),
        opt(&c.app),
        opt(&c.client_ip),
        meta(&c.tx),
        meta(&c.stmt),
        key_text(c),
        columns_text(c, all_columns),
    ]
    .iter()
    .map(|f| csv_field(f))
    .collect::<Vec<_>>()
    .join(",")
}
