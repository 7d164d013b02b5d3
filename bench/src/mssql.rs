//! SQL Server figures that need no server: how fast staged cells of every captured type convert
//! to archive values, how long a deployment's T-SQL takes to generate, and how fast an undo
//! script renders. (SQL Server itself cannot run here; its live figures need one.)

use std::borrow::Cow;

use anyhow::{ensure, Result};
use rowtrail_reader::mssql::convert::value_of;
use rowtrail_sql::mssql::{undo, Deployment, Options};
use rowtrail_sql::undo::{OnConflict, ScriptStep, Step};
use rowtrail_sql::{Column, Ident, Table, TableName, Value};
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, Time};
use tiberius::{ColumnData, Uuid};

use crate::fixture::timed;
use crate::report::{Figure, Target};
use crate::Settings;

/// One staging row as the driver hands it over: ten metadata cells and a typical order line.
fn row(i: i64) -> Vec<ColumnData<'static>> {
    let dt2 = DateTime2::new(Date::new(739_000), Time::new(452_961_234_567 + i as u64, 7));
    vec![
        ColumnData::I64(Some(i)),
        ColumnData::String(Some(Cow::Borrowed("U"))),
        ColumnData::String(Some(Cow::Borrowed("A"))),
        ColumnData::I64(Some(i / 3)),
        ColumnData::I64(Some(i / 3 + 1)),
        ColumnData::DateTime2(Some(dt2)),
        ColumnData::String(Some(Cow::Borrowed("CORP\\app_user"))),
        ColumnData::String(Some(Cow::Borrowed("web-03"))),
        ColumnData::String(Some(Cow::Borrowed("OrderService"))),
        ColumnData::String(Some(Cow::Borrowed("10.1.2.3"))),
        ColumnData::I32(Some(i as i32)),
        ColumnData::Numeric(Some(Numeric::new_with_scale(i as i128 * 10_001, 4))),
        ColumnData::F64(Some(i as f64 / 7.0)),
        ColumnData::DateTimeOffset(Some(DateTimeOffset::new(dt2, 330))),
        ColumnData::DateTime(Some(DateTime::new(45_000, (i % 25_000_000) as u32))),
        ColumnData::String(Some(Cow::Owned(format!("customer note {i}")))),
        ColumnData::Binary(Some(Cow::Owned(i.to_le_bytes().to_vec()))),
        ColumnData::Guid(Some(Uuid::from_u128(i as u128))),
        ColumnData::Bit(Some(i % 2 == 0)),
        ColumnData::String(None),
    ]
}

/// Runs the scenario.
pub fn run(s: &Settings) -> Result<Vec<Figure>> {
    let n: i64 = if s.quick { 2_000 } else { 200_000 };
    let rows: Vec<Vec<ColumnData<'static>>> = (0..n).map(row).collect();
    let cells = rows[0].len();
    let (secs, converted) = timed(|| {
        let mut converted = 0usize;
        for r in rows {
            for cell in r {
                converted +=
                    usize::from(value_of(cell).map_err(anyhow::Error::msg)? != Value::Null);
            }
        }
        Ok(converted)
    })?;
    ensure!(converted > 0, "nothing converted");
    let mut figures = vec![Figure::new(
        "mssql-convert",
        format!("SQL Server staged cells to archive values ({cells} cells per row)"),
        n as f64 / secs,
        "rows/s",
        Target::Report,
        format!(
            "{n} rows in {secs:.3} s, {:.1} M cells/s",
            n as f64 * cells as f64 / secs / 1e6
        ),
    )];

    // Install and uninstall scripts for 40 tables of 30 columns.
    let types = [
        "int",
        "nvarchar(100)",
        "decimal(19,4)",
        "datetime2(7)",
        "varbinary(max)",
        "uniqueidentifier",
    ];
    let tables: Vec<Table> = (0..40)
        .map(|t| Table {
            name: TableName {
                schema: Some(Ident::new("dbo").expect("a name")),
                name: Ident::new(format!("T{t}")).expect("a name"),
            },
            columns: (0..30)
                .map(|c| {
                    Column::new(
                        Ident::new(format!("c{c}")).expect("a name"),
                        types[c % types.len()],
                        c != 0,
                    )
                })
                .collect(),
            primary_key: vec![0],
            unique_keys: vec![],
            rowid: false,
        })
        .collect();
    let (secs, text) = timed(|| {
        let d = Deployment::generate(&tables, &Options::default())?;
        Ok(d.install.render().len() + d.uninstall.render().len())
    })?;
    figures.push(Figure::new(
        "mssql-deploy",
        "SQL Server install and uninstall scripts for 40 tables of 30 columns".to_string(),
        secs * 1e3,
        "ms",
        Target::Report,
        format!("{} KiB of T-SQL", text / 1024),
    ));

    // An undo script of guarded updates on one of them.
    let steps_n: i64 = if s.quick { 500 } else { 10_000 };
    let table = &tables[0];
    let images: Vec<Vec<Value>> = (0..steps_n)
        .map(|i| {
            (0..table.columns.len())
                .map(|c| match c % types.len() {
                    0 => Value::Integer(i),
                    1 => Value::text("a 'quoted' note"),
                    2 => Value::Decimal("12.3400".into()),
                    3 => Value::DateTime("2024-03-10T12:34:56.1234567".into()),
                    4 => Value::Blob(vec![1, 2, 3]),
                    _ => Value::Uuid([7; 16]),
                })
                .collect()
        })
        .collect();
    let steps: Vec<ScriptStep<'_>> = images
        .iter()
        .map(|r| ScriptStep {
            comment: "undo",
            step: Step {
                table,
                expect: Some(r),
                target: Some(r),
                rowid: None,
            },
        })
        .collect();
    let (secs, bytes) = timed(|| {
        Ok(undo::script("figures", &steps, OnConflict::Stop)?
            .render()
            .len())
    })?;
    figures.push(Figure::new(
        "mssql-undo-render",
        format!("SQL Server undo script: {steps_n} guarded updates of 30 columns rendered"),
        steps_n as f64 / secs,
        "steps/s",
        Target::Report,
        format!("{:.1} ms, {} KiB of T-SQL", secs * 1e3, bytes / 1024),
    ));
    Ok(figures)
}
