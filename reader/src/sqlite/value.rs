//! Values to and from SQLite: what a cell holds, exactly, and a value bound as a statement
//! parameter. The archive, the SQLite source and the apply layer all go through here.

use rowtrail_sql::Value;
use rusqlite::types::{ToSqlOutput, ValueRef};

/// The exact value a SQLite cell holds.
pub fn value_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(t.to_vec()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

/// A value bound as a statement parameter, by reference (no copy of text or blobs).
///
/// Integers, reals, text and blobs bind as themselves; text that is not UTF-8 travels as a blob
/// (a statement that must store text casts it back: `CAST(?n AS TEXT)`); the kinds SQLite lacks
/// (decimals, date-times, UUIDs) bind as their exact text.
#[derive(Debug, Clone, Copy)]
pub struct Param<'a>(pub &'a Value);

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            Value::Text(t) if std::str::from_utf8(t).is_err() => {
                ToSqlOutput::Borrowed(ValueRef::Blob(t))
            }
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t)),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            other => ToSqlOutput::Owned(rusqlite::types::Value::Text(other.to_string())),
        })
    }
}
