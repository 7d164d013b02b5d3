//! A message body read back: the envelope ([`crate::envelope`]) parsed into what it says, then,
//! given the table's definition as the consumer holds it, into the change the apply layer
//! takes ([`ArchivedChange`]), every value exactly as the archive holds it.
//!
//! Nothing here trusts the body: a field missing or of the wrong kind, a value not in the
//! typed form, an image whose columns are not the table's, all give an error that names the
//! change (never a row value).

use std::sync::Arc;

use rowtrail_reader::archive::ArchivedChange;
use rowtrail_sql::staging::Op;
use rowtrail_sql::{Table, Value};
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::envelope::{value_from_json, ENVELOPE_VERSION};

/// An envelope's `source` block, as read.
#[derive(Debug, Clone, Deserialize)]
struct WireSource {
    name: String,
    engine: String,
    incarnation: String,
    schema: Option<String>,
    table: String,
}

/// The envelope as read (the fields a consumer needs).
#[derive(Debug, Clone, Deserialize)]
struct Wire {
    before: Option<Map<String, Json>>,
    after: Option<Map<String, Json>>,
    ts_ms: i64,
    source: WireSource,
    envelope: u32,
    id: i64,
    seq: i64,
    change: String,
    at: Option<String>,
    tx: Json,
    statement: Json,
    login: Option<String>,
    host: Option<String>,
    application: Option<String>,
    client_address: Option<String>,
    rowid: Option<i64>,
    hash: String,
}

/// One change as a message carries it, before it meets its table's definition.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The archive id (the stream's order).
    pub id: i64,
    /// The source's sequence number.
    pub seq: i64,
    /// The source incarnation.
    pub incarnation: String,
    /// The source's name in subjects.
    pub source: String,
    /// `sqlite` or `mssql`.
    pub engine: String,
    /// The table's schema (`None` on SQLite).
    pub schema: Option<String>,
    /// The table's name.
    pub table: String,
    /// What happened.
    pub op: Op,
    /// The source's UTC time of the statement (archive text form).
    pub at: Option<String>,
    /// When the archive received it (µs since the epoch, to the millisecond).
    pub archived_us: i64,
    wire: Wire,
}

/// `what` as an error about change `id`.
fn bad(id: Option<i64>, what: impl std::fmt::Display) -> String {
    match id {
        Some(id) => format!("the message of change {id} {what}"),
        None => format!("a message {what}"),
    }
}

/// Reads a message body.
pub fn decode(payload: &[u8]) -> Result<Incoming, String> {
    let wire: Wire = serde_json::from_slice(payload)
        .map_err(|e| bad(None, format!("is not a rowtrail change event ({e})")))?;
    let id = Some(wire.id);
    if wire.envelope != ENVELOPE_VERSION {
        return Err(bad(
            id,
            format!(
                "is in envelope format {}; this rowtrail reads format {ENVELOPE_VERSION}",
                wire.envelope
            ),
        ));
    }
    let op = Op::from_word(&wire.change)
        .ok_or_else(|| bad(id, format!("names no known change ({:?})", wire.change)))?;
    Ok(Incoming {
        id: wire.id,
        seq: wire.seq,
        incarnation: wire.source.incarnation.clone(),
        source: wire.source.name.clone(),
        engine: wire.source.engine.clone(),
        schema: wire.source.schema.clone(),
        table: wire.source.table.clone(),
        op,
        at: wire.at.clone(),
        archived_us: wire.ts_ms.saturating_mul(1000),
        wire,
    })
}

/// A transaction or statement label: null is none.
fn label(id: i64, field: &str, v: &Json) -> Result<Option<Value>, String> {
    match v {
        Json::Null => Ok(None),
        v => value_from_json(v)
            .map(Some)
            .ok_or_else(|| bad(Some(id), format!("has a {field} that is no typed value"))),
    }
}

/// An image in `table`'s column order; its columns must be exactly the table's.
fn image(
    id: i64,
    table: &Table,
    which: &str,
    m: &Option<Map<String, Json>>,
) -> Result<Option<Vec<Value>>, String> {
    let Some(m) = m else { return Ok(None) };
    let differs = || {
        bad(
            Some(id),
            format!(
                "has a {which}-image whose columns are not those of table {} as this copy holds \
                 it (its columns changed at the source): take a new baseline of it and build \
                 the replica again",
                table.name
            ),
        )
    };
    if m.len() != table.columns.len() {
        return Err(differs());
    }
    table
        .columns
        .iter()
        .map(|c| {
            let v = m.get(c.name.as_str()).ok_or_else(differs)?;
            value_from_json(v).ok_or_else(|| {
                bad(
                    Some(id),
                    format!(
                        "has a value of column {} in its {which}-image that is not in the typed \
                         form",
                        c.name
                    ),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Incoming {
    /// The change it carries, with `table` (the consumer's definition of the table it names)
    /// as its table.
    pub fn into_change(self, table: Arc<Table>) -> Result<ArchivedChange, String> {
        let w = &self.wire;
        let id = self.id;
        let before = image(id, &table, "before", &w.before)?;
        let after = image(id, &table, "after", &w.after)?;
        let shape_ok = match self.op {
            Op::Insert => before.is_none() && after.is_some(),
            Op::Update => before.is_some() && after.is_some(),
            Op::Delete => before.is_some() && after.is_none(),
            Op::KeyChange => before.is_some() != after.is_some(),
        };
        if !shape_ok {
            return Err(bad(
                Some(id),
                format!("has images that do not fit its change ({})", self.op.word()),
            ));
        }
        let hash = unhex32(&w.hash).ok_or_else(|| bad(Some(id), "has no valid hash"))?;
        Ok(ArchivedChange {
            id,
            source_id: 0,
            incarnation: Arc::from(self.incarnation.as_str()),
            seq: self.seq,
            table_id: 0,
            op: self.op,
            tx: label(id, "transaction", &w.tx)?,
            stmt: label(id, "statement", &w.statement)?,
            at: self.at.clone(),
            login: w.login.clone(),
            host: w.host.clone(),
            app: w.application.clone(),
            client_ip: w.client_address.clone(),
            rowid: w.rowid,
            row_key: Vec::new(),
            prev_key: None,
            before,
            after,
            archived_us: self.archived_us,
            hash,
            table,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{envelope_bytes, SourceInfo};
    use rowtrail_sql::{Column, Ident, TableName};

    fn table(cols: &[&str]) -> Arc<Table> {
        Arc::new(Table {
            name: TableName::bare(Ident::new("t").unwrap()),
            columns: cols
                .iter()
                .map(|c| Column::new(Ident::new(*c).unwrap(), "TEXT", true))
                .collect(),
            primary_key: vec![0],
            unique_keys: Vec::new(),
            rowid: true,
        })
    }

    fn change(t: Arc<Table>) -> ArchivedChange {
        ArchivedChange {
            id: 7,
            source_id: 1,
            incarnation: Arc::from("inc-1"),
            seq: 12,
            table_id: 3,
            op: Op::Update,
            tx: Some(Value::Integer(81)),
            stmt: None,
            at: Some("2026-11-21T14:05:00.1234567Z".into()),
            login: Some("alice".into()),
            host: None,
            app: Some("payroll".into()),
            client_ip: None,
            rowid: Some(4),
            row_key: vec![1],
            prev_key: None,
            before: Some(vec![Value::Integer(1), Value::Blob(vec![0, 255])]),
            after: Some(vec![Value::Integer(1), Value::Real(271.0 / 3.0)]),
            archived_us: 1_795_269_900_412_000,
            hash: [9; 32],
            table: t,
        }
    }

    #[test]
    fn an_envelope_comes_back_as_the_change_it_was_made_from() {
        let t = table(&["id", "v"]);
        let c = change(t.clone());
        let source = SourceInfo {
            name: "sales".into(),
            engine: "sqlite".into(),
            version: "0.1.0".into(),
        };
        let inc = decode(&envelope_bytes(&c, &source)).unwrap();
        assert_eq!(
            (inc.id, inc.seq, inc.source.as_str(), inc.table.as_str()),
            (7, 12, "sales", "t")
        );
        let back = inc.into_change(t).unwrap();
        assert_eq!(
            (back.id, back.seq, back.op, back.rowid),
            (7, 12, Op::Update, Some(4))
        );
        assert_eq!(&*back.incarnation, "inc-1");
        assert_eq!(back.tx, c.tx);
        assert_eq!(back.hash, c.hash);
        assert_eq!(back.archived_us, c.archived_us);
        for (a, b) in [(&back.before, &c.before), (&back.after, &c.after)] {
            let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
            assert!(a.iter().zip(b).all(|(x, y)| x.same(y)), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn bodies_that_do_not_fit_are_refused_naming_the_change_not_its_values() {
        let t = table(&["id", "v"]);
        let source = SourceInfo {
            name: "s".into(),
            engine: "sqlite".into(),
            version: "0".into(),
        };
        let body = envelope_bytes(&change(t), &source);
        let e = decode(b"{\"secret\": 1}").unwrap_err();
        assert!(e.contains("not a rowtrail change event"), "{e}");
        let e = decode(&body)
            .unwrap()
            .into_change(table(&["id", "w"]))
            .unwrap_err();
        assert!(e.contains("change 7") && e.contains("columns"), "{e}");
        let e = decode(&body)
            .unwrap()
            .into_change(table(&["id"]))
            .unwrap_err();
        assert!(e.contains("columns"), "{e}");
        let mut j: Json = serde_json::from_slice(&body).unwrap();
        j["envelope"] = Json::from(2);
        let e = decode(&serde_json::to_vec(&j).unwrap()).unwrap_err();
        assert!(e.contains("envelope format 2"), "{e}");
        let mut j: Json = serde_json::from_slice(&body).unwrap();
        j["after"] = Json::Null;
        let e = decode(&serde_json::to_vec(&j).unwrap())
            .unwrap()
            .into_change(table(&["id", "v"]))
            .unwrap_err();
        assert!(e.contains("do not fit its change (update)"), "{e}");
    }
}
