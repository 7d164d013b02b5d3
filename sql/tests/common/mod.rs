//! Shared fixtures of the sql crate's SQL Server tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rowtrail_sql::mssql::{Deployment, Options, Script};
use rowtrail_sql::{Ident, Table};

/// The realistic tables (AdventureWorks-like shapes) as a DBA's DDL script.
pub const ADVENTUREWORKS: &str = include_str!("../fixtures/adventureworks.sql");

/// Options with a fixed version, so snapshots do not change with the crate version.
pub fn options() -> Options {
    Options {
        version: "0.0.0-test".into(),
        ..Options::default()
    }
}

/// The realistic tables, parsed.
pub fn tables() -> Vec<Table> {
    rowtrail_sql::ddl::parse_mssql(ADVENTUREWORKS).expect("the fixture parses")
}

/// The table called `name` among the realistic ones.
pub fn table(name: &str) -> Table {
    tables()
        .into_iter()
        .find(|t| t.name.name.as_str() == name)
        .expect("fixture table")
}

/// Every script rowtrail generates for the realistic tables: the deployment, the reader's
/// permissions, and an upgrade per kind of change.
pub fn realistic_scripts() -> Vec<Script> {
    let opts = options();
    let all = tables();
    let d = Deployment::generate(&all, &opts).expect("realistic tables deploy");
    let mut out = vec![d.install.clone(), d.uninstall.clone()];
    out.push(
        d.permissions(&Ident::new("rowtrail_reader").unwrap())
            .unwrap(),
    );
    for (i, mut new) in upgraded(&table("Product")).into_iter().enumerate() {
        new.name = format!("upgrade-{i}");
        out.push(new);
    }
    out
}

/// Upgrade scripts for one table: a column added, one dropped, one changed (type and sparse).
pub fn upgraded(old: &Table) -> Vec<Script> {
    let opts = options();
    let mut added = old.clone();
    added.columns.push(rowtrail_sql::Column::new(
        Ident::new("Color").unwrap(),
        "nvarchar(15)",
        true,
    ));
    let mut dropped = old.clone();
    let last = dropped.columns.len() - 1;
    dropped.columns.remove(last - 1);
    let mut changed = old.clone();
    let w = changed
        .columns
        .iter_mut()
        .find(|c| c.name.as_str() == "Weight")
        .unwrap();
    w.sql_type = "decimal(10,3)".into();
    w.sparse = true;
    [added, dropped, changed]
        .iter()
        .map(|new| Deployment::upgrade(old, new, &opts).expect("upgrade generates"))
        .collect()
}

/// Where the ScriptDom validator lives (built by `bash scripts/scriptdom/setup.sh`).
pub fn validator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scriptdom/validate.exe")
}

/// Writes `scripts` into a temporary directory and runs ScriptDom over them. Panics (never
/// skips) when the validator is missing, and names the script, batch and error on failure.
/// Returns the validator's summary line.
pub fn scriptdom(label: &str, scripts: &[Script]) -> String {
    let exe = validator();
    assert!(
        exe.exists(),
        "the ScriptDom validator is missing ({}): run `bash scripts/prereqs.sh` (or \
         `bash scripts/scriptdom/setup.sh`) to install Mono and build it",
        exe.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, s) in scripts.iter().enumerate() {
        let path = dir.path().join(format!("{label}-{i:03}-{}", s.file_name()));
        std::fs::write(&path, s.render()).unwrap();
        files.push(path);
    }
    let out = Command::new("mono")
        .arg(&exe)
        .args(&files)
        .output()
        .expect("mono runs (install it with `bash scripts/prereqs.sh`)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ScriptDom (TSql150Parser) rejected generated T-SQL:\n{stdout}\n{stderr}"
    );
    stdout.lines().last().unwrap_or_default().to_string()
}
