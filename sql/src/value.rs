//! Values as they travel from a source row to the archive and back, exactly.

use std::fmt;

/// One column value of a row image, held exactly as the source engine holds it.
///
/// SQLite values use the five storage classes. SQL Server values that have no exact
/// machine form are kept in exact canonical text (`Decimal`, `DateTime`) or bytes (`Uuid`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float, kept bit for bit (compare with [`Value::same`], which is bitwise).
    Real(f64),
    /// Text, as the engine's bytes (UTF-8; SQLite may hold invalid sequences, kept as they are).
    Text(Vec<u8>),
    /// Binary data.
    Blob(Vec<u8>),
    /// An exact decimal (decimal, numeric, money) as canonical text, e.g. `-12.3400`.
    Decimal(String),
    /// A date/time value as ISO-8601 text with its full precision and offset, if any.
    DateTime(String),
    /// A uniqueidentifier, in RFC 4122 byte order.
    Uuid([u8; 16]),
}

impl Value {
    /// Text from a Rust string.
    pub fn text(s: &str) -> Self {
        Value::Text(s.as_bytes().to_vec())
    }

    /// Exact sameness: floats compare by bits, so `-0.0` differs from `0.0` and NaNs with equal
    /// payloads are the same. This is what "the archive holds exactly the source's value" means.
    pub fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
            _ => self == other,
        }
    }

    /// A short name of the value's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
            Value::Decimal(_) => "decimal",
            Value::DateTime(_) => "datetime",
            Value::Uuid(_) => "uuid",
        }
    }
}

impl fmt::Display for Value {
    /// A human rendering for the CLI (history, audit). Never used to build SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Real(r) => write!(f, "{r:?}"),
            Value::Text(t) => write!(f, "{:?}", String::from_utf8_lossy(t)),
            Value::Blob(b) => {
                f.write_str("x'")?;
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                f.write_str("'")
            }
            Value::Decimal(d) => f.write_str(d),
            Value::DateTime(d) => f.write_str(d),
            Value::Uuid(u) => {
                for (i, byte) in u.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}
