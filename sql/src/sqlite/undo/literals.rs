//! Values as exact SQL literals, for scripts.

use std::fmt::Write;

use crate::literal::Literal;
use crate::{Dialect, Value};

/// `v` as an exact SQLite literal.
///
/// Integers in decimal; reals in Rust's shortest round-trip decimal form (`1.0`,
/// `1e300`; infinities as `9e999`/`-9e999`; SQLite stores no NaN, so NULL); text as `'...'`
/// unless it is not valid UTF-8 or holds a NUL, then `CAST(x'..' AS TEXT)`; blobs as `x'..'`.
pub fn literal(v: &Value) -> String {
    let hex = |b: &[u8]| {
        b.iter()
            .fold(String::with_capacity(b.len() * 2), |mut s, x| {
                let _ = write!(s, "{x:02x}");
                s
            })
    };
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) if r.is_nan() => "NULL".into(),
        Value::Real(r) if r.is_infinite() => if *r > 0.0 { "9e999" } else { "-9e999" }.into(),
        Value::Real(r) => real_text(*r),
        Value::Text(t) => match std::str::from_utf8(t) {
            Ok(s) if !s.contains('\0') => Literal::sqlite(s).to_string(),
            _ => format!("CAST(x'{}' AS TEXT)", hex(t)),
        },
        Value::Blob(b) => format!("x'{}'", hex(b)),
        Value::Decimal(d) => Literal::sqlite(d).to_string(),
        Value::DateTime(d) => Literal::new(d, Dialect::Sqlite).to_string(),
        Value::Uuid(_) => Literal::new(&v.to_string(), Dialect::Sqlite).to_string(),
        // Only SQL Server sources hold sql_variant values; the value is what SQLite could take.
        Value::Variant(x) => literal(&x.value),
    }
}

/// A float as decimal text that reads back to the same bits (Rust's `{:?}` is the shortest
/// such form), always with a `.` or an exponent so SQL reads it as a real.
fn real_text(r: f64) -> String {
    let s = format!("{r:?}");
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}
