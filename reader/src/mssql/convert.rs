//! SQL Server values to archive values, exactly.
//!
//! | SQL Server type | tiberius | archive value |
//! |---|---|---|
//! | `bit`, `tinyint`, `smallint`, `int`, `bigint` | `Bit`, `U8`, `I16`, `I32`, `I64` | `Integer` |
//! | `real`, `float` | `F32`, `F64` | `Real`, bit for bit (a `real` widens exactly) |
//! | `decimal(p,s)`, `numeric(p,s)` | `Numeric` | `Decimal`: exact text with `s` digits after the point |
//! | `money`, `smallmoney` | read as `decimal(19,4)`, `decimal(10,4)` (the driver's own money decoding goes through a float) | `Decimal` with 4 digits |
//! | `date` | `Date` | `DateTime` `yyyy-mm-dd` |
//! | `time(n)` | `Time` | `DateTime` `hh:mm:ss[.f…]` with `n` digits |
//! | `datetime2(n)` | `DateTime2` | `DateTime` `yyyy-mm-ddThh:mm:ss[.f…]` with `n` digits |
//! | `datetimeoffset(n)` | `DateTimeOffset` (UTC plus offset) | `DateTime` in local time with its offset, `…+hh:mm` |
//! | `datetime` | `DateTime` (1/300 s ticks) | `DateTime` `…Thh:mm:ss.mmm`, SQL Server's own rounding (`.003`, `.007`), which converts back to the same tick |
//! | `smalldatetime` | `SmallDateTime` | `DateTime` `…Thh:mm:00` |
//! | `char`, `varchar`, `nchar`, `nvarchar` (n or max), `sysname` | `String` | `Text` (UTF-8) |
//! | `xml` | `Xml` | `Text` (the server's serialisation) |
//! | `binary`, `varbinary` (n or max), `rowversion` (staged as `binary(8)`) | `Binary` | `Blob` |
//! | `hierarchyid`, `geometry`, `geography` | read as `varbinary(max)` | `Blob` (native serialisation; converts back exactly) |
//! | `uniqueidentifier` | `Guid` (RFC 4122 order) | `Uuid`: bytes in the order of the textual GUID, not SQL Server's mixed-endian storage order |
//! | `sql_variant` | the base type's variant (money read as decimal), and beside it the base type, precision, scale, maximum length and collation (`SQL_VARIANT_PROPERTY`, [`variant_type_expr`]) | `Variant`: the value as for the base type, with its base type |
//! | NULL of any type | `…(None)` | `Null` |

use rowtrail_sql::mssql::types::MssqlType;
use rowtrail_sql::{Column, Value};
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
use tiberius::ColumnData;

/// The expression that reads staging column `c` (staged as `staging_type`) so that its value
/// reaches the reader exactly, aliased to the column's own name.
pub fn select_expr(c: &Column, staging_type: &str) -> String {
    let name = c.name.mssql();
    let base = MssqlType::parse(staging_type)
        .map(|t| t.base)
        .unwrap_or_default();
    match base.as_str() {
        // The server transcodes: the driver picks a code page from the collation's LCID and
        // ignores its UTF-8 flag (`…_UTF8` collations would arrive garbled) and knows no legacy
        // code page of sort ids 30–61; `nvarchar` arrives as UTF-16, which it always decodes.
        "char" | "varchar" => format!("CONVERT({}, {name}) AS {name}", unicode_of(staging_type)),
        "money" => format!("CONVERT(decimal(19,4), {name}) AS {name}"),
        "smallmoney" => format!("CONVERT(decimal(10,4), {name}) AS {name}"),
        "hierarchyid" | "geometry" | "geography" => {
            format!("CONVERT(varbinary(max), {name}) AS {name}")
        }
        "sql_variant" => format!(
            "CASE WHEN CONVERT(sysname, SQL_VARIANT_PROPERTY({name}, 'BaseType')) IN (N'money', N'smallmoney') \
             THEN CONVERT(sql_variant, CONVERT(decimal(19,4), {name})) \
             WHEN CONVERT(sysname, SQL_VARIANT_PROPERTY({name}, 'BaseType')) IN (N'char', N'varchar') \
             AND DATALENGTH(CONVERT(nvarchar(max), {name})) <= 8000 \
             THEN CONVERT(sql_variant, CONVERT(nvarchar(4000), {name})) ELSE {name} END AS {name}"
        ),
        _ => name.to_string(),
    }
}

/// The columns of `table` that are `sql_variant`s, in order: the staging select reads each
/// one's base type in an extra column after the table's ([`variant_type_expr`]).
pub fn variant_columns(table: &rowtrail_sql::Table) -> Vec<usize> {
    table
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| MssqlType::parse(&c.sql_type).is_ok_and(|t| t.base == "sql_variant"))
        .map(|(i, _)| i)
        .collect()
}

/// The expression that reads the base type of `sql_variant` staging column `c`, server-side:
/// `base|precision|scale|max length|collation` (`money|19|4|8|`), NULL for a NULL value.
pub fn variant_type_expr(c: &Column) -> String {
    let name = c.name.mssql();
    let prop = |p: &str, ty: &str| format!("CONVERT({ty}, SQL_VARIANT_PROPERTY({name}, '{p}'))");
    format!(
        "CASE WHEN {name} IS NULL THEN NULL ELSE CONCAT({}, N'|', {}, N'|', {}, N'|', {}, N'|', {}) END",
        prop("BaseType", "sysname"),
        prop("Precision", "int"),
        prop("Scale", "int"),
        prop("MaxLength", "int"),
        prop("Collation", "sysname"),
    )
}

/// A `sql_variant` cell with the base type [`variant_type_expr`] read for it: the value as a
/// [`Value::Variant`]; NULL stays NULL.
pub fn with_base_type(value: Value, base_type: Value) -> Result<Value, String> {
    let Value::Text(t) = base_type else {
        return match (value, base_type) {
            (Value::Null, _) => Ok(Value::Null),
            (_, Value::Null) => Err("a sql_variant value came without its base type".into()),
            _ => Err("a sql_variant's base type is not text".into()),
        };
    };
    if value == Value::Null {
        return Ok(Value::Null);
    }
    let text = String::from_utf8_lossy(&t);
    let parts: Vec<&str> = text.split('|').collect();
    let bad = || format!("a sql_variant's base type {text:?} cannot be read");
    let [base, precision, scale, max_length, collation] = parts[..] else {
        return Err(bad());
    };
    let v = rowtrail_sql::value::Variant {
        base_type: base.to_ascii_lowercase(),
        precision: precision.parse().map_err(|_| bad())?,
        scale: scale.parse().map_err(|_| bad())?,
        max_length: max_length.parse().map_err(|_| bad())?,
        collation: Some(collation.to_string()).filter(|c| !c.is_empty()),
        value,
    };
    v.check().map_err(|why| format!("{}: {why}", bad()))?;
    Ok(Value::Variant(Box::new(v)))
}

/// The Unicode type that holds every value of the character type `ty` (`char(n)`/`varchar(n)`)
/// without loss: `nvarchar(n)` (a value of `n` bytes has at most `n` characters), or
/// `nvarchar(max)` past SQL Server's 4,000.
fn unicode_of(ty: &str) -> String {
    match MssqlType::parse(ty)
        .ok()
        .and_then(|t| t.args.first().cloned())
    {
        Some(n) if n.parse::<u32>().is_ok_and(|n| n <= 4000) => format!("nvarchar({n})"),
        // `char`/`varchar` declared without a length hold one character.
        None => "nvarchar(1)".into(),
        Some(_) => "nvarchar(max)".into(),
    }
}

/// The expression that reads staging column `c` (staged as `staging_type`) with every text as
/// its UTF-16 bytes, so that a value the driver cannot decode (an `nvarchar` holding an unpaired
/// surrogate) reaches the reader anyway; [`text_from_utf16`] turns the bytes back into text.
/// Other columns read as [`select_expr`] reads them.
pub fn raw_select_expr(c: &Column, staging_type: &str) -> String {
    let name = c.name.mssql();
    match text_kind(staging_type) {
        Some(TextKind::Narrow) => format!(
            "CONVERT(varbinary(max), CONVERT({}, {name})) AS {name}",
            unicode_of(staging_type)
        ),
        Some(TextKind::Wide) => format!("CONVERT(varbinary(max), {name}) AS {name}"),
        None => select_expr(c, staging_type),
    }
}

/// Whether a staged type is character data, and of which width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// `char`, `varchar`: read through the server's conversion to Unicode.
    Narrow,
    /// `nchar`, `nvarchar`, `sysname`: UTF-16 already.
    Wide,
}

/// The [`TextKind`] of a staged type, `None` for anything that is not character data.
pub fn text_kind(staging_type: &str) -> Option<TextKind> {
    let base = MssqlType::parse(staging_type).ok()?.base;
    match base.as_str() {
        "char" | "varchar" => Some(TextKind::Narrow),
        "nchar" | "nvarchar" | "sysname" => Some(TextKind::Wide),
        _ => None,
    }
}

/// A cell read by [`raw_select_expr`]: UTF-16LE bytes become text; bytes that are not valid
/// UTF-16 stay a blob of exactly those bytes (written back into the column, they convert to the
/// same code units), and the second value says so.
pub fn text_from_utf16(v: Value) -> (Value, bool) {
    match v {
        Value::Blob(b) if b.len() % 2 == 0 => {
            let units = b.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
            match char::decode_utf16(units).collect::<Result<String, _>>() {
                Ok(s) => (Value::Text(s.into_bytes()), false),
                Err(_) => (Value::Blob(b), true),
            }
        }
        Value::Blob(b) => (Value::Blob(b), true),
        other => (other, false),
    }
}

/// The archive value of one cell, or why it has none.
pub fn value_of(data: ColumnData<'_>) -> Result<Value, String> {
    Ok(match data {
        ColumnData::U8(v) => v.map_or(Value::Null, |v| Value::Integer(v.into())),
        ColumnData::I16(v) => v.map_or(Value::Null, |v| Value::Integer(v.into())),
        ColumnData::I32(v) => v.map_or(Value::Null, |v| Value::Integer(v.into())),
        ColumnData::I64(v) => v.map_or(Value::Null, Value::Integer),
        ColumnData::Bit(v) => v.map_or(Value::Null, |v| Value::Integer(v.into())),
        ColumnData::F32(v) => v.map_or(Value::Null, |v| Value::Real(v.into())),
        ColumnData::F64(v) => v.map_or(Value::Null, Value::Real),
        ColumnData::String(v) => {
            v.map_or(Value::Null, |s| Value::Text(s.into_owned().into_bytes()))
        }
        ColumnData::Xml(v) => v.map_or(Value::Null, |x| {
            Value::Text(x.into_owned().into_string().into_bytes())
        }),
        ColumnData::Binary(v) => v.map_or(Value::Null, |b| Value::Blob(b.into_owned())),
        ColumnData::Guid(v) => v.map_or(Value::Null, |g| Value::Uuid(g.into_bytes())),
        ColumnData::Numeric(v) => v.map_or(Value::Null, |n| {
            Value::Decimal(decimal_text(n.value(), n.scale()))
        }),
        ColumnData::DateTime(v) => {
            v.map_or(Ok(Value::Null), |d| datetime(d).map(Value::DateTime))?
        }
        ColumnData::SmallDateTime(v) => {
            v.map_or(Ok(Value::Null), |d| smalldatetime(d).map(Value::DateTime))?
        }
        ColumnData::Time(v) => v.map_or(Ok(Value::Null), |t| time(t).map(Value::DateTime))?,
        ColumnData::Date(v) => v.map_or(Value::Null, |d| Value::DateTime(date(d))),
        ColumnData::DateTime2(v) => {
            v.map_or(Ok(Value::Null), |d| datetime2(d).map(Value::DateTime))?
        }
        ColumnData::DateTimeOffset(v) => {
            v.map_or(Ok(Value::Null), |d| datetimeoffset(d).map(Value::DateTime))?
        }
    })
}

/// `value / 10^scale` as exact text: `-12.3400`, `0.05`, `7`.
pub fn decimal_text(value: i128, scale: u8) -> String {
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let mut out = String::with_capacity(digits.len() + scale + 3);
    if value < 0 {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat(scale - digits.len()));
        out.push_str(&digits);
    }
    out
}

/// The civil date `days` after 1970-01-01 (Howard Hinnant's algorithm, exact for all dates).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days from 0001-01-01 (the epoch of `date`/`datetime2`) to 1970-01-01.
const DAYS_0001_TO_1970: i64 = 719_162;
/// Days from 1900-01-01 (the epoch of `datetime`/`smalldatetime`) to 1970-01-01.
const DAYS_1900_TO_1970: i64 = 25_567;

fn ymd(days_since_1970: i64) -> String {
    let (y, m, d) = civil(days_since_1970);
    format!("{y:04}-{m:02}-{d:02}")
}

fn date(d: Date) -> String {
    ymd(i64::from(d.days()) - DAYS_0001_TO_1970)
}

/// `hh:mm:ss[.fff…]` for `increments` of 10^-scale seconds since midnight.
fn clock(increments: u64, scale: u8) -> Result<String, String> {
    if scale > 7 {
        return Err(format!("a time scale of {scale} is beyond SQL Server's 7"));
    }
    let unit = 10u64.pow(u32::from(scale));
    let secs = increments / unit;
    if secs >= 86_400 {
        return Err(format!(
            "{increments} increments at scale {scale} exceed a day"
        ));
    }
    let frac = increments % unit;
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if scale > 0 {
        s.push_str(&format!(".{frac:0width$}", width = usize::from(scale)));
    }
    Ok(s)
}

fn time(t: Time) -> Result<String, String> {
    clock(t.increments(), t.scale())
}

fn datetime2(d: DateTime2) -> Result<String, String> {
    Ok(format!("{}T{}", date(d.date()), time(d.time())?))
}

fn datetimeoffset(d: DateTimeOffset) -> Result<String, String> {
    let dt = d.datetime2();
    let scale = dt.time().scale();
    let unit = i128::from(10u64.pow(u32::from(scale.min(7))));
    let offset = i128::from(d.offset());
    if offset.abs() > 14 * 60 {
        return Err(format!("an offset of {offset} minutes is beyond ±14:00"));
    }
    // The wire holds UTC; the value as SQL Server shows it is local time with the offset.
    let day = 86_400 * unit;
    let local = i128::from(dt.date().days()) * day
        + i128::from(dt.time().increments())
        + offset * 60 * unit;
    let days = local.div_euclid(day);
    let inc = local.rem_euclid(day);
    let sign = if offset < 0 { '-' } else { '+' };
    Ok(format!(
        "{}T{}{sign}{:02}:{:02}",
        ymd(days as i64 - DAYS_0001_TO_1970),
        clock(inc as u64, scale)?,
        offset.abs() / 60,
        offset.abs() % 60
    ))
}

fn datetime(d: DateTime) -> Result<String, String> {
    let frags = u64::from(d.seconds_fragments());
    if frags >= 300 * 86_400 {
        return Err(format!("{frags} ticks exceed a day"));
    }
    // 1/300 s ticks to milliseconds, rounded as SQL Server shows them (.000, .003, .007).
    let ms = (frags * 10 + 1) / 3;
    Ok(format!(
        "{}T{}.{:03}",
        ymd(i64::from(d.days()) - DAYS_1900_TO_1970),
        clock(ms / 1000, 0)?,
        ms % 1000
    ))
}

fn smalldatetime(d: SmallDateTime) -> Result<String, String> {
    let minutes = u64::from(d.seconds_fragments());
    Ok(format!(
        "{}T{}",
        ymd(i64::from(d.days()) - DAYS_1900_TO_1970),
        clock(minutes * 60, 0)?
    ))
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
