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

/// Issue 16: a baseline chunk of a table with a composite key reads up to the chunk size in key
/// order after the last key (typed literals), and corrects each row to the position: rows whose
/// key has a staged image above it are replaced by the earliest such before-image (or left out
/// when it is an insert), matched by the server under the key columns' collations.
#[test]
fn issue16_a_baseline_chunk_is_corrected_to_its_position() {
    let tables = captured(ADVENTUREWORKS);
    let detail = tables
        .iter()
        .find(|t| t.table.name.name.as_str() == "SalesOrderDetail")
        .expect("the fixture has SalesOrderDetail");
    assert!(detail.table.primary_key.len() > 1, "a composite key");
    let chunks = rowtrail_reader::mssql::baseline::sample_chunks(detail).unwrap();
    insta::assert_snapshot!(
        "mssql-baseline-chunk",
        chunks.join("\n\n-- the next chunk\n\n")
    );
}

#[test]
fn issue16_a_table_without_a_primary_key_is_refused_a_baseline_clearly() {
    let tables = captured(ADVENTUREWORKS);
    let heap = tables
        .iter()
        .find(|t| t.table.primary_key.is_empty())
        .expect("the fixture has a heap");
    let e = rowtrail_reader::mssql::baseline::chunk_batch(heap, 10, None, 100)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("has no primary key") && e.contains(&heap.table.name.to_string()),
        "{e}"
    );
}
