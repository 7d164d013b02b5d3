//! `rowtrail sql check`: drift between what capture should be and what the server holds.
//!
//! Per captured table it looks for: the table dropped; the trigger missing, disabled, moved to
//! another table, or its text altered; the staging table missing or its columns not matching
//! what the registry's definition needs; and the table's live columns differing from the
//! captured definition (a new column not captured, a column dropped, renamed or retyped). Each
//! finding says what to run to fix it. The comparison ([`drift`]) is pure; [`observe`] reads
//! the catalog.

use rowtrail_sql::mssql::catalog::CatalogColumn;
use rowtrail_sql::mssql::trigger::create_trigger;
use rowtrail_sql::mssql::types::MssqlType;
use rowtrail_sql::mssql::{Captured, Target};
use rowtrail_sql::{staging, Table};

use super::catalog::{self, TriggerState};
use super::client::MssqlClient;
use crate::ReaderError;

/// What the server holds for one captured table.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The definition the registry records.
    pub captured: Table,
    /// The table's live definition, `None` when it was dropped.
    pub live: Option<Table>,
    /// The capture trigger, `None` when missing.
    pub trigger: Option<TriggerState>,
    /// The staging table's columns (empty when it is missing).
    pub staging: Vec<CatalogColumn>,
}

/// One drift, and its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `schema.table`.
    pub table: String,
    /// What is wrong.
    pub problem: String,
    /// What to run.
    pub fix: String,
    /// Whether an upgrade script (old → live definition) is the fix.
    pub needs_upgrade: bool,
}

/// The text SQL Server keeps for a module, without what a splitter or an editor adds at its end.
fn normal_module(text: &str) -> String {
    let unified = text.replace("\r\n", "\n");
    let mut lines: Vec<&str> = unified.lines().collect();
    while lines
        .last()
        .is_some_and(|l| l.trim().is_empty() || matches!(l.trim(), "-- '" | "-- \"" | "-- */"))
    {
        lines.pop();
    }
    lines
        .iter()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A type as the catalog spells it: `float(24)` is `real`, `sysname` is `nvarchar(128)`,
/// default sizes written out.
pub fn normal_type(t: &str) -> String {
    let Ok(ty) = MssqlType::parse(t) else {
        return t.to_lowercase();
    };
    let a = |i: usize, d: &str| ty.args.get(i).cloned().unwrap_or_else(|| d.to_string());
    match ty.base.as_str() {
        "sysname" => "nvarchar(128)".into(),
        "float" => match ty.args.first().and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n <= 24 => "real".into(),
            _ => "float".into(),
        },
        "decimal" | "numeric" => format!("{}({},{})", ty.base, a(0, "18"), a(1, "0")),
        "datetime2" | "time" | "datetimeoffset" => format!("{}({})", ty.base, a(0, "7")),
        "char" | "varchar" | "nchar" | "nvarchar" | "binary" | "varbinary" => {
            format!("{}({})", ty.base, a(0, "1"))
        }
        "rowversion" | "timestamp" => "binary(8)".into(),
        _ => ty.canonical(),
    }
}

/// The type of a catalog row as text (`nvarchar(50)`, `decimal(19,4)`, `varbinary(max)`).
pub fn catalog_type(c: &CatalogColumn) -> String {
    let base = c.system_type_name.to_lowercase();
    let len = |per_char: i16| {
        if c.max_length == -1 {
            "max".to_string()
        } else {
            (c.max_length / per_char).to_string()
        }
    };
    match base.as_str() {
        "char" | "varchar" | "binary" | "varbinary" => format!("{base}({})", len(1)),
        "nchar" | "nvarchar" => format!("{base}({})", len(2)),
        "decimal" | "numeric" => format!("{base}({},{})", c.precision, c.scale),
        "datetime2" | "time" | "datetimeoffset" => format!("{base}({})", c.scale),
        _ => base,
    }
}

/// The staging columns the registry's definition needs: metadata, then captured columns.
fn expected_staging(c: &Captured) -> Vec<(String, String)> {
    const META: [&str; 10] = [
        "bigint",
        "char(1)",
        "char(1)",
        "bigint",
        "bigint",
        "datetime2(7)",
        "nvarchar(128)",
        "nvarchar(128)",
        "nvarchar(128)",
        "nvarchar(48)",
    ];
    staging::METADATA_COLUMNS
        .iter()
        .zip(META)
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .chain(
            c.table
                .columns
                .iter()
                .zip(&c.staging_types)
                .map(|(col, t)| (col.name.as_str().to_string(), normal_type(t))),
        )
        .collect()
}

/// Compares what should be with what is.
pub fn drift(o: &Observed) -> Result<Vec<Finding>, ReaderError> {
    let captured = Captured::new(&o.captured)?;
    let name = captured.table.name.to_string();
    let mut out = Vec::new();
    let mut find = |problem: String, fix: String, needs_upgrade: bool| {
        out.push(Finding {
            table: name.clone(),
            problem,
            fix,
            needs_upgrade,
        })
    };
    let reinstall = format!("rowtrail sql install --tables {name:?}");
    let Some(live) = &o.live else {
        find(
            "the table was dropped (or renamed); its changes are no longer captured".into(),
            format!("if it is gone for good: rowtrail sql uninstall --tables {name:?}; if it was renamed, uninstall it and install the new name"),
            false,
        );
        return Ok(out);
    };
    match &o.trigger {
        None => find(
            "the capture trigger is missing: changes are not captured".into(),
            reinstall.clone(),
            false,
        ),
        Some(t) if !t.parent_matches => find(
            "the capture trigger is on another table".into(),
            reinstall.clone(),
            false,
        ),
        Some(t) => {
            if t.disabled {
                find(
                    "the capture trigger is disabled: changes are not captured".into(),
                    format!(
                        "ENABLE TRIGGER {} ON {};  (or {reinstall})",
                        captured.trigger_name(),
                        captured.source()
                    ),
                    false,
                );
            }
            match &t.definition {
                None => find("the capture trigger's text cannot be read (WITH ENCRYPTION, or no VIEW DEFINITION permission)".into(), reinstall.clone(), false),
                Some(text) => {
                    let actual = normal_module(text);
                    let matches = [Target::Sql2016, Target::Sql2012]
                        .iter()
                        .any(|&tg| normal_module(&create_trigger(&captured, tg)) == actual);
                    if !matches {
                        find("the capture trigger was altered (its text is not the one rowtrail generated)".into(), reinstall.clone(), false);
                    }
                }
            }
        }
    }
    if o.staging.is_empty() {
        find(
            "the staging table is missing".into(),
            reinstall.clone(),
            false,
        );
    } else {
        let actual: Vec<(String, String)> = o
            .staging
            .iter()
            .map(|c| (c.name.clone(), normal_type(&catalog_type(c))))
            .collect();
        let expected = expected_staging(&captured);
        if actual != expected {
            let show = |v: &[(String, String)]| {
                v.iter()
                    .map(|(n, t)| format!("{n} {t}"))
                    .collect::<Vec<_>>()
            };
            let missing: Vec<String> = show(&expected)
                .into_iter()
                .filter(|e| !show(&actual).contains(e))
                .collect();
            let extra: Vec<String> = show(&actual)
                .into_iter()
                .filter(|a| !show(&expected).contains(a))
                .collect();
            find(
                format!(
                    "the staging table's columns do not match the captured definition (expected but absent: {}; present but not expected: {})",
                    if missing.is_empty() { "none".into() } else { missing.join(", ") },
                    if extra.is_empty() { "none".into() } else { extra.join(", ") }
                ),
                "drain staging (rowtrail read), then uninstall and install the table again".into(),
                false,
            );
        }
    }
    let now = Captured::new(live);
    match now {
        Err(e) => find(
            format!("the table's live definition can no longer be captured: {e}"),
            "change the table back, or uninstall it".into(),
            false,
        ),
        Ok(now) => {
            let cols = |c: &Captured| -> Vec<(String, String)> {
                c.table
                    .columns
                    .iter()
                    .zip(&c.staging_types)
                    .map(|(col, t)| (col.name.as_str().to_string(), normal_type(t)))
                    .collect()
            };
            let (old, new) = (cols(&captured), cols(&now));
            let added: Vec<&str> = new
                .iter()
                .filter(|(n, _)| !old.iter().any(|(o, _)| o == n))
                .map(|(n, _)| n.as_str())
                .collect();
            let dropped: Vec<&str> = old
                .iter()
                .filter(|(n, _)| !new.iter().any(|(o, _)| o == n))
                .map(|(n, _)| n.as_str())
                .collect();
            let retyped: Vec<String> = old
                .iter()
                .filter_map(|(n, t)| {
                    new.iter()
                        .find(|(m, _)| m == n)
                        .filter(|(_, u)| u != t)
                        .map(|(_, u)| format!("{n} {t} → {u}"))
                })
                .collect();
            let upgrade = "rowtrail sql check --write-upgrade DIR, review DIR/rowtrail-upgrade-*.sql, run it with sqlcmd -b".to_string();
            if !added.is_empty() {
                find(
                    format!("column(s) not captured: {}", added.join(", ")),
                    upgrade.clone(),
                    true,
                );
            }
            if !dropped.is_empty() {
                find(format!("captured column(s) dropped or renamed: {} (the trigger fails at the next write)", dropped.join(", ")), upgrade.clone(), true);
            }
            if !retyped.is_empty() {
                find(
                    format!("column type(s) changed: {}", retyped.join(", ")),
                    upgrade,
                    true,
                );
            }
        }
    }
    Ok(out)
}

/// Reads what the server holds for every captured table.
pub fn observe(c: &mut MssqlClient) -> Result<Vec<Observed>, ReaderError> {
    let location = c.location().to_string();
    if !catalog::installed(c)? {
        return Err(ReaderError::NotInstalled { location });
    }
    let mut out = Vec::new();
    for t in catalog::registry(c)? {
        let captured = Captured::new(&t.table)?;
        let schema = captured.schema().as_str().to_string();
        let live = catalog::live_table(c, &schema, captured.table.name.name.as_str())?;
        let trigger = catalog::trigger_state(c, &captured.trigger_name(), &captured.source())?;
        let staging = catalog::columns(c, &captured.staging_name())?;
        out.push(Observed {
            captured: t.table,
            live,
            trigger,
            staging,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
