//! SQL Server fidelity (issue 15): the shapes that fix what a real server would get wrong,
//! pinned by snapshots and parsed by ScriptDom like every other generated script. The live
//! suite (`tests/e2e/mssql_live/fidelity.rs`) runs the same shapes on a server.

mod common;

use rowtrail_sql::mssql::{ddl_guard, Captured, Deployment, Script};
use rowtrail_sql::{Ident, Table};

/// The scripts of this file, validated together.
fn fidelity_scripts() -> Vec<Script> {
    let product = common::table("Product");
    let mut widened = product.clone();
    for c in widened.columns.iter_mut() {
        match c.name.as_str() {
            "Size" => c.sql_type = "nvarchar(200)".into(),
            "Weight" => c.sql_type = "decimal(12,2)".into(),
            _ => {}
        }
    }
    let mut s = Deployment::upgrade(&product, &widened, &common::options()).unwrap();
    s.name = "upgrade-widening".into();
    vec![s]
}

#[test]
fn issue15_capture_fires_first_and_refuses_another_first_trigger() {
    let d = Deployment::generate(&[common::table("Person")], &common::options()).unwrap();
    let install = d.install.render();
    assert!(!install.contains("N'Last'"), "never set to fire last");
    assert_eq!(install.matches("@order = N'First'").count(), 3);
    assert!(install.contains("is already set to fire first"));
}

#[test]
fn issue15_the_ddl_guard_refuses_column_name_and_schema_changes_of_captured_tables() {
    let d = Deployment::generate(&common::tables(), &common::options()).unwrap();
    let batches = d.install.batches();
    let guard = batches
        .iter()
        .position(|b| {
            b.sql
                .starts_with("CREATE TRIGGER [rowtrail_ddl_guard] ON DATABASE")
        })
        .expect("the install creates the DDL guard");
    let sql = &batches[guard].sql;
    assert!(
        sql.contains("FOR ALTER_TABLE, RENAME, ALTER_SCHEMA, DROP_TABLE"),
        "{sql}"
    );
    assert!(
        sql.contains("ROLLBACK TRANSACTION;") && sql.contains("rowtrail sql upgrade --table %s")
    );
    // Its own staging changes pass, and a table whose capture trigger is dropped (the upgrade
    // in progress) is not compared.
    assert!(sql.contains("= N'rowtrail' RETURN;"));
    assert!(sql.contains(
        "JOIN sys.triggers AS tr ON tr.name COLLATE DATABASE_DEFAULT = r.[trigger_name]"
    ));
    // Every table's column snapshot is taken after its trigger, and before the guard exists.
    for t in &d.tables {
        let snap = batches
            .iter()
            .position(|b| b.sql.contains(&ddl_guard::refresh_snapshot(t)))
            .unwrap_or_else(|| panic!("no snapshot of {}", t.table.name));
        let trig = batches
            .iter()
            .position(|b| {
                b.sql
                    .starts_with(&format!("CREATE TRIGGER {}", t.trigger_name()))
            })
            .unwrap();
        assert!(trig < snap && snap < guard, "{}", t.table.name);
    }
    // The guard is dropped before the first table's objects are replaced.
    let drop = batches
        .iter()
        .position(|b| b.sql.contains(&ddl_guard::drop_guard()))
        .unwrap();
    let first_table = batches
        .iter()
        .position(|b| b.sql.contains("does not exist in this database"))
        .unwrap();
    assert!(drop < first_table);
    // The uninstall removes the guard with the last table.
    assert!(d
        .uninstall
        .render()
        .contains("DROP TRIGGER [rowtrail_ddl_guard] ON DATABASE;"));
}

#[test]
fn issue15_a_widening_upgrade_runs_while_staging_holds_rows() {
    let s = &fidelity_scripts()[0];
    let text = s.render();
    assert!(
        !text.contains("holds rows and a column''s type changed"),
        "{text}"
    );
    assert!(text.contains("ALTER COLUMN [Size] nvarchar(200) NULL;"));
    assert!(text.contains("ALTER COLUMN [Weight] decimal(12,2) NULL;"));
    assert!(
        text.contains("DELETE FROM [rowtrail].[rowtrail_columns]"),
        "the snapshot is taken anew"
    );
    insta::assert_snapshot!("mssql-upgrade-widening", text);
    // Anything that is not a widening still waits for staging to drain.
    let product = common::table("Product");
    let mut narrowed = product.clone();
    narrowed
        .columns
        .iter_mut()
        .find(|c| c.name.as_str() == "Size")
        .unwrap()
        .sql_type = "nvarchar(2)".into();
    let s = Deployment::upgrade(&product, &narrowed, &common::options()).unwrap();
    assert!(s
        .render()
        .contains("holds rows and a column''s type changed"));
}

#[test]
fn issue15_every_fidelity_script_parses_in_scriptdom() {
    let scripts = fidelity_scripts();
    let summary = common::scriptdom("fidelity", &scripts);
    assert!(
        summary.starts_with(&format!("validated {} scripts", scripts.len()))
            && summary.contains(" 0 errors"),
        "{summary}"
    );
}

#[allow(dead_code)]
fn ident(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

#[allow(dead_code)]
fn captured(t: &Table) -> Captured {
    Captured::new(t).unwrap()
}
