//! Every statement the reader sends to SQL Server parses in Microsoft's ScriptDom
//! (TSql150Parser, under Mono), for every realistic table — the same gate as the generated
//! scripts (`bash scripts/scriptdom/setup.sh` builds the validator).

use rowtrail_reader::mssql::queries;
use rowtrail_reader::source::CapturedTable;
use rowtrail_sql::mssql::Captured;

const ADVENTUREWORKS: &str = include_str!("../../sql/tests/fixtures/adventureworks.sql");
/// Shapes SQL Server treats in ways rowtrail once got wrong (UTF-8 and legacy collations, …).
const FIDELITY: &str = include_str!("../../sql/tests/fixtures/fidelity.sql");

fn captured(ddl: &str) -> Vec<CapturedTable> {
    rowtrail_sql::ddl::parse_mssql(ddl)
        .expect("the fixture parses")
        .iter()
        .map(|t| {
            let c = Captured::new(t).expect("captured");
            CapturedTable {
                table: c.table,
                staging: c.staging,
            }
        })
        .collect()
}

/// Issue 15: `char`/`varchar` reach the reader through the server's conversion to UTF-16
/// (the driver would garble `…_UTF8` collations and fail on legacy code pages), and the
/// fallback read for undecodable text takes every text as its UTF-16 bytes.
#[test]
fn issue15_staging_reads_transcode_narrow_text_on_the_server() {
    let t = &captured(FIDELITY)[0];
    insta::assert_snapshot!(
        "mssql-staging-select-texts",
        format!(
            "{}\n\n{}",
            queries::staging_select(t).unwrap(),
            queries::staging_select_raw(t).unwrap()
        )
    );
}

#[test]
fn every_reader_statement_parses_in_scriptdom() {
    let mut tables = captured(FIDELITY);
    tables.extend(captured(ADVENTUREWORKS));
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
