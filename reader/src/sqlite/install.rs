//! Installing and removing capture on a SQLite source: generated scripts run as one transaction.

use std::path::Path;

use rowtrail_sql::sqlite::{self as gen, CaptureNames};
use rowtrail_sql::Table;
use rusqlite::{Connection, OptionalExtension};

use super::catalog::{installed, registry, Refusal};
use super::connection::{err, open};
use super::staging::count;
use super::SqliteSource;
use crate::source::CapturedTable;
use crate::ReaderError;

impl SqliteSource {
    /// Installs (or refreshes) capture for `tables` in the database at `path`.
    ///
    /// A table whose definition changed since it was installed keeps its staging table only when
    /// that table is empty; otherwise the install stops and asks for a drain first.
    pub fn install(path: &Path, tables: &[Table], version: &str) -> Result<(), ReaderError> {
        let mut conn = open(path)?;
        let location = path.display().to_string();
        if installed(&conn, &location)? {
            super::migrate::to_current(&mut conn, &location)?;
            let existing = registry(&conn, &location)?;
            for t in tables {
                let Some(old) = existing.iter().find(|c| c.table.name == t.name) else {
                    continue;
                };
                if old.table.columns != t.columns || old.table.rowid != t.rowid {
                    let staged = count(&conn, &location, Some(old))?;
                    if staged > 0 {
                        return Err(ReaderError::StagedRowsPending { location, staged });
                    }
                    let pending = CaptureNames::for_table(&old.table).pending;
                    conn.execute_batch(&format!("DROP TABLE IF EXISTS {};", pending.sqlite()))
                        .map_err(err(&location, "cannot replace an outdated pending table"))?;
                }
            }
        }
        check_free_names(&conn, &location, tables)?;
        super::staging::widen_for(&conn, &location, &tables.iter().collect::<Vec<_>>())?;
        let script = gen::install_script(tables, version)?;
        conn.execute_batch(&script).map_err(|cause| {
            let _ = conn.execute_batch("ROLLBACK");
            super::connection::source_error(
                &location,
                "the install script failed; nothing was changed".into(),
                cause,
            )
        })
    }

    /// Removes capture for every captured table (or only `only`), refusing while staged images
    /// are waiting unless `discard_staged`. Returns the tables uninstalled.
    pub fn uninstall(
        path: &Path,
        only: Option<&[String]>,
        discard_staged: bool,
        version: &str,
    ) -> Result<Vec<Table>, ReaderError> {
        let conn = open(path)?;
        let location = path.display().to_string();
        if !installed(&conn, &location)? {
            return Err(ReaderError::NotInstalled { location });
        }
        let all = registry(&conn, &location)?;
        let chosen: Vec<&CapturedTable> = match only {
            None => all.iter().collect(),
            Some(names) => names
                .iter()
                .map(|n| {
                    all.iter()
                        .find(|c| c.table.name.name.as_str() == n)
                        .ok_or_else(|| ReaderError::UnknownTable {
                            table: n.clone(),
                            location: location.clone(),
                            hint: " among the captured tables".into(),
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        if !discard_staged {
            let mut staged = 0;
            for c in &chosen {
                staged += count(&conn, &location, Some(c))?;
            }
            if staged > 0 {
                return Err(ReaderError::StagedRowsPending { location, staged });
            }
        }
        let tables: Vec<Table> = chosen.iter().map(|c| c.table.clone()).collect();
        let shared = tables.len() == all.len();
        let script = gen::uninstall_script(&tables, shared, version);
        conn.execute_batch(&script).map_err(|cause| {
            let _ = conn.execute_batch("ROLLBACK");
            super::connection::source_error(
                &location,
                "the uninstall script failed; nothing was changed".into(),
                cause,
            )
        })?;
        Ok(tables)
    }
}

/// Refuses to install over a user object that happens to carry one of our derived names.
fn check_free_names(
    conn: &Connection,
    location: &str,
    tables: &[Table],
) -> Result<(), ReaderError> {
    let refused = taken_names(conn, location, tables)?;
    if refused.is_empty() {
        return Ok(());
    }
    Err(ReaderError::Uncapturable {
        location: location.to_string(),
        capturable: tables.len() - refused.len(),
        refused,
    })
}

/// The tables of `tables` one of whose derived names (staging, pending, triggers) is taken by
/// an object that is not rowtrail's, each with what holds the name.
pub(super) fn taken_names(
    conn: &Connection,
    location: &str,
    tables: &[Table],
) -> Result<Vec<Refusal>, ReaderError> {
    let mut stmt = conn
        .prepare("SELECT type FROM sqlite_schema WHERE name = ?1")
        .map_err(err(location, "cannot read the schema"))?;
    let mut refused = Vec::new();
    for t in tables {
        let names = CaptureNames::for_table(t);
        for (name, expected) in [(&names.staging, "table"), (&names.pending, "table")]
            .into_iter()
            .chain(names.triggers.iter().map(|n| (n, "trigger")))
        {
            let kind: Option<String> = stmt
                .query_row([name.as_str()], |r| r.get(0))
                .optional()
                .map_err(err(location, "cannot read the schema"))?;
            if let Some(kind) = kind {
                if kind != expected {
                    refused.push(Refusal {
                        table: t.name.to_string(),
                        reason: format!(
                            "a {kind} named {:?} already exists and is not rowtrail's",
                            name.as_str()
                        ),
                    });
                    break;
                }
            }
        }
    }
    Ok(refused)
}
