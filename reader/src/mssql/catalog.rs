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

use super::queries;
pub use super::queries::shared;

fn text(row: &Row, i: usize) -> Option<String> {
    row.try_get::<&str, _>(i).ok().flatten().map(str::to_string)
}

/// Whether rowtrail capture is installed (its registry exists).
pub fn installed(c: &mut MssqlClient) -> Result<bool, ReaderError> {
    let rows = c.query(
        "cannot read the catalog",
        queries::TABLE_EXISTS,
        &[&shared(objects::REGISTRY)],
    )?;
    Ok(rows.first().and_then(|r| r.get::<i32, _>(0)) == Some(1))
}

/// The installation's incarnation, or `None` when capture is not installed.
pub fn incarnation(c: &mut MssqlClient) -> Result<Option<String>, ReaderError> {
    let sql = queries::incarnation();
    let rows = c.query(
        "cannot read the incarnation",
        &sql,
        &[&shared(objects::META)],
    )?;
    Ok(rows.first().and_then(|r| {
        effective_incarnation(
            text(r, 0)?.as_str(),
            text(r, 1).as_deref(),
            text(r, 2).as_deref(),
        )
    }))
}

/// The incarnation archive keys use: the installation's own (lowercase) while the database is
/// on the recovery fork recorded at install, and a new one derived from both when it is not —
/// a restore from a backup or a database snapshot starts a new fork, and the sequence goes
/// back with the data, so the seqs staged from then on must not meet the ones archived before.
/// Without a recorded or a visible fork (installed by an older rowtrail, or the view hidden
/// from the login), the installation's own.
pub fn effective_incarnation(
    incarnation: &str,
    recorded_fork: Option<&str>,
    current_fork: Option<&str>,
) -> Option<String> {
    let inc = incarnation.trim().to_lowercase();
    if inc.is_empty() {
        return None;
    }
    match (recorded_fork.map(str::trim), current_fork.map(str::trim)) {
        (Some(r), Some(c)) if !r.is_empty() && !c.is_empty() && !r.eq_ignore_ascii_case(c) => {
            Some(format!("{inc}/fork-{}", c.to_lowercase()))
        }
        _ => Some(inc),
    }
}

/// The captured tables, as the registry records them.
pub fn registry(c: &mut MssqlClient) -> Result<Vec<CapturedTable>, ReaderError> {
    let sql = queries::registry();
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

/// Every definition each captured table had, with the first seq staged under it.
pub fn versions(c: &mut MssqlClient) -> Result<Vec<super::versions::RecordedVersion>, ReaderError> {
    let rows = c.query("cannot read the table versions", &queries::versions(), &[])?;
    rows.iter()
        .map(|r| {
            Ok(super::versions::RecordedVersion {
                schema: text(r, 0).unwrap_or_default(),
                name: text(r, 1).unwrap_or_default(),
                first_seq: r.get::<i64, _>(2).unwrap_or_default(),
                table: Table::from_json(&text(r, 3).unwrap_or_default())?,
            })
        })
        .collect()
}

/// The catalog rows of the columns of the table `quoted` (`[schema].[name]`).
pub fn columns(c: &mut MssqlClient, quoted: &str) -> Result<Vec<CatalogColumn>, ReaderError> {
    let rows = c.query(
        "cannot read the columns of a table",
        queries::COLUMNS,
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
        generated_always_type: r.get::<u8, _>(17).unwrap_or_default(),
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
        .query(
            "cannot read a primary key",
            queries::PRIMARY_KEY,
            &[&quoted],
        )?
        .iter()
        .filter_map(|r| r.get::<i32, _>(0))
        .collect();
    Ok(Some(table_from_catalog(schema, name, &cols, &pk)?))
}

/// The user tables of the database, as `(schema, name)`, rowtrail's own left out.
pub fn user_tables(c: &mut MssqlClient) -> Result<Vec<(String, String)>, ReaderError> {
    let rows = c.query("cannot list tables", queries::USER_TABLES, &[&SCHEMA])?;
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

/// Whether the server's `nested triggers` option is off (`None` when it cannot be read).
pub fn nested_triggers_off(c: &mut MssqlClient) -> Option<bool> {
    let rows = c
        .query(
            "cannot read the server configuration",
            queries::NESTED_TRIGGERS,
            &[],
        )
        .ok()?;
    rows.first()
        .and_then(|r| r.get::<i32, _>(0))
        .map(|v| v == 0)
}

/// The INSTEAD OF triggers on the table `quoted` (`[schema].[name]`).
pub fn instead_of_triggers(c: &mut MssqlClient, quoted: &str) -> Result<Vec<String>, ReaderError> {
    let rows = c.query(
        "cannot read a table's triggers",
        queries::INSTEAD_OF_TRIGGERS,
        &[&quoted],
    )?;
    Ok(rows.iter().filter_map(|r| text(r, 0)).collect())
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
        queries::TRIGGER,
        &[&trigger, &table],
    )?;
    Ok(rows.first().map(|r| TriggerState {
        disabled: r.get::<bool, _>(0).unwrap_or(false),
        definition: text(r, 1),
        parent_matches: r.get::<i32, _>(2) == Some(1),
    }))
}
