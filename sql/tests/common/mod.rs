//! Shared fixtures of the sql crate's SQL Server tests.
#![allow(dead_code)]

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

/// Runs ScriptDom over `scripts` (named after `label`, their position and their file name);
/// see [`rowtrail_tests::scriptdom::validate`]. Returns the validator's summary line.
pub fn scriptdom(label: &str, scripts: &[Script]) -> String {
    let named: Vec<(String, String)> = scripts
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("{label}-{i:03}-{}", s.file_name()), s.render()))
        .collect();
    rowtrail_tests::scriptdom::validate(&named)
}
