//! Running generated scripts against the server, batch by batch, and choosing the tables they
//! cover from the live catalog.
//!
//! A script runs as sqlcmd would run it with `-b`: batches in order on one connection, stopping
//! at the first error with the batch number, the server's message and the start of the batch.
//! The scripts are one transaction (their first batch begins it, their last commits it), so a
//! failure leaves nothing half-installed; the runner also rolls back whatever is still open.

use rowtrail_sql::mssql::script::split_batches;
use rowtrail_sql::mssql::{Batch, Captured, Deployment, Options, Script};
use rowtrail_sql::Table;

use super::catalog;
use super::client::MssqlClient;
use super::error::message;
use crate::ReaderError;

/// Lines of a failing batch shown in the error.
const EXCERPT_LINES: usize = 8;

/// Runs every batch of `script`; `progress(done, total)` after each.
pub fn run_script(
    c: &mut MssqlClient,
    script: &Script,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(), ReaderError> {
    let total = script.batches().len();
    for (i, b) in script.batches().iter().enumerate() {
        if let Err(cause) = c.batch_raw(&b.sql) {
            let _ = c.batch_raw(super::queries::AFTER_FAILED_SCRIPT);
            let mut excerpt: Vec<&str> = b.sql.lines().take(EXCERPT_LINES).collect();
            if b.sql.lines().count() > EXCERPT_LINES {
                excerpt.push("…");
            }
            return Err(ReaderError::ScriptFailed {
                script: script.name.clone(),
                location: c.location().to_string(),
                batch: i + 1,
                batches: total,
                message: message(&cause),
                excerpt: excerpt.join("\n"),
                cause: Box::new(cause),
            });
        }
        progress(i + 1, total);
    }
    Ok(())
}

/// `schema.table` (or `table`, meaning `dbo.table`) split in two. Brackets may quote a part
/// that holds a dot: `[my.schema].[t]`.
pub fn split_name(name: &str) -> (String, String) {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = name.chars().peekable();
    let mut in_bracket = false;
    while let Some(ch) = chars.next() {
        match ch {
            '[' if !in_bracket && cur.is_empty() => in_bracket = true,
            ']' if in_bracket => {
                if chars.peek() == Some(&']') {
                    chars.next();
                    cur.push(']');
                } else {
                    in_bracket = false;
                }
            }
            '.' if !in_bracket && parts.is_empty() => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    parts.push(cur);
    match parts.len() {
        1 => ("dbo".into(), parts.remove(0)),
        _ => {
            let table = parts.pop().expect("two parts");
            (parts.remove(0), table)
        }
    }
}

/// The live definitions of the tables named (`only`), or, without names, of the tables the
/// registry already holds (a refresh of an existing installation).
pub fn tables_to_capture(
    c: &mut MssqlClient,
    only: Option<&[String]>,
) -> Result<Vec<Table>, ReaderError> {
    let location = c.location().to_string();
    let names: Vec<(String, String)> = match only {
        Some(names) => names.iter().map(|n| split_name(n)).collect(),
        None if catalog::installed(c)? => catalog::registry(c)?
            .into_iter()
            .map(|t| {
                let n = t.table.name;
                (n.schema.map(|s| s.as_str().to_string()).unwrap_or_else(|| "dbo".into()), n.name.as_str().to_string())
            })
            .collect(),
        None => {
            return Err(ReaderError::Connection {
                reason: format!(
                    "name the tables to capture in {location} with --tables schema.table,… (SQL Server sources are never captured whole by default)"
                ),
            })
        }
    };
    let mut tables = Vec::with_capacity(names.len());
    for (schema, name) in names {
        match catalog::live_table(c, &schema, &name)? {
            Some(t) => tables.push(t),
            None => {
                let known: Vec<String> = catalog::user_tables(c)?
                    .into_iter()
                    .take(20)
                    .map(|(s, t)| format!("{s}.{t}"))
                    .collect();
                return Err(ReaderError::UnknownTable {
                    table: format!("{schema}.{name}"),
                    location,
                    hint: if known.is_empty() {
                        String::new()
                    } else {
                        format!("; it has: {}", known.join(", "))
                    },
                });
            }
        }
    }
    Ok(tables)
}

/// Generates the deployment for `tables` and runs its install script.
pub fn install(
    c: &mut MssqlClient,
    tables: &[Table],
    options: &Options,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Deployment, ReaderError> {
    let d = Deployment::generate(tables, options)?;
    run_script(c, &d.install, progress)?;
    Ok(d)
}

/// Changes a captured table and upgrades its capture in one transaction: drops the capture
/// trigger (which takes a schema-modification lock on the table until the commit, so no write
/// goes uncaptured, and tells the DDL guard that capture is being upgraded), runs the DBA's
/// `ddl` (sqlcmd text, `GO`-separated), reads the table's new definition from the catalog, and
/// runs the upgrade script from the registry's definition to it, then commits. Any failure
/// rolls everything back, the DDL included. Returns the old and new definitions.
pub fn upgrade_with_ddl(
    c: &mut MssqlClient,
    table: &str,
    ddl: &str,
    options: &Options,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Table, Table), ReaderError> {
    let location = c.location().to_string();
    if !catalog::installed(c)? {
        return Err(ReaderError::NotInstalled { location });
    }
    let (schema, name) = split_name(table);
    let old = catalog::registry(c)?
        .into_iter()
        .find(|t| {
            t.table.name.name.as_str() == name
                && t.table
                    .name
                    .schema
                    .as_ref()
                    .is_none_or(|s| s.as_str() == schema)
        })
        .ok_or_else(|| ReaderError::UnknownTable {
            table: table.to_string(),
            location: location.clone(),
            hint: " among the captured tables (install capture for it instead)".into(),
        })?
        .table;
    let ends_transaction = ddl
        .split(|ch: char| !ch.is_alphanumeric() && ch != '_')
        .any(|w| {
            ["COMMIT", "ROLLBACK"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k))
        });
    if ends_transaction {
        return Err(ReaderError::Connection {
            reason:
                "the DDL to run with the upgrade must not COMMIT or ROLLBACK: rowtrail runs it \
                     and the capture upgrade in one transaction of its own"
                    .into(),
        });
    }
    let captured = Captured::new(&old)?;
    let mut script = Script {
        name: "ddl".into(),
        header: Vec::new(),
        batches: vec![Batch {
            sql: format!(
                "SET XACT_ABORT ON;\nBEGIN TRANSACTION;\nIF OBJECT_ID({}, N'TR') IS NOT NULL\n    DROP TRIGGER {};",
                rowtrail_sql::literal::Literal::mssql(&captured.trigger_name()),
                captured.trigger_name()
            ),
        }],
    };
    script.batches.extend(
        split_batches(ddl)
            .into_iter()
            .filter(|b| !b.trim().is_empty())
            .map(|sql| Batch { sql }),
    );
    run_script(c, &script, &mut |_, _| {})?;
    let result = (|| {
        let new = catalog::live_table(c, &schema, &name)?.ok_or_else(|| ReaderError::UnknownTable {
            table: table.to_string(),
            location: location.clone(),
            hint: " after the DDL ran (dropping a captured table needs `rowtrail sql uninstall` first)".into(),
        })?;
        let upgrade = Deployment::upgrade(&old, &new, options)?;
        run_script(c, &upgrade, progress)?;
        c.batch("cannot commit the upgrade", super::queries::COMMIT)?;
        Ok((old.clone(), new))
    })();
    if result.is_err() {
        let _ = c.batch_raw(super::queries::AFTER_FAILED_SCRIPT);
    }
    result
}

/// Removes capture for the captured tables named (`only`; all without names). Refuses while
/// their staging tables hold images, unless `discard_staged` (they are deleted first).
pub fn uninstall(
    c: &mut MssqlClient,
    only: Option<&[String]>,
    discard_staged: bool,
    options: &Options,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Table>, ReaderError> {
    let location = c.location().to_string();
    if !catalog::installed(c)? {
        return Err(ReaderError::NotInstalled { location });
    }
    let all = catalog::registry(c)?;
    let chosen: Vec<_> = match only {
        None => all.clone(),
        Some(names) => names
            .iter()
            .map(|n| {
                let (s, t) = split_name(n);
                all.iter()
                    .find(|c| {
                        c.table.name.name.as_str() == t
                            && c.table.name.schema.as_ref().is_none_or(|x| x.as_str() == s)
                    })
                    .cloned()
                    .ok_or_else(|| ReaderError::UnknownTable {
                        table: n.clone(),
                        location: location.clone(),
                        hint: " among the captured tables".into(),
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut staged = 0u64;
    for t in &chosen {
        if discard_staged {
            c.execute(
                "cannot discard staged images",
                &super::queries::discard(&t.staging),
                &[],
            )?;
        } else {
            let rows = c.query(
                "cannot count staged images",
                &super::queries::count(&t.staging),
                &[],
            )?;
            staged += rows.first().and_then(|r| r.get::<i64, _>(0)).unwrap_or(0) as u64;
        }
    }
    if staged > 0 {
        return Err(ReaderError::StagedRowsPending { location, staged });
    }
    let tables: Vec<Table> = chosen.into_iter().map(|t| t.table).collect();
    let d = Deployment::generate(&tables, options)?;
    run_script(c, &d.uninstall, progress)?;
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_on_the_first_unbracketed_dot() {
        assert_eq!(split_name("Orders"), ("dbo".into(), "Orders".into()));
        assert_eq!(
            split_name("Sales.Order Detail"),
            ("Sales".into(), "Order Detail".into())
        );
        assert_eq!(
            split_name("[my.schema].[a]]b.c]"),
            ("my.schema".into(), "a]b.c".into())
        );
    }
}
