//! A table as rowtrail captures it on SQL Server: checked, with its staging column types.

use super::script::check_name;
use super::types::{MssqlType, TypeClass};
use crate::staging::derived_name;
use crate::{Column, Ident, SqlError, Table};

/// Columns a staging table adds to the source table's (the metadata columns).
const METADATA_WIDTH: usize = crate::staging::METADATA_COLUMNS.len();

/// SQL Server's column limit for a table without a column set.
const MAX_COLUMNS: usize = 1024;

/// SQL Server's largest row (fixed-length data, null bitmap and header; variable-length data
/// may move off the row).
const MAX_ROW_BYTES: usize = 8_060;

/// The fixed-length metadata a staging row adds: seq, op, image, transaction and statement ids,
/// time (`bigint`, `char(1)`, `char(1)`, `bigint`, `bigint`, `datetime2(7)`).
const METADATA_FIXED_BYTES: usize = 8 + 1 + 1 + 8 + 8 + 8;

/// The bytes of one value of a fixed-length staging type, `None` for variable-length types
/// (and `bit`, counted apart: eight share a byte).
fn fixed_bytes(ty: &MssqlType) -> Option<usize> {
    let n = |default: usize| {
        ty.args
            .first()
            .and_then(|a| a.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let by_scale = |short: usize, mid: usize, long: usize| match n(7) {
        0..=2 => short,
        3..=4 => mid,
        _ => long,
    };
    Some(match ty.base.as_str() {
        "tinyint" => 1,
        "smallint" => 2,
        "int" | "smallmoney" | "real" | "smalldatetime" => 4,
        "bigint" | "money" | "datetime" => 8,
        "decimal" | "numeric" => match n(18) {
            0..=9 => 5,
            10..=19 => 9,
            20..=28 => 13,
            _ => 17,
        },
        "float" => {
            if n(53) <= 24 {
                4
            } else {
                8
            }
        }
        "date" => 3,
        "time" => by_scale(3, 4, 5),
        "datetime2" => by_scale(6, 7, 8),
        "datetimeoffset" => by_scale(8, 9, 10),
        "char" | "binary" => n(1),
        "nchar" => 2 * n(1),
        "uniqueidentifier" => 16,
        _ => return None,
    })
}

/// The least a staging row of `t` takes in the row itself: header, fixed-length columns and
/// metadata, bits, null bitmap (sparse and variable-length columns counted as empty, so a
/// table is refused only when its staging table certainly cannot be created).
fn fixed_row_bytes(t: &Table, staging_types: &[String]) -> usize {
    let mut fixed = METADATA_FIXED_BYTES;
    let mut bits = 0usize;
    let mut columns = METADATA_WIDTH;
    for (c, ty) in t.columns.iter().zip(staging_types) {
        if c.sparse {
            continue;
        }
        columns += 1;
        match MssqlType::parse(ty) {
            Ok(ty) if ty.base == "bit" => bits += 1,
            Ok(ty) => fixed += fixed_bytes(&ty).unwrap_or(0),
            Err(_) => {}
        }
    }
    4 + fixed + bits.div_ceil(8) + 2 + columns.div_ceil(8)
}

/// A table ready to be captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The definition as captured and recorded in the registry: schema defaulted to `dbo`,
    /// columns rowtrail cannot stage (computed columns not persisted or of unknown type) left out.
    pub table: Table,
    /// The staging type of each column of `table`, in order (e.g. `binary(8)` for rowversion).
    pub staging_types: Vec<String>,
    /// The staging table's name (in schema `rowtrail`).
    pub staging: Ident,
    /// The trigger's name (in the table's schema).
    pub trigger: Ident,
    /// What the DBA should know (columns left out), shown in script headers.
    pub notes: Vec<String>,
}

impl Captured {
    /// Checks `table` for SQL Server capture.
    pub fn new(table: &Table) -> Result<Self, SqlError> {
        table.validate()?;
        let mut t = table.clone();
        if t.name.schema.is_none() {
            t.name.schema = Some(super::ident("dbo"));
        }
        let refuse = |reason: String| SqlError::Uncapturable {
            table: t.name.to_string(),
            reason,
        };
        for part in [t.name.schema.as_ref().expect("set above"), &t.name.name] {
            check_name(part.as_str())
                .map_err(|why| refuse(format!("its name {:?} is refused: {why}", part.as_str())))?;
        }
        if t.name.name.as_str().starts_with('#') {
            return Err(refuse(
                "it is a temporary table (its name starts with #)".into(),
            ));
        }
        if t.name
            .schema
            .as_ref()
            .is_some_and(|s| s.as_str().eq_ignore_ascii_case(super::SCHEMA))
        {
            return Err(refuse("it is in rowtrail's own schema".into()));
        }
        let mut notes = Vec::new();
        let mut keep = Vec::new();
        let mut staging_types = Vec::new();
        for (i, c) in t.columns.iter().enumerate() {
            let col_refuse = |why: String| refuse(format!("column {:?}: {why}", c.name.as_str()));
            check_name(c.name.as_str()).map_err(|why| col_refuse(why.into()))?;
            if c.computed && c.sql_type.trim().is_empty() {
                if t.primary_key.contains(&i) {
                    return Err(col_refuse(
                        "it is a computed key column that is not PERSISTED or whose type the DDL \
                         does not state; persist it, or generate from the live catalog"
                            .into(),
                    ));
                }
                notes.push(format!(
                    "computed column {} is not captured: rowtrail captures computed columns \
                     that are PERSISTED and whose type is known (reading others in the trigger \
                     could fail the user's statement)",
                    c.name
                ));
                continue;
            }
            let ty = MssqlType::parse(&c.sql_type).map_err(col_refuse)?;
            let staged = match ty.classify() {
                TypeClass::Exact(s) => s,
                TypeClass::Refused(why) => return Err(col_refuse(why)),
            };
            if let Some(coll) = &c.collation {
                if coll.is_empty()
                    || !coll
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                {
                    return Err(col_refuse(format!(
                        "its collation {coll:?} is not a collation name"
                    )));
                }
            }
            keep.push(i);
            staging_types.push(staged);
        }
        let remap = |k: &usize| keep.iter().position(|j| j == k);
        let columns: Vec<Column> = keep.iter().map(|&i| t.columns[i].clone()).collect();
        let primary_key = t.primary_key.iter().filter_map(remap).collect();
        let unique_keys = t
            .unique_keys
            .iter()
            .filter(|k| k.iter().all(|c| keep.contains(c)))
            .map(|k| k.iter().filter_map(remap).collect())
            .collect();
        let table = Table {
            name: t.name.clone(),
            columns,
            primary_key,
            unique_keys,
            rowid: false,
        };
        let fixed = fixed_row_bytes(&table, &staging_types);
        if fixed > MAX_ROW_BYTES {
            return Err(SqlError::Uncapturable {
                table: table.name.to_string(),
                reason: format!(
                    "its staging rows would need at least {fixed} bytes each (its fixed-length \
                     columns plus {METADATA_FIXED_BYTES} bytes of metadata and the row's own \
                     overhead), more than SQL Server's {MAX_ROW_BYTES}-byte row; make a \
                     fixed-length column variable (char(n) → varchar(n), binary(n) → \
                     varbinary(n)) or leave the table out with --tables"
                ),
            });
        }
        let dense = table.columns.iter().filter(|c| !c.sparse).count();
        if dense + METADATA_WIDTH > MAX_COLUMNS || table.columns.len() + METADATA_WIDTH > 30_000 {
            return Err(SqlError::Uncapturable {
                table: table.name.to_string(),
                reason: format!(
                    "its staging table would need {} columns ({} of its own plus {METADATA_WIDTH} \
                     metadata), more than SQL Server allows; leave the table out with --tables",
                    dense + METADATA_WIDTH,
                    dense
                ),
            });
        }
        Ok(Self {
            staging: derived_name(&table.name, "s"),
            trigger: derived_name(&table.name, "t"),
            staging_types,
            notes,
            table,
        })
    }

    /// The source table's quoted, schema-qualified name.
    pub fn source(&self) -> String {
        self.table.name.quoted(crate::Dialect::Mssql)
    }

    /// The schema of the source table (always set).
    pub fn schema(&self) -> &Ident {
        self.table
            .name
            .schema
            .as_ref()
            .expect("Captured always has a schema")
    }

    /// `[schema].[trigger]`.
    pub fn trigger_name(&self) -> String {
        format!("{}.{}", self.schema().mssql(), self.trigger.mssql())
    }

    /// `[rowtrail].[staging]`.
    pub fn staging_name(&self) -> String {
        super::in_schema(&self.staging)
    }

    /// The staging definition of column `i`: `[name] type [COLLATE x] [SPARSE] NULL`.
    pub fn staging_column(&self, i: usize) -> String {
        let c = &self.table.columns[i];
        let mut s = format!("{} {}", c.name.mssql(), self.staging_types[i]);
        if let Some(coll) = &c.collation {
            s.push_str(" COLLATE ");
            s.push_str(coll);
        }
        if c.sparse {
            s.push_str(" SPARSE");
        }
        s.push_str(" NULL");
        s
    }
}
