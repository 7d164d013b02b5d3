//! Capture scripts for SQLite sources.
//!
//! What an install creates, all named `rowtrail_*`:
//!
//! * `rowtrail_meta`: the incarnation id (a random UUID made by the script itself) and format.
//! * `rowtrail_sequence`: the one counter that orders every image of the database.
//! * `rowtrail_context`: a row a rowtrail-aware writer may insert at the start of its transaction
//!   and delete before it commits, to label its changes (login, host, application, transaction);
//!   SQLite has no logins or sessions a trigger could read. The row never commits, so writers
//!   that know nothing of rowtrail are never mislabelled.
//! * `rowtrail_registry`: one row per captured table, with its definition (JSON) and staging name.
//! * per table: a staging table (`rowtrail_s_…`), a pending table (`rowtrail_p_…`), AFTER INSERT,
//!   UPDATE and DELETE triggers, and BEFORE INSERT and UPDATE triggers that only act when the new
//!   row collides with an existing one (see below).
//!
//! Staging columns carry no declared type, so no type affinity touches a value: each is stored
//! exactly as the source row held it (storage class and bits). The statement's time is stored as
//! SQLite's `julianday('now')` (a number: formatting text for every image would cost more than
//! the copy itself); the reader writes it into the archive as ISO-8601 UTC text.
//!
//! `INSERT OR REPLACE` / `REPLACE` (and `UPDATE OR REPLACE`) delete the rows they collide with
//! without firing DELETE triggers (unless the connection turned on `recursive_triggers`). To record
//! those deletions, the BEFORE trigger copies the colliding rows into the pending table with
//! reserved sequence numbers; the AFTER trigger moves into staging those that really vanished and
//! clears the rest. When `recursive_triggers` is on, the DELETE trigger records them itself and
//! clears the pending table, so nothing is recorded twice. Collisions on expression-based unique
//! indexes are not detected (documented limit).

mod triggers;
pub use triggers::rowid_alias;
pub mod undo;
pub mod upgrade;

use crate::literal::Literal;
use crate::staging::{self, derived_name};
use crate::{Ident, SqlError, Table};

/// Shared objects every SQLite install creates.
pub mod objects {
    /// Key/value facts about the installation (incarnation, format).
    pub const META: &str = "rowtrail_meta";
    /// The single-row global sequence.
    pub const SEQUENCE: &str = "rowtrail_sequence";
    /// The writer-declared context row (never committed).
    pub const CONTEXT: &str = "rowtrail_context";
    /// One row per captured table.
    pub const REGISTRY: &str = "rowtrail_registry";
}

/// The staging-contract format this generator writes.
pub const FORMAT: &str = "1";

/// The names rowtrail derives for one captured SQLite table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureNames {
    /// The staging table.
    pub staging: Ident,
    /// The pending table that holds rows a REPLACE may delete.
    pub pending: Ident,
    /// Triggers: BEFORE INSERT, BEFORE UPDATE, AFTER INSERT, AFTER UPDATE, AFTER DELETE.
    pub triggers: [Ident; 5],
}

impl CaptureNames {
    /// Derives the names for `table`.
    pub fn for_table(table: &Table) -> Self {
        let n = |role| derived_name(&table.name, role);
        Self {
            staging: n("s"),
            pending: n("p"),
            triggers: [n("bi"), n("bu"), n("ai"), n("au"), n("ad")],
        }
    }
}

fn ident(name: &str) -> Ident {
    Ident::new(name).expect("rowtrail's own names are valid")
}

/// The install script for `tables`: idempotent (running it twice is harmless: staged rows,
/// the sequence and the incarnation are kept; triggers are replaced), atomic (one transaction).
pub fn install_script(tables: &[Table], version: &str) -> Result<String, SqlError> {
    for t in tables {
        t.validate()?;
    }
    let mut s = header("install", tables, version);
    s.push_str("BEGIN IMMEDIATE;\n\n");
    s.push_str(&shared_objects());
    for t in tables {
        s.push_str(&table_objects(t)?);
    }
    s.push_str("COMMIT;\n");
    Ok(s)
}

/// The uninstall script for `tables`, mirroring [`install_script`]. With `shared`, it also drops
/// the shared objects (registry, sequence, context, meta): use it when no captured table remains.
///
/// Staged rows that no reader has archived yet are dropped with the staging tables: drain first
/// (`rowtrail read`). `rowtrail sql uninstall` checks this; the script cannot.
pub fn uninstall_script(tables: &[Table], shared: bool, version: &str) -> String {
    let mut s = header("uninstall", tables, version);
    s.push_str("-- Staged changes not yet archived are lost with the staging tables: run `rowtrail read` first.\n\n");
    s.push_str("BEGIN IMMEDIATE;\n\n");
    for t in tables {
        let names = CaptureNames::for_table(t);
        s.push_str(&format!("-- {}\n", comment_name(&t.name.to_string())));
        for trig in &names.triggers {
            s.push_str(&format!("DROP TRIGGER IF EXISTS {};\n", trig.sqlite()));
        }
        s.push_str(&format!(
            "DROP TABLE IF EXISTS {};\n",
            names.staging.sqlite()
        ));
        s.push_str(&format!(
            "DROP TABLE IF EXISTS {};\n",
            names.pending.sqlite()
        ));
        if !shared {
            s.push_str(&format!(
                "DELETE FROM {} WHERE \"staging_name\" = {};\n",
                ident(objects::REGISTRY).sqlite(),
                Literal::sqlite(names.staging.as_str())
            ));
        }
        s.push('\n');
    }
    if shared {
        for obj in [
            objects::REGISTRY,
            objects::CONTEXT,
            objects::SEQUENCE,
            objects::META,
        ] {
            s.push_str(&format!("DROP TABLE IF EXISTS {};\n", ident(obj).sqlite()));
        }
        s.push('\n');
    }
    s.push_str("COMMIT;\n");
    s
}

fn header(what: &str, tables: &[Table], version: &str) -> String {
    let mut s = format!(
        "-- rowtrail {version}: capture {what} script for SQLite (staging format {FORMAT}).\n\
         -- Generated by `rowtrail sql generate`; review before running. Runs as one transaction.\n\
         -- Tables ({}):\n",
        tables.len()
    );
    for t in tables {
        s.push_str(&format!("--   {}\n", comment_name(&t.name.to_string())));
    }
    s.push('\n');
    s
}

/// A name made safe for a `--` comment line (no line breaks).
fn comment_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn shared_objects() -> String {
    let meta = ident(objects::META);
    let seq = ident(objects::SEQUENCE);
    let ctx = ident(objects::CONTEXT);
    let reg = ident(objects::REGISTRY);
    format!(
        "CREATE TABLE IF NOT EXISTS {meta} (\"key\" TEXT PRIMARY KEY, \"value\" TEXT NOT NULL);\n\
         INSERT OR IGNORE INTO {meta} (\"key\", \"value\") VALUES ('format', '{FORMAT}');\n\
         INSERT OR IGNORE INTO {meta} (\"key\", \"value\") SELECT 'incarnation', lower(\n    \
           hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' ||\n    \
           substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)));\n\
         CREATE TABLE IF NOT EXISTS {seq} (\"id\" INTEGER PRIMARY KEY CHECK (\"id\" = 1), \"value\" INTEGER NOT NULL);\n\
         INSERT OR IGNORE INTO {seq} (\"id\", \"value\") VALUES (1, 0);\n\
         CREATE TABLE IF NOT EXISTS {ctx} (\"id\" INTEGER PRIMARY KEY CHECK (\"id\" = 1), \
         \"tx\", \"login\", \"host\", \"app\", \"client_ip\");\n\
         CREATE TABLE IF NOT EXISTS {reg} (\n    \
           \"table_schema\" TEXT NOT NULL,\n    \
           \"table_name\" TEXT NOT NULL,\n    \
           \"staging_name\" TEXT NOT NULL UNIQUE,\n    \
           \"pending_name\" TEXT NOT NULL UNIQUE,\n    \
           \"definition\" TEXT NOT NULL,\n    \
           \"installed_at\" TEXT NOT NULL,\n    \
           PRIMARY KEY (\"table_schema\", \"table_name\"));\n\n",
        meta = meta.sqlite(),
        seq = seq.sqlite(),
        ctx = ctx.sqlite(),
        reg = reg.sqlite(),
    )
}

/// The staging (and pending) table's column list, as quoted identifiers.
fn staging_columns(t: &Table) -> Vec<String> {
    let mut cols: Vec<String> = staging::METADATA_COLUMNS
        .iter()
        .map(|c| ident(c).sqlite().to_string())
        .collect();
    if t.rowid {
        cols.push(ident(staging::COL_ROWID).sqlite().to_string());
    }
    cols.extend(t.columns.iter().map(|c| c.name.sqlite().to_string()));
    cols
}

/// Whether SQLite capture can cover `t` as it is: the model's rules ([`Table::validate`]) and
/// SQLite's own (a rowid the triggers can name, a key for a table without rowid).
pub fn capturable(t: &Table) -> Result<(), SqlError> {
    t.validate()?;
    if t.rowid && triggers::rowid_alias(t).is_none() {
        return Err(SqlError::Uncapturable {
            table: t.name.to_string(),
            reason: "its columns named rowid, _rowid_ and oid hide the rowid; rename one of them"
                .into(),
        });
    }
    if !t.rowid && t.primary_key.is_empty() {
        return Err(SqlError::Uncapturable {
            table: t.name.to_string(),
            reason: "a table without rowid must have a primary key".into(),
        });
    }
    Ok(())
}

/// The statements that capture one more table `t` (staging, pending, registry row, triggers),
/// without `BEGIN`/`COMMIT`: for a transaction the caller holds, on a source whose shared
/// objects exist.
pub fn table_install(t: &Table) -> Result<String, SqlError> {
    table_objects(t)
}

fn table_objects(t: &Table) -> Result<String, SqlError> {
    capturable(t)?;
    let names = CaptureNames::for_table(t);
    let mut s = format!("-- {}\n", comment_name(&t.name.to_string()));
    let mut defs = vec![
        format!("{} INTEGER PRIMARY KEY", ident(staging::COL_SEQ).sqlite()),
        format!("{} TEXT NOT NULL", ident(staging::COL_OP).sqlite()),
        format!("{} TEXT NOT NULL", ident(staging::COL_IMAGE).sqlite()),
    ];
    // The remaining columns are untyped on purpose: no affinity may alter a value.
    defs.extend(staging_columns(t).into_iter().skip(3));
    let body = defs.join(",\n    ");
    for table in [&names.staging, &names.pending] {
        s.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    {body});\n",
            table.sqlite()
        ));
    }
    let schema = t.name.schema.as_ref().map_or("", |s| s.as_str());
    s.push_str(&format!(
        "INSERT INTO {reg} (\"table_schema\", \"table_name\", \"staging_name\", \"pending_name\", \
         \"definition\", \"installed_at\")\n  VALUES ({}, {}, {}, {}, {}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))\n  \
         ON CONFLICT (\"table_schema\", \"table_name\") DO UPDATE SET \"definition\" = excluded.\"definition\";\n",
        Literal::sqlite(schema),
        Literal::sqlite(t.name.name.as_str()),
        Literal::sqlite(names.staging.as_str()),
        Literal::sqlite(names.pending.as_str()),
        Literal::sqlite(&t.to_json()),
        reg = ident(objects::REGISTRY).sqlite(),
    ));
    s.push_str(&triggers::all(t, &names));
    s.push('\n');
    Ok(s)
}
