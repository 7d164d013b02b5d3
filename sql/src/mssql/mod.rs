//! Capture scripts for SQL Server sources (T-SQL, run with `sqlcmd`).
//!
//! What a deployment installs, all in the schema `[rowtrail]` (owned by `dbo`) unless noted:
//!
//! * `rowtrail_meta`: the incarnation (a GUID made by the script on first install) and format.
//! * `rowtrail_seq`: the one SEQUENCE that orders every image of the database. It counts in
//!   steps of 2: a paired UPDATE takes one value `s` for its before-image and uses `s+1` for its
//!   after-image, so no range has to be reserved (`sp_sequence_get_range` would need UPDATE
//!   permission on the sequence for every application user). Staging never uses IDENTITY: it
//!   would overwrite the caller's `@@IDENTITY`.
//! * `rowtrail_registry`: one row per captured table (schema, name, staging and trigger names,
//!   the model's JSON definition); `rowtrail_versions`: every definition a table had, with the
//!   first sequence value written under it (see [`upgrade`]).
//! * per table: a staging table `rowtrail_s_…` and, in the table's own schema, one
//!   `AFTER INSERT, UPDATE, DELETE` trigger `rowtrail_t_…`, set to fire first (see [`trigger`]).
//! * `rowtrail_columns` and the database trigger `rowtrail_ddl_guard`, which rolls back DDL that
//!   would break capture of a table (see [`ddl_guard`]).
//!
//! Every script is idempotent, runs under `sqlcmd -b` as one transaction, and starts with a
//! header saying what it does, for which tables, made by which rowtrail version. Names reach the
//! text only through [`Ident::mssql`](crate::Ident::mssql) and literals only through
//! [`Literal::mssql`](crate::literal::Literal::mssql).

pub mod catalog;
pub mod ddl_guard;
mod install;
mod lifecycle;
pub mod script;
mod tables;
pub mod trigger;
pub mod types;
pub mod undo;
pub mod upgrade;

pub use script::{Batch, Script};
pub use tables::Captured;

use crate::literal::Literal;
use crate::{Ident, SqlError, Table};

/// The staging-contract format these scripts write.
pub const FORMAT: &str = "1";

/// The schema every shared rowtrail object lives in.
pub const SCHEMA: &str = "rowtrail";

/// Shared objects every install creates in [`SCHEMA`].
pub mod objects {
    /// The global sequence.
    pub const SEQUENCE: &str = "rowtrail_seq";
    /// Key/value facts: incarnation, format.
    pub const META: &str = "rowtrail_meta";
    /// One row per captured table.
    pub const REGISTRY: &str = "rowtrail_registry";
    /// Every definition of every captured table, with its first sequence value.
    pub const VERSIONS: &str = "rowtrail_versions";
    /// The columns of each captured table as capture was installed or upgraded for them, which
    /// the DDL guard compares with the live ones (see [`super::ddl_guard`]).
    pub const COLUMNS: &str = "rowtrail_columns";
}

/// The SQL Server versions whose features the trigger may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// SQL Server 2016 and later: the transaction id is `CURRENT_TRANSACTION_ID()`.
    #[default]
    Sql2016,
    /// SQL Server 2012 and 2014: the transaction id is read from
    /// `sys.dm_tran_current_transaction` when the session holds `VIEW SERVER STATE`, and is NULL
    /// otherwise (application users need nothing new, so they usually get NULL; images are still
    /// grouped by statement id).
    Sql2012,
}

/// How scripts are generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The rowtrail version named in every header.
    pub version: String,
    /// The oldest SQL Server version the scripts must run on.
    pub target: Target,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            target: Target::default(),
        }
    }
}

/// A complete deployment for a set of tables: install and uninstall scripts.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The tables as captured (columns rowtrail cannot stage left out, see [`Captured`]).
    pub tables: Vec<Captured>,
    /// Creates (or refreshes) everything; idempotent.
    pub install: Script,
    /// Removes what `install` created, mirroring it; idempotent.
    pub uninstall: Script,
    options: Options,
}

impl Deployment {
    /// Checks every table and generates the install and uninstall scripts.
    ///
    /// Fails, naming the table and column, for anything rowtrail cannot capture exactly.
    pub fn generate(tables: &[Table], options: &Options) -> Result<Self, SqlError> {
        let captured = tables
            .iter()
            .map(Captured::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        for c in &captured {
            if !seen.insert(c.staging.clone()) {
                return Err(SqlError::Uncapturable {
                    table: c.table.name.to_string(),
                    reason: "it is listed twice".into(),
                });
            }
        }
        Ok(Self {
            install: install::script(&captured, options),
            uninstall: lifecycle::uninstall(&captured, options),
            tables: captured,
            options: options.clone(),
        })
    }

    /// The upgrade script for one captured table whose definition changed from `old` to `new`.
    pub fn upgrade(old: &Table, new: &Table, options: &Options) -> Result<Script, SqlError> {
        upgrade::script(old, new, options)
    }

    /// The grants the reader's login needs, and nothing more: a database user of the same name
    /// with SELECT and DELETE on each staging table, SELECT on the registry, versions and meta
    /// tables, and VIEW DEFINITION on the sequence. Application users need nothing new.
    pub fn permissions(&self, reader_login: &Ident) -> Result<Script, SqlError> {
        lifecycle::permissions(&self.tables, reader_login, &self.options)
    }

    /// Every script of this deployment (install, uninstall), for writing out or validating.
    pub fn scripts(&self) -> Vec<&Script> {
        vec![&self.install, &self.uninstall]
    }
}

/// A rowtrail-owned name (always valid).
pub(crate) fn ident(name: &str) -> Ident {
    Ident::new(name).expect("rowtrail's own names are valid")
}

/// `[rowtrail].[name]` for a shared object.
pub(crate) fn shared(name: &str) -> String {
    format!("{}.{}", ident(SCHEMA).mssql(), ident(name).mssql())
}

/// `[rowtrail].[name]` for a rowtrail object named by an [`Ident`].
pub(crate) fn in_schema(name: &Ident) -> String {
    format!("{}.{}", ident(SCHEMA).mssql(), name.mssql())
}

/// `N'…'` of a quoted multi-part name, as `OBJECT_ID` and system procedures take it.
pub(crate) fn name_literal(quoted: &str) -> String {
    Literal::mssql(quoted).to_string()
}

/// The first header lines every script shares.
pub(crate) fn header(what: &str, tables: &[Captured], options: &Options) -> Vec<String> {
    let mut h = vec![
        format!(
            "rowtrail {}: SQL Server {what} script (staging format {FORMAT}).",
            options.version
        ),
        "Generated by `rowtrail sql generate --engine mssql`; review before running.".into(),
        "Run with: sqlcmd -b -I -S <server> -d <database> -i <this file>".into(),
        "(-b stops at the first error; the script is one transaction and idempotent).".into(),
        format!("Tables ({}):", tables.len()),
    ];
    for t in tables {
        h.push(format!("  {}", t.table.name));
        for note in &t.notes {
            h.push(format!("    note: {note}"));
        }
    }
    h
}

/// Wraps batches in one transaction that sqlcmd cannot half-run: after a failure the
/// transaction is gone, and every later batch turns on `NOEXEC`, so nothing runs outside it.
pub(crate) fn transactional(mut script: Script, done: &str) -> Script {
    let body = std::mem::take(&mut script.batches);
    script.push(
        "SET XACT_ABORT ON;\nSET NOEXEC OFF;\nSET ANSI_NULLS ON;\nSET QUOTED_IDENTIFIER ON;\n\
         BEGIN TRANSACTION;",
    );
    for b in body {
        if b.sql.starts_with("CREATE TRIGGER") {
            script.push(GUARD);
            script.push(b.sql);
        } else {
            script.push(format!("{GUARD}\n{}", b.sql));
        }
    }
    script.push(format!(
        "{GUARD}\nCOMMIT TRANSACTION;\nPRINT {};",
        Literal::mssql(&format!("rowtrail: {done}"))
    ));
    script.push("SET NOEXEC OFF;");
    script
}

/// The first line of every batch after the first: stop executing if the transaction is gone.
pub(crate) const GUARD: &str = "IF @@TRANCOUNT = 0 SET NOEXEC ON;";
