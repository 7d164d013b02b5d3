//! The JSON Schema in docs/stream.md against real envelopes: every kind of change and value
//! validates, and envelopes that break the schema do not (so the check can fail).

use std::sync::Arc;

use rowtrail_reader::archive::ArchivedChange;
use rowtrail_sql::model::{Column, Table, TableName};
use rowtrail_sql::staging::Op;
use rowtrail_sql::{Ident, Value};
use rowtrail_stream::envelope::{envelope, SourceInfo};
use serde_json::Value as J;

/// The schema: the one JSON block after the "JSON Schema" heading of docs/stream.md.
fn schema() -> J {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/stream.md")).unwrap();
    let after = doc
        .split("### JSON Schema")
        .nth(1)
        .expect("a JSON Schema section");
    let block = after
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a json block");
    serde_json::from_str(block).expect("the schema is JSON")
}

/// A validator for the parts of JSON Schema the envelope's schema uses.
fn check(root: &J, schema: &J, v: &J, at: &str) -> Result<(), String> {
    let fail = |why: String| Err(format!("{at}: {why} (value {v})"));
    if let Some(r) = schema.get("$ref").and_then(J::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("a local ref");
        return check(root, &root["$defs"][name], v, at);
    }
    if let Some(any) = schema.get("anyOf").and_then(J::as_array) {
        if !any.iter().any(|s| check(root, s, v, at).is_ok()) {
            return fail("matches none of anyOf".into());
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            J::String(s) => vec![s.as_str()],
            J::Array(a) => a.iter().filter_map(J::as_str).collect(),
            _ => panic!("type {t}"),
        };
        let ok = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "object" => v.is_object(),
            "array" => v.is_array(),
            "boolean" => v.is_boolean(),
            _ => panic!("type {t}"),
        });
        if !ok {
            return fail(format!("not of type {t}"));
        }
    }
    if let Some(e) = schema.get("enum").and_then(J::as_array) {
        if !e.contains(v) {
            return fail(format!("not one of {e:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            return fail(format!("not {c}"));
        }
    }
    if let Some(p) = schema.get("pattern").and_then(J::as_str) {
        // The schema's patterns: lower-case hex of whole bytes, or of a SHA-256.
        let s = v.as_str().unwrap_or_default();
        let hex = s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let ok = match p {
            "^([0-9a-f]{2})*$" => hex && s.len().is_multiple_of(2),
            "^[0-9a-f]{64}$" => hex && s.len() == 64,
            _ => panic!("pattern {p}"),
        };
        if !ok {
            return fail(format!("does not match {p}"));
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            check(root, items, x, &format!("{at}[{i}]"))?;
        }
    }
    if let Some(m) = v.as_object() {
        if let Some(req) = schema.get("required").and_then(J::as_array) {
            for r in req {
                if !m.contains_key(r.as_str().unwrap()) {
                    return fail(format!("lacks {r}"));
                }
            }
        }
        let props = schema.get("properties").and_then(J::as_object);
        for (k, x) in m {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(root, s, x, &format!("{at}.{k}"))?,
                None => match schema.get("additionalProperties") {
                    Some(J::Bool(false)) => return fail(format!("has {k:?}, which it may not")),
                    Some(s @ J::Object(_)) => check(root, s, x, &format!("{at}.{k}"))?,
                    _ => {}
                },
            }
        }
    }
    Ok(())
}

fn table(schema: Option<&str>) -> Arc<Table> {
    let cols = ["id", "name", "r", "b", "d", "t", "u", "odd"];
    Arc::new(Table {
        name: TableName {
            schema: schema.map(|s| Ident::new(s).unwrap()),
            name: Ident::new("staff members").unwrap(),
        },
        columns: cols
            .iter()
            .map(|c| Column::new(Ident::new(*c).unwrap(), "ANY", true))
            .collect(),
        primary_key: vec![0],
        unique_keys: vec![],
        rowid: true,
    })
}

fn row(i: i64) -> Vec<Value> {
    vec![
        Value::Integer(i),
        Value::text("Ada \"the\" Lovelace\n"),
        Value::Real(if i % 2 == 0 { f64::NAN } else { -0.0 }),
        Value::Blob(vec![0, 255]),
        Value::Decimal("-12.3400".into()),
        Value::DateTime("2026-11-21T14:05:00.1234567+01:00".into()),
        Value::Uuid([0xab; 16]),
        if i % 2 == 0 {
            Value::Text(vec![0xff])
        } else {
            Value::Null
        },
    ]
}

fn change(op: Op, before: Option<i64>, after: Option<i64>, schema: Option<&str>) -> ArchivedChange {
    ArchivedChange {
        id: 17,
        source_id: 1,
        incarnation: Arc::from("6f1c2b0e-0000-4000-8000-000000000001"),
        seq: 31,
        table_id: 1,
        table: table(schema),
        op,
        tx: Some(Value::Integer(81723)),
        stmt: Some(Value::text("stmt-4")),
        at: Some("2026-11-21T14:05:00.123Z".into()),
        login: Some("alice".into()),
        host: None,
        app: Some("payroll".into()),
        client_ip: Some("10.1.2.3".into()),
        rowid: Some(3),
        row_key: vec![1],
        prev_key: None,
        before: before.map(row),
        after: after.map(row),
        archived_us: 1_795_269_900_412_000,
        hash: [0x9c; 32],
    }
}

fn source() -> SourceInfo {
    SourceInfo {
        name: "sales".into(),
        engine: "mssql".into(),
        version: "0.1.0".into(),
    }
}

#[test]
fn every_kind_of_envelope_validates_against_the_documented_schema() {
    let s = schema();
    for c in [
        change(Op::Insert, None, Some(1), Some("dbo")),
        change(Op::Update, Some(1), Some(2), None),
        change(Op::Delete, Some(2), None, None),
        change(Op::KeyChange, Some(2), None, Some("dbo")),
        change(Op::KeyChange, None, Some(3), Some("dbo")),
    ] {
        let e = envelope(&c, &source());
        // Through text, as a consumer receives it.
        let e: J = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        check(&s, &s, &e, "$").unwrap_or_else(|why| panic!("{why}"));
    }
    let e = envelope(&change(Op::KeyChange, Some(2), None, None), &source());
    assert_eq!(
        (e["op"].as_str(), e["change"].as_str()),
        (Some("d"), Some("keychange"))
    );
    let e = envelope(&change(Op::KeyChange, None, Some(2), None), &source());
    assert_eq!(e["op"], "c");
}

/// A change that breaks an envelope.
type Breaks = fn(&mut J);

#[test]
fn envelopes_that_break_the_schema_are_caught() {
    let s = schema();
    let good = envelope(&change(Op::Insert, None, Some(1), None), &source());
    check(&s, &s, &good, "$").unwrap();
    let breakages: [(&str, Breaks); 6] = [
        ("op", |e| e["op"] = J::from("x")),
        ("extra", |e| e["extra"] = J::from(1)),
        ("missing", |e| {
            e.as_object_mut().unwrap().remove("seq");
        }),
        ("value", |e| {
            e["after"]["id"] = serde_json::json!({"bytes": "00"})
        }),
        ("hash", |e| e["hash"] = J::from("xyz")),
        ("source", |e| e["source"]["engine"] = J::from("oracle")),
    ];
    for (what, breaks) in breakages {
        let mut e = good.clone();
        breaks(&mut e);
        assert!(check(&s, &s, &e, "$").is_err(), "{what}: {e}");
    }
}
