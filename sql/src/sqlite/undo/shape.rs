//! A step's shape: everything besides its table that the text of its bound statements depends on.
//!
//! Applying an undo renders one statement per step, and most steps of a plan differ only in
//! their values. Two steps of the same table whose shapes are equal render, with
//! [`Values::Bound`](super::Values::Bound), to the same SQL text, and each one's
//! parameters are the other's [`Origin`](super::Origin)s resolved against it: a caller may render
//! once per shape and bind every later step of that shape without rendering again.

use super::Step;
use crate::Value;

/// The shape of `step`: which rows it has and each value's kind: NULL (`IS NULL`), its storage
/// class (SQLite guards compare it), and text that is not UTF-8 (bound as a blob and cast).
///
/// `None` when the text holds one of the step's own values, so no other step shares it: the
/// rowid a step on a table without a key prefers among equal rows.
pub fn shape(step: &Step<'_>) -> Option<Vec<u8>> {
    if step.rowid.is_some() && step.table.key().is_none() {
        return None;
    }
    let columns = step.table.columns.len();
    let mut out = Vec::with_capacity(1 + 2 * columns);
    out.push(u8::from(step.expect.is_some()) | u8::from(step.target.is_some()) << 1);
    for row in [step.expect, step.target].into_iter().flatten() {
        out.extend(row.iter().map(kind));
        // Rows have the table's width; the mark keeps the two apart all the same.
        out.push(u8::MAX);
    }
    Some(out)
}

fn kind(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Integer(_) => 1,
        Value::Real(_) => 2,
        Value::Blob(_) => 3,
        Value::Text(t) if std::str::from_utf8(t).is_ok() => 4,
        Value::Text(_) => 5,
        Value::Decimal(_) => 6,
        Value::DateTime(_) => 7,
        Value::Uuid(_) => 8,
        Value::Variant(_) => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::table;
    use super::super::{render, Values};
    use super::*;

    /// Rows of every kind, in pairs of equal kinds with different values.
    fn rows() -> Vec<[Value; 3]> {
        let mut out = Vec::new();
        let values = [
            (Value::Null, Value::Null),
            (Value::Integer(1), Value::Integer(-5)),
            (Value::Real(1.5), Value::Real(-0.0)),
            (Value::Blob(vec![1]), Value::Blob(vec![])),
            (Value::text("a"), Value::text("bé")),
            (Value::Text(vec![0xff]), Value::Text(vec![0xfe, 0])),
            (Value::Decimal("1.20".into()), Value::Decimal("-3".into())),
        ];
        for (a, b) in &values {
            for (c, d) in &values {
                out.push([Value::Integer(1), a.clone(), c.clone()]);
                out.push([Value::Integer(2), b.clone(), d.clone()]);
            }
        }
        out
    }

    #[test]
    fn equal_shapes_render_the_same_text_and_bind_through_origins() {
        let rows = rows();
        for key in [vec![0], vec![]] {
            let t = table(key);
            {
                let mut seen: Vec<(Vec<u8>, Vec<String>)> = Vec::new();
                let mut distinct_texts = std::collections::HashSet::new();
                for (i, e) in rows.iter().enumerate() {
                    let t2 = &rows[(i * 7 + 3) % rows.len()];
                    for (expect, target) in [(Some(&e[..]), Some(&t2[..])), (Some(&e[..]), None)]
                        .into_iter()
                        .chain([(None, Some(&e[..]))])
                    {
                        let step = Step {
                            table: &t,
                            expect,
                            target,
                            rowid: None,
                        };
                        let r = render(&step, Values::Bound, None).unwrap();
                        let all: Vec<_> = std::iter::once(&r.guarded)
                            .chain(r.matching.as_ref())
                            .chain(&r.forced)
                            .collect();
                        for st in &all {
                            let bound: Vec<Value> = st
                                .origins
                                .iter()
                                .map(|o| o.value(&step).unwrap().clone())
                                .collect();
                            assert_eq!(bound, st.params, "origins give the params");
                        }
                        let texts: Vec<String> = all.iter().map(|s| s.sql.clone()).collect();
                        distinct_texts.insert(texts.clone());
                        let s = shape(&step).unwrap();
                        match seen.iter().find(|(k, _)| *k == s) {
                            Some((_, before)) => {
                                assert_eq!(*before, texts, "same shape, same text")
                            }
                            None => seen.push((s, texts)),
                        }
                    }
                }
                assert!(
                    seen.len() < rows.len() * 3,
                    "rows of equal kinds share a shape"
                );
                assert!(distinct_texts.len() > 10, "the kinds do change the text");
            }
        }
    }

    #[test]
    fn a_keyless_step_preferring_a_rowid_has_no_shape() {
        let row = [Value::Integer(1), Value::Null, Value::text("x")];
        let step = |t, rowid| Step {
            table: t,
            expect: Some(&row[..]),
            target: None,
            rowid,
        };
        let (keyed, keyless) = (table(vec![0]), table(vec![]));
        assert!(shape(&step(&keyed, Some(1))).is_some());
        assert_eq!(shape(&step(&keyed, Some(1))), shape(&step(&keyed, Some(2))));
        assert_eq!(shape(&step(&keyless, Some(1))), None);
        assert!(shape(&step(&keyless, None)).is_some());
        let r = |rowid| {
            let s = step(&keyless, rowid);
            render(&s, Values::Bound, None).unwrap().guarded.sql
        };
        assert_ne!(r(Some(1)), r(Some(2)), "the preferred rowid is in the text");
    }
}
