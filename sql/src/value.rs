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
    /// A SQL Server `sql_variant` value with its base type, so it goes back as what it was
    /// (`money`, not `decimal`; `datetime`, not `datetime2`). Archives written before base types
    /// were recorded hold the bare value instead.
    Variant(Box<Variant>),
}

/// A `sql_variant` value and its base type, as `SQL_VARIANT_PROPERTY` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The base type's name, lowercase (`int`, `money`, `varchar`, `datetime2`, …).
    pub base_type: String,
    /// The base type's precision (`decimal`, `numeric`; the server reports one for every type).
    pub precision: u8,
    /// The base type's scale (`decimal`, `numeric`, `time`, `datetime2`, `datetimeoffset`).
    pub scale: u8,
    /// The base type's maximum length in bytes (`char`, `varchar`, `nchar`, `nvarchar`,
    /// `binary`, `varbinary`).
    pub max_length: u16,
    /// The collation of a character base type.
    pub collation: Option<String>,
    /// The value, as a column of the base type holds it (never itself a variant).
    pub value: Value,
}

/// The base types a `sql_variant` can hold.
pub const VARIANT_BASE_TYPES: &[&str] = &[
    "bigint",
    "binary",
    "bit",
    "char",
    "date",
    "datetime",
    "datetime2",
    "datetimeoffset",
    "decimal",
    "float",
    "int",
    "money",
    "nchar",
    "numeric",
    "nvarchar",
    "real",
    "smalldatetime",
    "smallint",
    "smallmoney",
    "time",
    "tinyint",
    "uniqueidentifier",
    "varbinary",
    "varchar",
];

impl Variant {
    /// Checks what a variant may hold: a known base type, a collation name of letters, digits
    /// and underscores, a value that is not itself a variant. (The base type and the collation
    /// reach T-SQL text, so nothing else may.)
    pub fn check(&self) -> Result<(), &'static str> {
        if !VARIANT_BASE_TYPES.contains(&self.base_type.as_str()) {
            return Err("unknown sql_variant base type");
        }
        if let Some(c) = &self.collation {
            if c.is_empty() || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err("a sql_variant collation is not a collation name");
            }
        }
        if matches!(self.value, Value::Variant(_)) {
            return Err("a sql_variant holds another sql_variant");
        }
        Ok(())
    }

    /// The base type as T-SQL declares it: `decimal(19,4)`, `varchar(30)`, `nvarchar(20)`
    /// (its length in characters), `datetime2(3)`, `money`, …
    pub fn declared_type(&self) -> String {
        let b = self.base_type.as_str();
        match b {
            "decimal" | "numeric" => format!("{b}({},{})", self.precision.max(1), self.scale),
            "char" | "varchar" | "binary" | "varbinary" => {
                format!("{b}({})", self.max_length.clamp(1, 8000))
            }
            "nchar" | "nvarchar" => format!("{b}({})", (self.max_length / 2).clamp(1, 4000)),
            "time" | "datetime2" | "datetimeoffset" => format!("{b}({})", self.scale.min(7)),
            _ => b.to_string(),
        }
    }
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
            (Value::Variant(a), Value::Variant(b)) => {
                a.base_type == b.base_type
                    && a.precision == b.precision
                    && a.scale == b.scale
                    && a.max_length == b.max_length
                    && a.collation == b.collation
                    && a.value.same(&b.value)
            }
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
            Value::Variant(_) => "sql_variant",
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
            // The value as its base type shows it; the type is metadata.
            Value::Variant(v) => v.value.fmt(f),
        }
    }
}
