//! Every statement the reader sends to SQL Server parses in Microsoft's ScriptDom
//! (TSql150Parser, under Mono), for every realistic table — the same gate as the generated
//! scripts (`bash scripts/scriptdom/setup.sh` builds the validator).

use rowtrail_reader::mssql::queries;
use rowtrail_reader::source::CapturedTable;
use rowtrail_sql::mssql::Captured;

const ADVENTUREWORKS: &str = include_str!("../../sql/tests/fixtures/adventureworks.sql");

#[test]
fn every_reader_statement_parses_in_scriptdom() {
    let tables: Vec<CapturedTable> = rowtrail_sql::ddl::parse_mssql(ADVENTUREWORKS)
        .expect("the fixture parses")
        .iter()
        .map(|t| {
            let c = Captured::new(t).expect("captured");
            CapturedTable {
                table: c.table,
                staging: c.staging,
            }
        })
        .collect();
    let statements = queries::all(&tables).unwrap();
    assert!(statements.len() > 50, "{}", statements.len());
    let mut text = String::new();
    for s in &statements {
        // @P1… are the driver's parameters; ScriptDom parses (it does not bind) variables.
        text.push_str(s);
        text.push_str("\nGO\n");
    }
    let summary = rowtrail_tests::scriptdom::validate(&[("reader-queries.sql".into(), text)]);
    assert!(
        summary.starts_with(&format!(
            "validated 1 scripts, {} batches, 0 errors",
            statements.len()
        )),
        "{summary}"
    );
}
