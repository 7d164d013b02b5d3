//! Figures for SQL Server that need no server: how fast cells of every captured type convert to
//! archive values, and how long the generated T-SQL takes to render.
//!
//! `cargo run --release -p rowtrail-reader --example mssql_figures`

use std::borrow::Cow;
use std::time::Instant;

use rowtrail_reader::mssql::convert::value_of;
use rowtrail_sql::mssql::{undo, Deployment, Options};
use rowtrail_sql::undo::{OnConflict, ScriptStep, Step};
use rowtrail_sql::{Column, Ident, Table, TableName, Value};
use tiberius::numeric::Numeric;
use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, Time};
use tiberius::{ColumnData, Uuid};

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

fn main() {
    let n = 200_000i64;
    let rows: Vec<Vec<ColumnData<'static>>> = (0..n).map(row).collect();
    let cells = rows[0].len();
    let t = Instant::now();
    let mut converted = 0usize;
    for r in rows {
        for cell in r {
            let v = value_of(cell).expect("converts");
            converted += usize::from(v != Value::Null);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "conversion: {n} staging rows x {cells} cells in {:.3} s = {:.0} rows/s ({:.1} M cells/s); {converted} non-null",
        secs,
        n as f64 / secs,
        n as f64 * cells as f64 / secs / 1e6
    );

    // Install/uninstall scripts for 40 tables of 30 columns.
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
                schema: Some(Ident::new("dbo").unwrap()),
                name: Ident::new(format!("T{t}")).unwrap(),
            },
            columns: (0..30)
                .map(|c| {
                    Column::new(
                        Ident::new(format!("c{c}")).unwrap(),
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
    let t = Instant::now();
    let d = Deployment::generate(&tables, &Options::default()).unwrap();
    let text = d.install.render().len() + d.uninstall.render().len();
    println!(
        "deployment: 40 tables x 30 columns generated and rendered in {:.2} ms ({} KiB of T-SQL)",
        t.elapsed().as_secs_f64() * 1e3,
        text / 1024
    );

    // An undo script of 10,000 steps on one of them.
    let table = &tables[0];
    let images: Vec<Vec<Value>> = (0..10_000)
        .map(|i| {
            table
                .columns
                .iter()
                .enumerate()
                .map(|(c, _)| match c % types.len() {
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
    let t = Instant::now();
    let s = undo::script("figures", &steps, OnConflict::Stop)
        .unwrap()
        .render();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "undo: 10,000 guarded updates of 30 columns rendered in {:.1} ms ({:.0} steps/s, {} MiB of T-SQL)",
        secs * 1e3,
        10_000.0 / secs,
        s.len() >> 20
    );
}
