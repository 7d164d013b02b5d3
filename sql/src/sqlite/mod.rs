//! Capture scripts for SQLite sources.
//!
//! What an install creates, all named `rowtrail_*`:
//!
//! * `rowtrail_meta`: the incarnation id (a random UUID made by the script itself) and format.
//! * `rowtrail_staging`: one staging table for every captured table. Its rowid is the global
//!   seq: each trigger inserts its images without a seq, so SQLite gives each the next rowid
//!   (one above the highest), in the order the statement writes them, under the one write lock.
//!   No counter row is updated per image. So that a seq never goes back after the reader
//!   deletes what it archived, the row with the highest seq is never simply deleted: it becomes
//!   the high-water mark (op `H`, every other column NULL), which the reader skips and the next
//!   delete removes once a higher seq exists.
//! * `rowtrail_context`: a row a rowtrail-aware writer may insert at the start of its transaction
//!   and delete before it commits, to label its changes (login, host, application, transaction);
//!   SQLite has no logins or sessions a trigger could read. The row never commits, so writers
//!   that know nothing of rowtrail are never mislabelled.
//! * `rowtrail_registry`: one row per captured table, with its definition (JSON) and staging name.
//! * per table: a pending table (`rowtrail_p_…`), AFTER INSERT, UPDATE and DELETE triggers, and
//!   BEFORE INSERT and UPDATE triggers that only act when the new row collides with an existing
//!   one (see below). The registry names the table's staging label (`rowtrail_s_…`, the name
//!   errors use) and its table id ([`table_id`]), which each of its staged images carries.
//!
//! Staging columns carry no declared type, so no type affinity touches a value: each is stored
//! exactly as the source row held it (storage class and bits). A table's columns go, in order,
//! into the value columns `v1`, `v2`, …; the staging table is as wide as the widest captured
//! table ([`widen_staging`]). No staging column is `NOT NULL` or checked: a trigger statement
//! that cannot fail spares SQLite a statement journal for the application's whole statement.
//! The statement's time is stored as
//! SQLite's `julianday('now')` (a number: formatting text for every image would cost more than
//! the copy itself); the reader writes it into the archive as ISO-8601 UTC text.
//!
//! `INSERT OR REPLACE` / `REPLACE` (and `UPDATE OR REPLACE`) delete the rows they collide with
//! without firing DELETE triggers (unless the connection turned on `recursive_triggers`). To record
//! those deletions, the BEFORE trigger copies the colliding rows into the pending table with
//! the statement's metadata; the AFTER trigger, in the same INSERT as its own images, moves into
//! staging those that really vanished (so their seqs come right before the new row's) and clears
//! the pending table. Nothing else touches the pending table while no REPLACE collided. When `recursive_triggers` is on, the DELETE trigger records them itself and
//! clears the pending table, so nothing is recorded twice. Collisions on expression-based unique
//! indexes are not detected (documented limit).

mod triggers;
pub use triggers::rowid_alias;
pub mod fence;
pub mod undo;
pub mod upgrade;

use crate::literal::Literal;
use crate::staging::{self, derived_name};
use crate::{Ident, SqlError, Table, TableName};

/// Shared objects every SQLite install creates.
pub mod objects {
    /// Key/value facts about the installation (incarnation, format).
    pub const META: &str = "rowtrail_meta";
    /// The shared staging table; its rowid is the global seq.
    pub const STAGING: &str = "rowtrail_staging";
    /// The single-row global sequence of staging format 1, migrated into [`STAGING`]'s rowid.
    pub const SEQUENCE: &str = "rowtrail_sequence";
    /// The writer-declared context row (never committed).
    pub const CONTEXT: &str = "rowtrail_context";
    /// One row per captured table.
    pub const REGISTRY: &str = "rowtrail_registry";
}

/// The staging-contract format this generator writes: `2`, one shared staging table whose
/// rowid is the seq (format `1` had a staging table per captured table and a counter row;
/// [`upgrade::from_format_1`] migrates it).
pub const FORMAT: &str = "2";

/// The staging column holding a captured table's id ([`table_id`]).
pub const COL_TABLE: &str = "rowtrail_table";

/// The unique index that keeps table ids apart in the registry.
pub const REGISTRY_ID_INDEX: &str = "rowtrail_registry_table_id";

/// The op code of the high-water mark row (see the module documentation).
pub const OP_HIGH_WATER: &str = "H";

/// The name of the `i`-th value column (1-based) of the shared staging table.
pub fn value_column(i: usize) -> Ident {
    ident(&format!("v{i}"))
}

/// The id that marks `table`'s images in the shared staging table: the first 40 bits of the
/// hash that its derived names end with (the registry keeps it unique: a collision, about one
/// in 10¹² for two tables, makes the install fail and change nothing).
pub fn table_id(table: &TableName) -> i64 {
    let hash = derived_name(table, "s");
    let hex = hash.as_str().rsplit('_').next().unwrap_or_default();
    i64::from_str_radix(hex, 16).expect("derived names end with 10 hex digits")
}

/// Statements that widen the shared staging table from `current` value columns to `needed`
/// (none when it is wide enough). Run before capturing a table wider than any captured so far.
pub fn widen_staging(current: usize, needed: usize) -> String {
    (current + 1..=needed)
        .map(|i| {
            format!(
                "ALTER TABLE {} ADD COLUMN {};\n",
                ident(objects::STAGING).sqlite(),
                value_column(i).sqlite()
            )
        })
        .collect()
}

/// The shared staging table's metadata columns, in order, before the value columns.
pub fn staging_metadata_columns() -> Vec<&'static str> {
    let mut cols = staging::METADATA_COLUMNS.to_vec();
    cols.push(COL_TABLE);
    cols.push(staging::COL_ROWID);
    cols
}

/// The names rowtrail derives for one captured SQLite table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureNames {
    /// The staging label: the registry's name for the table's images in the shared staging
    /// table (and the name of its own staging table in format 1).
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
/// the seqs taken and the incarnation are kept; triggers are replaced), atomic (one
/// transaction). On an install of staging format 1 it fails and changes nothing (the registry
/// has no table ids yet): `rowtrail sql install` migrates such an install first.
pub fn install_script(tables: &[Table], version: &str) -> Result<String, SqlError> {
    for t in tables {
        t.validate()?;
    }
    let mut s = header("install", tables, version);
    s.push_str("BEGIN IMMEDIATE;\n\n");
    let width = tables.iter().map(|t| t.columns.len()).max().unwrap_or(0);
    s.push_str(&shared_objects(width));
    for t in tables {
        s.push_str(&table_objects(t)?);
    }
    s.push_str("COMMIT;\n");
    Ok(s)
}

/// The uninstall script for `tables`, mirroring [`install_script`]. With `shared`, it also drops
/// the shared objects (staging, registry, context, meta): use it when no captured table remains.
///
/// Staged rows that no reader has archived yet are dropped with the table's capture: drain first
/// (`rowtrail read`). `rowtrail sql uninstall` checks this; the script cannot.
pub fn uninstall_script(tables: &[Table], shared: bool, version: &str) -> String {
    let mut s = header("uninstall", tables, version);
    s.push_str("-- Staged changes not yet archived are lost with the capture: run `rowtrail read` first.\n\n");
    s.push_str("BEGIN IMMEDIATE;\n\n");
    for t in tables {
        let names = CaptureNames::for_table(t);
        s.push_str(&format!("-- {}\n", comment_name(&t.name.to_string())));
        for trig in &names.triggers {
            s.push_str(&format!("DROP TRIGGER IF EXISTS {};\n", trig.sqlite()));
        }
        s.push_str(&format!(
            "DROP TABLE IF EXISTS {};\n",
            names.pending.sqlite()
        ));
        if !shared {
            s.push_str(&discard_staged(t));
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
            objects::STAGING,
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

/// Removes `t`'s images from the shared staging table, keeping the high-water mark: the image
/// with the highest seq, if it is one of them, becomes the mark instead of going.
fn discard_staged(t: &Table) -> String {
    let staging = ident(objects::STAGING);
    let seq = ident(staging::COL_SEQ);
    let tbl = ident(COL_TABLE);
    let id = table_id(&t.name);
    let mut nulls: Vec<String> = staging_metadata_columns()
        .into_iter()
        .skip(2)
        .map(|c| format!("{} = NULL", ident(c).sqlite()))
        .collect();
    nulls.extend((1..=t.columns.len()).map(|i| format!("{} = NULL", value_column(i).sqlite())));
    format!(
        "DELETE FROM {staging} WHERE {tbl} = {id} AND {seq} < (SELECT max({seq}) FROM {staging});\n\
         UPDATE {staging} SET {op} = '{OP_HIGH_WATER}', {nulls} WHERE {tbl} = {id};\n{}",
        clear_old_marks(),
        staging = staging.sqlite(),
        tbl = tbl.sqlite(),
        seq = seq.sqlite(),
        op = ident(staging::COL_OP).sqlite(),
        nulls = nulls.join(", "),
    )
}

/// Removes high-water marks that a higher seq has overtaken.
fn clear_old_marks() -> String {
    format!(
        "DELETE FROM {staging} WHERE {op} = '{OP_HIGH_WATER}' AND {seq} < (SELECT max({seq}) FROM {staging});\n",
        staging = ident(objects::STAGING).sqlite(),
        op = ident(staging::COL_OP).sqlite(),
        seq = ident(staging::COL_SEQ).sqlite(),
    )
}

fn header(what: &str, tables: &[Table], version: &str) -> String {
    let mut s = format!(
        "-- rowtrail {version}: capture {what} script for SQLite (staging format {FORMAT}).\n\
         -- Generated by `rowtrail sql generate`; review before running. Runs as one transaction:\n\
         -- run it with `sqlite3 -bail DATABASE < FILE` (without -bail the shell goes on after a failure).\n\
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

fn shared_objects(width: usize) -> String {
    let meta = ident(objects::META);
    let ctx = ident(objects::CONTEXT);
    let reg = ident(objects::REGISTRY);
    format!(
        "CREATE TABLE IF NOT EXISTS {meta} (\"key\" TEXT PRIMARY KEY, \"value\" TEXT NOT NULL);\n\
         INSERT OR IGNORE INTO {meta} (\"key\", \"value\") VALUES ('format', '{FORMAT}');\n\
         INSERT OR IGNORE INTO {meta} (\"key\", \"value\") SELECT 'incarnation', lower(\n    \
           hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' ||\n    \
           substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)));\n\
         {staging}\
         CREATE TABLE IF NOT EXISTS {ctx} (\"id\" INTEGER PRIMARY KEY CHECK (\"id\" = 1), \
         \"tx\", \"login\", \"host\", \"app\", \"client_ip\");\n\
         CREATE TABLE IF NOT EXISTS {reg} (\n    \
           \"table_schema\" TEXT NOT NULL,\n    \
           \"table_name\" TEXT NOT NULL,\n    \
           \"staging_name\" TEXT NOT NULL UNIQUE,\n    \
           \"pending_name\" TEXT NOT NULL UNIQUE,\n    \
           \"definition\" TEXT NOT NULL,\n    \
           \"installed_at\" TEXT NOT NULL,\n    \
           \"table_id\" INTEGER,\n    \
           PRIMARY KEY (\"table_schema\", \"table_name\"));\n\
         CREATE UNIQUE INDEX IF NOT EXISTS {idx} ON {reg} (\"table_id\");\n\
         -- An install made before this one must already be at least as wide; `rowtrail sql install`\n\
         -- widens it. This statement fails (and the script with it) where it is not.\n\
         SELECT {last} FROM {staging_name} LIMIT 0;\n\n",
        meta = meta.sqlite(),
        staging = staging_table(width),
        staging_name = ident(objects::STAGING).sqlite(),
        last = if width == 0 {
            ident(staging::COL_ROWID).sqlite().to_string()
        } else {
            value_column(width).sqlite().to_string()
        },
        ctx = ctx.sqlite(),
        reg = reg.sqlite(),
        idx = ident(REGISTRY_ID_INDEX).sqlite(),
    )
}

/// `CREATE TABLE IF NOT EXISTS` for the shared staging table with `width` value columns.
pub fn staging_table(width: usize) -> String {
    let mut defs = vec![format!(
        "{} INTEGER PRIMARY KEY",
        ident(staging::COL_SEQ).sqlite()
    )];
    defs.extend(
        staging_metadata_columns()
            .into_iter()
            .skip(1)
            .map(|c| ident(c).sqlite().to_string()),
    );
    defs.extend((1..=width).map(|i| value_column(i).sqlite().to_string()));
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n    {});\n",
        ident(objects::STAGING).sqlite(),
        defs.join(",\n    ")
    )
}

/// The pending table's column list, as quoted identifiers: the staging metadata, the rowid for
/// a rowid table, then the table's own columns under their names.
fn pending_columns(t: &Table) -> Vec<String> {
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

/// The shared staging columns an image of `t` fills (no seq: SQLite gives the rowid).
fn image_columns(t: &Table) -> Vec<String> {
    let mut cols: Vec<String> = staging_metadata_columns()
        .into_iter()
        .skip(1)
        .map(|c| ident(c).sqlite().to_string())
        .collect();
    if !t.rowid {
        cols.pop();
    }
    cols.extend((1..=t.columns.len()).map(|i| value_column(i).sqlite().to_string()));
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
    let mut defs = vec![format!(
        "{} INTEGER PRIMARY KEY",
        ident(staging::COL_SEQ).sqlite()
    )];
    // Untyped on purpose: no affinity may alter a value. Unconstrained like staging, so the
    // triggers' statements can never abort (see the module documentation).
    defs.extend(pending_columns(t).into_iter().skip(1));
    let body = defs.join(",\n    ");
    s.push_str(&format!(
        "CREATE TABLE IF NOT EXISTS {} (\n    {body});\n",
        names.pending.sqlite()
    ));
    let schema = t.name.schema.as_ref().map_or("", |s| s.as_str());
    s.push_str(&format!(
        "INSERT INTO {reg} (\"table_schema\", \"table_name\", \"staging_name\", \"pending_name\", \
         \"definition\", \"installed_at\", \"table_id\")\n  VALUES ({}, {}, {}, {}, {}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), {})\n  \
         ON CONFLICT (\"table_schema\", \"table_name\") DO UPDATE SET \"definition\" = excluded.\"definition\";\n",
        Literal::sqlite(schema),
        Literal::sqlite(t.name.name.as_str()),
        Literal::sqlite(names.staging.as_str()),
        Literal::sqlite(names.pending.as_str()),
        Literal::sqlite(&t.to_json()),
        table_id(&t.name),
        reg = ident(objects::REGISTRY).sqlite(),
    ));
    s.push_str(&triggers::all(t, &names));
    s.push('\n');
    Ok(s)
}
