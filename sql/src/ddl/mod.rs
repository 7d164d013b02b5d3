//! Reading DBAs' DDL scripts into the model.
//!
//! [`parse_mssql`] reads a SQL Server `CREATE TABLE` script (sqlcmd `GO` batches, bracketed and
//! schema-qualified names, constraints, defaults, computed columns, IDENTITY, rowversion,
//! collations, SPARSE) into [`Table`]s. It uses sqlparser's `MsSqlDialect` tokenizer, which
//! understands T-SQL's quoting and comments; sqlparser's statement parser rejects computed
//! columns, `SPARSE` and `ON [PRIMARY]`, which every SSMS-scripted table has, so the statement
//! structure is read here. Other statements (`SET`, `GO`, `ALTER TABLE … ADD CONSTRAINT` other
//! than primary and unique keys, indexes, procedures) are skipped.

mod column;
mod cursor;
mod mssql;

use crate::{SqlError, Table, TableName};

/// Reads every `CREATE TABLE` of a SQL Server script.
///
/// Primary keys come from column or table constraints, or from `ALTER TABLE … ADD [CONSTRAINT n]
/// PRIMARY KEY (…)`. A table without one is allowed (its model records none). Fails with the
/// line and what is wrong for malformed DDL and for columns rowtrail cannot capture (naming the
/// table, the column and what to do).
pub fn parse_mssql(text: &str) -> Result<Vec<Table>, SqlError> {
    mssql::parse(text)?.into_iter().map(|(_, t)| t).collect()
}

/// One table of a DDL script: its name, and its model or why rowtrail cannot capture it.
pub type ParsedTable = (TableName, Result<Table, SqlError>);

/// Reads every `CREATE TABLE` of a SQL Server script, keeping going past tables rowtrail cannot
/// capture: each table's name with its model, or with why it is refused (naming the column and
/// what to do). Malformed DDL still fails the whole script. Use it to capture the other tables
/// of a script that also defines, say, a table with an `ntext` column.
pub fn parse_mssql_each(text: &str) -> Result<Vec<ParsedTable>, SqlError> {
    mssql::parse(text)
}
