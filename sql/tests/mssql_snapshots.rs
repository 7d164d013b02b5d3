//! Snapshots of every SQL Server script a DBA would deploy for the realistic tables, so a
//! reviewer sees each change to them. (The same scripts pass the ScriptDom gate.)

mod common;

use rowtrail_sql::mssql::{trigger, Captured, Target};

#[test]
fn deployment_scripts() {
    for s in common::realistic_scripts() {
        insta::assert_snapshot!(format!("mssql-{}", s.name), s.render());
    }
}

#[test]
fn trigger_for_sql_server_2012() {
    let c = Captured::new(&common::table("SalesOrderDetail")).unwrap();
    insta::assert_snapshot!(
        "mssql-trigger-sql2012",
        trigger::create_trigger(&c, Target::Sql2012)
    );
}
