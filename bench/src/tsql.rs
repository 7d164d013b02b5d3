//! T-SQL generation for 300 tables: what `rowtrail sql generate --engine mssql --from-ddl` does
//! for a database of 300 tables — read the CREATE TABLE script (SSMS style, 12 columns of mixed
//! types per table, a primary key), generate the deployment, and render the install and
//! uninstall scripts. The median of several runs.

use std::fmt::Write as _;

use anyhow::{ensure, Result};
use rowtrail_sql::mssql::{Deployment, Options};

use crate::fixture::{median, timed};
use crate::report::{Figure, Target};
use crate::Settings;

/// A DDL script defining `tables` tables, as SSMS scripts them.
fn ddl(tables: usize) -> String {
    const TYPES: &[&str] = &[
        "[nvarchar](50) NOT NULL",
        "[decimal](18, 4) NULL",
        "[datetime2](7) NOT NULL",
        "[varchar](200) NULL",
        "[bit] NOT NULL",
        "[uniqueidentifier] NULL",
        "[money] NULL",
        "[varbinary](64) NULL",
        "[bigint] NOT NULL",
        "[float] NULL",
        "[date] NULL",
    ];
    let mut s = String::from("SET ANSI_NULLS ON\nGO\n");
    for t in 0..tables {
        let schema = ["Sales", "Person", "Production", "HR"][t % 4];
        let _ = writeln!(s, "CREATE TABLE [{schema}].[Table{t:03}](");
        let _ = writeln!(s, "\t[Table{t:03}ID] [int] IDENTITY(1,1) NOT NULL,");
        for (c, ty) in TYPES.iter().enumerate() {
            let _ = writeln!(s, "\t[Column{c:02}] {ty},");
        }
        let _ = writeln!(
            s,
            " CONSTRAINT [PK_Table{t:03}] PRIMARY KEY CLUSTERED ([Table{t:03}ID] ASC)\n) ON [PRIMARY]\nGO\n"
        );
    }
    s
}

/// Parses, generates and renders; returns the rendered size in bytes.
fn generate(text: &str) -> Result<usize> {
    let tables: Vec<_> = rowtrail_sql::ddl::parse_mssql(text)?;
    let d = Deployment::generate(&tables, &Options::default())?;
    Ok(d.install.render().len() + d.uninstall.render().len())
}

/// The T-SQL generation scenario.
pub fn run(s: &Settings) -> Result<Vec<Figure>> {
    let tables = 300;
    let reps = if s.quick { 1 } else { 5 };
    let text = ddl(tables);
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..reps {
        let (secs, n) = timed(|| generate(&text))?;
        times.push(secs);
        bytes = n;
    }
    ensure!(bytes > 0, "nothing was generated");
    Ok(vec![Figure::new(
        "tsql",
        format!("T-SQL generation for {tables} tables (parse, generate, render)"),
        median(&times),
        "s",
        Target::AtMost(1.0),
        format!(
            "median of {reps}; {:.1} MB of T-SQL from {:.0} kB of DDL",
            bytes as f64 / 1e6,
            text.len() as f64 / 1e3
        ),
    )])
}
