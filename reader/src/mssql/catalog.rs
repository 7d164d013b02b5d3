//! What the reader reads from a SQL Server database's catalog: the incarnation, the registry of
//! captured tables, the live definition of a table (`sys.columns ⨝ sys.types`), and the state of
//! rowtrail's triggers and staging tables (for `rowtrail sql check`).

use rowtrail_sql::mssql::catalog::{table_from_catalog, CatalogColumn};
use rowtrail_sql::mssql::{objects, SCHEMA};
use rowtrail_sql::{Ident, Table};
use tiberius::Row;

use super::client::MssqlClient;
use crate::source::CapturedTable;
use crate::ReaderError;

/// `[rowtrail].[name]`.
pub fn shared(name: &str) -> String {
    format!(
        "{}.{}",
        Ident::new(SCHEMA).expect("valid").mssql(),
        Ident::new(name).expect("valid").mssql()
    )
}

fn text(row: &Row, i: usize) -> Option<String> {
    row.try_get::<&str, _>(i).ok().flatten().map(str::to_string)
}

/// Whether rowtrail capture is installed (its registry exists).
pub fn installed(c: &mut MssqlClient) -> Result<bool, ReaderError> {
    let rows = c.query(
        "cannot read the catalog",
        "SELECT CASE WHEN OBJECT_ID(@P1, N'U') IS NULL THEN 0 ELSE 1 END",
        &[&shared(objects::REGISTRY)],
    )?;
    Ok(rows.first().and_then(|r| r.get::<i32, _>(0)) == Some(1))
}

/// The installation's incarnation, or `None` when capture is not installed.
pub fn incarnation(c: &mut MssqlClient) -> Result<Option<String>, ReaderError> {
    let sql = format!(
        "IF OBJECT_ID(@P1, N'U') IS NOT NULL SELECT [value] FROM {} WHERE [key] = N'incarnation'",
        shared(objects::META)
    );
    let rows = c.query(
        "cannot read the incarnation",
        &sql,
        &[&shared(objects::META)],
    )?;
    Ok(rows
        .first()
        .and_then(|r| text(r, 0))
        .map(|s| s.to_lowercase()))
}

/// The captured tables, as the registry records them.
pub fn registry(c: &mut MssqlClient) -> Result<Vec<CapturedTable>, ReaderError> {
    let sql = format!(
        "SELECT [staging_name], [definition] FROM {} ORDER BY [table_schema], [table_name]",
        shared(objects::REGISTRY)
    );
    let rows = c.query("cannot read the registry", &sql, &[])?;
    rows.iter()
        .map(|r| {
            let staging = text(r, 0).unwrap_or_default();
            let def = text(r, 1).unwrap_or_default();
            Ok(CapturedTable {
                table: Table::from_json(&def)?,
                staging: Ident::new(staging)?,
            })
        })
        .collect()
}

/// The query behind [`live_table`]: one row per column of `OBJECT_ID(@P1)`.
pub const COLUMNS_SQL: &str = "SELECT c.column_id, c.name, t.name, TYPE_NAME(c.system_type_id), \
     t.is_user_defined, t.is_assembly_type, c.max_length, c.precision, c.scale, c.is_nullable, \
     c.is_identity, c.is_computed, CONVERT(bit, ISNULL(cc.is_persisted, 0)), c.is_sparse, \
     c.is_column_set, c.is_filestream, c.collation_name \
     FROM sys.columns AS c \
     JOIN sys.types AS t ON t.user_type_id = c.user_type_id \
     LEFT JOIN sys.computed_columns AS cc ON cc.object_id = c.object_id AND cc.column_id = c.column_id \
     WHERE c.object_id = OBJECT_ID(@P1) ORDER BY c.column_id";

/// The primary key's column ids of `OBJECT_ID(@P1)`, in key order.
pub const PRIMARY_KEY_SQL: &str = "SELECT ic.column_id FROM sys.indexes AS i \
     JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
     WHERE i.object_id = OBJECT_ID(@P1) AND i.is_primary_key = 1 AND ic.key_ordinal > 0 \
     ORDER BY ic.key_ordinal";

/// The catalog rows of the columns of the table `quoted` (`[schema].[name]`).
pub fn columns(c: &mut MssqlClient, quoted: &str) -> Result<Vec<CatalogColumn>, ReaderError> {
    let rows = c.query(
        "cannot read the columns of a table",
        COLUMNS_SQL,
        &[&quoted],
    )?;
    Ok(rows.iter().map(catalog_column).collect())
}

fn catalog_column(r: &Row) -> CatalogColumn {
    let b = |i: usize| r.get::<bool, _>(i).unwrap_or(false);
    CatalogColumn {
        column_id: r.get::<i32, _>(0).unwrap_or_default(),
        name: text(r, 1).unwrap_or_default(),
        type_name: text(r, 2).unwrap_or_default(),
        system_type_name: text(r, 3).unwrap_or_default(),
        is_user_defined: b(4),
        is_assembly_type: b(5),
        max_length: r.get::<i16, _>(6).unwrap_or_default(),
        precision: r.get::<u8, _>(7).unwrap_or_default(),
        scale: r.get::<u8, _>(8).unwrap_or_default(),
        is_nullable: b(9),
        is_identity: b(10),
        is_computed: b(11),
        is_persisted: b(12),
        is_sparse: b(13),
        is_column_set: b(14),
        is_filestream: b(15),
        collation_name: text(r, 16),
    }
}

/// The live definition of `schema.name`, or `None` when no such table exists.
pub fn live_table(
    c: &mut MssqlClient,
    schema: &str,
    name: &str,
) -> Result<Option<Table>, ReaderError> {
    let quoted = format!(
        "{}.{}",
        Ident::new(schema)?.mssql(),
        Ident::new(name)?.mssql()
    );
    let cols = columns(c, &quoted)?;
    if cols.is_empty() {
        return Ok(None);
    }
    let pk: Vec<i32> = c
        .query("cannot read a primary key", PRIMARY_KEY_SQL, &[&quoted])?
        .iter()
        .filter_map(|r| r.get::<i32, _>(0))
        .collect();
    Ok(Some(table_from_catalog(schema, name, &cols, &pk)?))
}

/// The user tables of the database, as `(schema, name)`, rowtrail's own left out.
pub fn user_tables(c: &mut MssqlClient) -> Result<Vec<(String, String)>, ReaderError> {
    let rows = c.query(
        "cannot list tables",
        "SELECT s.name, t.name FROM sys.tables AS t JOIN sys.schemas AS s ON s.schema_id = t.schema_id \
         WHERE t.is_ms_shipped = 0 AND s.name <> @P1 ORDER BY s.name, t.name",
        &[&SCHEMA],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                text(r, 0).unwrap_or_default(),
                text(r, 1).unwrap_or_default(),
            )
        })
        .collect())
}

/// A trigger as the catalog sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerState {
    /// `sys.triggers.is_disabled`.
    pub disabled: bool,
    /// Its text (`OBJECT_DEFINITION`), `None` when it cannot be read (encrypted, or no
    /// VIEW DEFINITION permission).
    pub definition: Option<String>,
    /// The id of the table it is on.
    pub parent_matches: bool,
}

/// The trigger `[schema].[trigger]` on `[schema].[table]`, or `None` when it does not exist.
pub fn trigger_state(
    c: &mut MssqlClient,
    trigger: &str,
    table: &str,
) -> Result<Option<TriggerState>, ReaderError> {
    let rows = c.query(
        "cannot read a trigger",
        "SELECT tr.is_disabled, OBJECT_DEFINITION(tr.object_id), \
         CASE WHEN tr.parent_id = OBJECT_ID(@P2) THEN 1 ELSE 0 END \
         FROM sys.triggers AS tr WHERE tr.object_id = OBJECT_ID(@P1, N'TR')",
        &[&trigger, &table],
    )?;
    Ok(rows.first().map(|r| TriggerState {
        disabled: r.get::<bool, _>(0).unwrap_or(false),
        definition: text(r, 1),
        parent_matches: r.get::<i32, _>(2) == Some(1),
    }))
}
