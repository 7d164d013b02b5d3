//! The validation gate: every SQL Server script the tests generate is parsed by Microsoft's
//! ScriptDom (TSql150Parser, under Mono), batch by batch as sqlcmd splits them.

mod common;

use rowtrail_sql::mssql::script::split_batches;
use rowtrail_sql::mssql::{Deployment, Options, Target};

#[test]
fn every_realistic_script_parses_in_scriptdom() {
    let mut scripts = common::realistic_scripts();
    // The same deployment for SQL Server 2012/2014 (transaction id from the DMV).
    let old = Options {
        target: Target::Sql2012,
        ..common::options()
    };
    let d = Deployment::generate(&common::tables(), &old).unwrap();
    let mut legacy = d.install.clone();
    legacy.name = "install-sql2012".into();
    scripts.push(legacy);
    let batches: usize = scripts.iter().map(|s| s.batches().len()).sum();
    let summary = common::scriptdom("realistic", &scripts);
    eprintln!("ScriptDom: {summary}");
    assert!(
        summary.starts_with(&format!(
            "validated {} scripts, {batches} batches, 0 errors",
            scripts.len()
        )),
        "{summary}"
    );
}

#[test]
fn sqlcmd_splits_each_script_into_exactly_its_batches() {
    for s in common::realistic_scripts() {
        let split = split_batches(&s.render());
        assert_eq!(split.len(), s.batches().len(), "{}", s.file_name());
        for (got, want) in split.iter().zip(s.batches()) {
            assert!(
                got.contains(want.sql.trim_end()),
                "{}: batch differs",
                s.file_name()
            );
        }
    }
}

#[test]
fn the_gate_catches_broken_sql() {
    let mut bad = common::realistic_scripts().remove(0);
    bad.name = "broken".into();
    bad.batches[1].sql.push_str("\nSELEC 1 FROM;");
    let r = std::panic::catch_unwind(|| common::scriptdom("broken", &[bad]));
    let msg = *r
        .expect_err("ScriptDom must reject it")
        .downcast::<String>()
        .unwrap();
    assert!(msg.contains("rowtrail-broken.sql: batch 2"), "{msg}");
}
