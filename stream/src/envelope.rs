//! The message body: a Debezium-style change event (`before`, `after`, `op`, `source`,
//! `ts_ms`) plus rowtrail's own fields, as JSON. `docs/stream.md` holds its JSON Schema.
//!
//! Row images are objects keyed by column name, in the table's column order, with every value
//! in the archive's typed JSON form (the one `rowtrail audit --format json` writes,
//! [`rowtrail_restore::audit::value_json`]): integers are JSON integers, reals always carry a
//! `.` or an exponent, text is a string, and the kinds JSON lacks are tagged objects
//! (`{"blob": hex}`, `{"text_hex": hex}`, `{"real": "nan"|"inf"|"-inf"}`, `{"decimal": text}`,
//! `{"datetime": text}`, `{"uuid": text}`). [`value_from_json`] reads them back, so a consumer
//! rebuilds exactly the rows the archive holds (a NaN's payload bits aside).
//!
//! `op` follows Debezium: `c` create, `u` update, `d` delete. A key-changing multi-row update
//! whose images could not be paired is recorded per image; its before-image publishes as `d`
//! and its after-image as `c` (as Debezium turns a key change into a delete and a create), and
//! `change` says `keychange`.

use rowtrail_reader::archive::ArchivedChange;
use rowtrail_sql::staging::Op;
use rowtrail_sql::Value;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// The envelope's format version (`source.version` carries rowtrail's own version).
pub const ENVELOPE_VERSION: u32 = 1;

/// What every envelope of one publisher says about its source.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// The source's name in subjects (`[stream] source`).
    pub name: String,
    /// `sqlite` or `mssql`.
    pub engine: String,
    /// rowtrail's version.
    pub version: String,
}

/// The Debezium operation letter of a change.
pub fn op_letter(c: &ArchivedChange) -> &'static str {
    match c.op {
        Op::Insert => "c",
        Op::Update => "u",
        Op::Delete => "d",
        Op::KeyChange if c.after.is_some() => "c",
        Op::KeyChange => "d",
    }
}

/// The JetStream message id of a change: `<incarnation>:<seq>`, unique for ever per source.
pub fn message_id(c: &ArchivedChange) -> String {
    format!("{}:{}", c.incarnation, c.seq)
}

/// Milliseconds since the epoch of an archived UTC time (`YYYY-MM-DDTHH:MM:SS[.f]Z`).
fn millis(at: &str) -> Option<i64> {
    at.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// A value written in the typed JSON form straight to the output, exactly as
/// [`rowtrail_restore::audit::value_json`] builds it (a test holds the two to the same bytes), without the tree.
struct Typed<'a>(&'a Value);

impl Serialize for Typed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tagged = |s: S, tag: &str, text: &str| {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry(tag, text)?;
            m.end()
        };
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Integer(i) => s.serialize_i64(*i),
            Value::Real(r) if r.is_finite() => s.serialize_f64(*r),
            Value::Real(r) => tagged(
                s,
                "real",
                if r.is_nan() {
                    "nan"
                } else if *r > 0.0 {
                    "inf"
                } else {
                    "-inf"
                },
            ),
            Value::Text(t) => match std::str::from_utf8(t) {
                Ok(text) => s.serialize_str(text),
                Err(_) => tagged(s, "text_hex", &hex(t)),
            },
            Value::Blob(b) => tagged(s, "blob", &hex(b)),
            Value::Decimal(d) => tagged(s, "decimal", d),
            Value::DateTime(d) => tagged(s, "datetime", d),
            Value::Uuid(_) => tagged(s, "uuid", &self.0.to_string()),
        }
    }
}

/// Lower-case hex.
fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(b.len() * 2);
    for &x in b {
        out.push(DIGITS[(x >> 4) as usize] as char);
        out.push(DIGITS[(x & 15) as usize] as char);
    }
    out
}

/// A row image: `{column: value}` in column order, or null.
struct Image<'a>(&'a ArchivedChange, Option<&'a Vec<Value>>);

impl Serialize for Image<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.1 {
            None => s.serialize_unit(),
            Some(values) => {
                let mut m = s.serialize_map(Some(values.len()))?;
                for (col, v) in self.0.table.columns.iter().zip(values) {
                    m.serialize_entry(col.name.as_str(), &Typed(v))?;
                }
                m.end()
            }
        }
    }
}

/// A transaction or statement label, or null.
struct Label<'a>(&'a Option<Value>);

impl Serialize for Label<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_unit(),
            Some(v) => Typed(v).serialize(s),
        }
    }
}

/// The `source` block.
#[derive(Serialize)]
struct Source<'a> {
    version: &'a str,
    connector: &'static str,
    name: &'a str,
    engine: &'a str,
    incarnation: &'a str,
    schema: Option<&'a str>,
    table: &'a str,
    ts_ms: Option<i64>,
}

/// The envelope, borrowing from the change (field order is the documented one).
#[derive(Serialize)]
struct Envelope<'a> {
    before: Image<'a>,
    after: Image<'a>,
    op: &'static str,
    ts_ms: i64,
    source: Source<'a>,
    envelope: u32,
    id: i64,
    seq: i64,
    change: &'static str,
    at: Option<&'a str>,
    tx: Label<'a>,
    statement: Label<'a>,
    login: Option<&'a str>,
    host: Option<&'a str>,
    application: Option<&'a str>,
    client_address: Option<&'a str>,
    key: Vec<&'a str>,
    rowid: Option<i64>,
    hash: String,
}

fn envelope_of<'a>(c: &'a ArchivedChange, source: &'a SourceInfo) -> Envelope<'a> {
    Envelope {
        before: Image(c, c.before.as_ref()),
        after: Image(c, c.after.as_ref()),
        op: op_letter(c),
        ts_ms: c.archived_us / 1000,
        source: Source {
            version: &source.version,
            connector: "rowtrail",
            name: &source.name,
            engine: &source.engine,
            incarnation: &c.incarnation,
            schema: c.table.name.schema.as_ref().map(|s| s.as_str()),
            table: c.table.name.name.as_str(),
            ts_ms: c.at.as_deref().and_then(millis),
        },
        envelope: ENVELOPE_VERSION,
        id: c.id,
        seq: c.seq,
        change: c.op.word(),
        at: c.at.as_deref(),
        tx: Label(&c.tx),
        statement: Label(&c.stmt),
        login: c.login.as_deref(),
        host: c.host.as_deref(),
        application: c.app.as_deref(),
        client_address: c.client_ip.as_deref(),
        key: c
            .table
            .key()
            .unwrap_or_default()
            .iter()
            .map(|&i| c.table.columns[i].name.as_str())
            .collect(),
        rowid: c.rowid,
        hash: hex(&c.hash),
    }
}

/// The envelope of `c` as JSON.
pub fn envelope(c: &ArchivedChange, source: &SourceInfo) -> serde_json::Value {
    serde_json::to_value(envelope_of(c, source)).expect("an envelope always serialises")
}

/// The envelope of `c` as the bytes published.
pub fn envelope_bytes(c: &ArchivedChange, source: &SourceInfo) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    serde_json::to_writer(&mut out, &envelope_of(c, source))
        .expect("an envelope always serialises");
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A value from its typed JSON form (the inverse of the form in the module documentation);
/// `None` when `v` is not in that form.
pub fn value_from_json(v: &serde_json::Value) -> Option<Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => Value::Null,
        J::Bool(_) | J::Array(_) => return None,
        J::Number(n) => match n.as_i64() {
            Some(i) if !n.is_f64() => Value::Integer(i),
            _ => Value::Real(n.as_f64()?),
        },
        J::String(s) => Value::Text(s.as_bytes().to_vec()),
        J::Object(m) => {
            let (tag, inner) = m.iter().next().filter(|_| m.len() == 1)?;
            let s = inner.as_str()?;
            match tag.as_str() {
                "real" => Value::Real(match s {
                    "nan" => f64::NAN,
                    "inf" => f64::INFINITY,
                    "-inf" => f64::NEG_INFINITY,
                    _ => return None,
                }),
                "text_hex" => Value::Text(unhex(s)?),
                "blob" => Value::Blob(unhex(s)?),
                "decimal" => Value::Decimal(s.to_string()),
                "datetime" => Value::DateTime(s.to_string()),
                "uuid" => Value::Uuid(unhex(&s.replace('-', ""))?.try_into().ok()?),
                _ => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowtrail_restore::audit::value_json;
    use serde_json::json;

    #[test]
    fn every_kind_of_value_comes_back_exactly() {
        let values = [
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Integer(0),
            Value::Real(1.0),
            Value::Real(-0.0),
            Value::Real(f64::MIN_POSITIVE),
            Value::Real(0.1 + 0.2),
            // Parsed back one unit in the last place off without serde_json's float_roundtrip.
            Value::Real(271.0 / 3.0),
            Value::Real(f64::INFINITY),
            Value::Real(f64::NEG_INFINITY),
            Value::text("hé\u{0}llo"),
            Value::Text(vec![0xff, 0xfe]),
            Value::Blob(vec![0, 1, 255]),
            Value::Blob(vec![]),
            Value::Decimal("-12.3400".into()),
            Value::DateTime("2026-11-21T14:05:00.1234567+01:00".into()),
            Value::Uuid([7; 16]),
        ];
        for v in values.iter().chain([Value::Real(f64::NAN)].iter()) {
            // One JSON form: the envelope's writer gives the bytes the audit's tree gives.
            assert_eq!(
                serde_json::to_string(&Typed(v)).unwrap(),
                serde_json::to_string(&value_json(v)).unwrap()
            );
        }
        for v in values {
            let text = serde_json::to_string(&value_json(&v)).unwrap();
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            let got = value_from_json(&back).unwrap_or_else(|| panic!("{text}"));
            assert!(got.same(&v), "{v:?} -> {text} -> {got:?}");
        }
        let nan = value_from_json(&value_json(&Value::Real(f64::NAN))).unwrap();
        assert!(matches!(nan, Value::Real(r) if r.is_nan()));
        for bad in [
            json!(true),
            json!([1]),
            json!({"blob": "0"}),
            json!({"x": "1"}),
        ] {
            assert_eq!(value_from_json(&bad), None, "{bad}");
        }
    }

    #[test]
    fn times_become_milliseconds() {
        assert_eq!(millis("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            millis("2026-11-21T14:05:00.1234567Z"),
            Some(1_795_269_900_123)
        );
        assert_eq!(millis("not a time"), None);
    }
}
