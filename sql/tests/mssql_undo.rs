//! The T-SQL undo scripts pass Microsoft's parser (ScriptDom, TSql150Parser) like every other
//! generated script: every realistic table, every kind of step, every conflict mode, hostile
//! names and hostile text.

mod common;

use rowtrail_sql::mssql::script::split_batches;
use rowtrail_sql::mssql::types::MssqlType;
use rowtrail_sql::mssql::undo::{order_for_foreign_keys, script, ForeignKey};
use rowtrail_sql::mssql::Script;
use rowtrail_sql::undo::{OnConflict, ScriptStep, Step};
use rowtrail_sql::{Column, Ident, Table, TableName, Value};

/// A value of column `c`'s type; `n` varies keys.
fn sample(c: &Column, n: i64) -> Value {
    let base = MssqlType::parse(&c.sql_type)
        .map(|t| t.base)
        .unwrap_or_default();
    match base.as_str() {
        "" => Value::Null,
        "bit" => Value::Integer(1),
        "tinyint" | "smallint" | "int" | "bigint" | "sql_variant" => Value::Integer(n),
        "decimal" | "numeric" => Value::Decimal(format!("-{n}.05")),
        "money" | "smallmoney" => Value::Decimal(format!("{n}.1234")),
        "float" | "real" => Value::Real(0.1 * n as f64),
        "date" => Value::DateTime("2024-02-29".into()),
        "time" => Value::DateTime("23:59:59.9999999".into()),
        "datetime2" => Value::DateTime("0001-01-01T00:00:00.0000001".into()),
        "datetime" => Value::DateTime("1753-01-01T00:00:00.003".into()),
        "smalldatetime" => Value::DateTime("2079-06-06T23:59:00".into()),
        "datetimeoffset" => Value::DateTime("2024-03-11T05:00:00.5000000-14:00".into()),
        "uniqueidentifier" => Value::Uuid([n as u8; 16]),
        "binary" | "varbinary" | "rowversion" | "timestamp" | "hierarchyid" | "geometry"
        | "geography" => Value::Blob(vec![0, 0xff, n as u8]),
        // Text that would split a script if it reached it raw: quotes, a GO line, sqlcmd
        // commands, a variable, comment markers, NUL.
        _ => Value::text(&format!(
            "it's {n}\nGO\n:!! rm -rf /\r\n$(x) -- /* */ \u{0} 😀 "
        )),
    }
}

fn row(t: &Table, n: i64) -> Vec<Value> {
    t.columns.iter().map(|c| sample(c, n)).collect()
}

/// An insert, an update and a delete of `t` in each conflict mode.
fn scripts_for(t: &Table, label: &str) -> Vec<Script> {
    let (a, b) = (row(t, 1), row(t, 2));
    let steps = [
        ScriptStep {
            comment: "undo a delete",
            step: Step {
                table: t,
                expect: None,
                target: Some(&a),
                rowid: None,
            },
        },
        ScriptStep {
            comment: "undo an update",
            step: Step {
                table: t,
                expect: Some(&b),
                target: Some(&a),
                rowid: None,
            },
        },
        ScriptStep {
            comment: "undo an insert\nGO",
            step: Step {
                table: t,
                expect: Some(&b),
                target: None,
                rowid: None,
            },
        },
    ];
    [OnConflict::Stop, OnConflict::Skip, OnConflict::Force]
        .iter()
        .map(|&mode| {
            let mut s = script(&format!("undo of {label}\n:!! not a command"), &steps, mode)
                .expect("renders");
            s.name = format!("undo-{label}-{mode:?}").to_lowercase();
            s
        })
        .collect()
}

#[test]
fn undo_scripts_for_every_realistic_table_parse_in_scriptdom() {
    let mut scripts = Vec::new();
    for t in common::tables() {
        // Tables rowtrail captures as generated (computed columns of unknown type left out).
        let captured = rowtrail_sql::mssql::Captured::new(&t)
            .expect("captured")
            .table;
        scripts.extend(scripts_for(&captured, captured.name.name.as_str()));
    }
    for s in &scripts {
        let text = s.render();
        assert_eq!(
            split_batches(&text).len(),
            1,
            "{}: sqlcmd sees one batch",
            s.name
        );
    }
    let summary = common::scriptdom("undo", &scripts);
    eprintln!("ScriptDom: {summary}");
    assert!(
        summary.starts_with(&format!(
            "validated {} scripts, {} batches, 0 errors",
            scripts.len(),
            scripts.len()
        )),
        "{summary}"
    );
}

#[test]
fn undo_scripts_with_hostile_names_parse_in_scriptdom() {
    let names = [
        "]",
        "a]b",
        "a'b",
        "a\"b",
        "a b",
        "a\nb",
        "-- x",
        "/* x",
        "ünï 😀",
        "N'x'",
        "'; DROP TABLE t; --",
    ];
    let mut scripts = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let mut id = Column::new(Ident::new(format!("{n}id")).unwrap(), "int", false);
        id.identity = true;
        let t = Table {
            name: TableName {
                schema: Some(Ident::new(*n).unwrap()),
                name: Ident::new(format!("{n}{i}")).unwrap(),
            },
            columns: vec![
                id,
                Column::new(Ident::new(*n).unwrap(), "nvarchar(max)", true),
                Column::new(
                    Ident::new(format!("{n}x")).unwrap(),
                    "datetimeoffset(3)",
                    true,
                ),
            ],
            primary_key: vec![0],
            unique_keys: vec![],
            rowid: false,
        };
        scripts.extend(scripts_for(&t, &format!("hostile{i}")));
    }
    let summary = common::scriptdom("undo-hostile", &scripts);
    assert!(summary.contains(" 0 errors"), "{summary}");
}

#[test]
fn foreign_key_order_then_render_parses() {
    let header = common::table("SalesOrderHeader");
    let detail = common::table("SalesOrderDetail");
    let fks = [ForeignKey {
        child: detail.name.clone(),
        parent: header.name.clone(),
        child_columns: vec![],
        parent_columns: vec![],
    }];
    let (h, d) = (row(&header, 3), row(&detail, 4));
    let steps = [
        ScriptStep {
            comment: "re-insert detail",
            step: Step {
                table: &detail,
                expect: None,
                target: Some(&d),
                rowid: None,
            },
        },
        ScriptStep {
            comment: "re-insert header",
            step: Step {
                table: &header,
                expect: None,
                target: Some(&h),
                rowid: None,
            },
        },
    ];
    let ordered = order_for_foreign_keys(&steps, &fks);
    assert_eq!(ordered[0].comment, "re-insert header");
    let s = script("fk order", &ordered, OnConflict::Stop).unwrap();
    let text = &s.batches()[0].sql;
    assert!(
        text.find("INSERT INTO [Sales].[SalesOrderHeader]")
            < text.find("INSERT INTO [Sales].[SalesOrderDetail]")
    );
    assert!(common::scriptdom("undo-fk", &[s]).contains(" 0 errors"));
}
