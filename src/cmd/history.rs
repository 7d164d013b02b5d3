//! `rowtrail history`: one row's life.

use std::process::ExitCode;

use anyhow::Result;
use rowtrail_reader::archive::{Archive, ArchivedChange};
use rowtrail_restore::history;
use rowtrail_sql::printable::printable;
use rowtrail_sql::{Ident, TableName};

use crate::config::Config;

/// Arguments of `rowtrail history`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rowtrail history --table staff --key 3\n  rowtrail history --table order_lines --key 1001 --key 2   # composite key, in key order\n  rowtrail history --table staff --key 3 --all-columns\n  rowtrail history --table staff --key 3 --format json"
)]
pub struct Args {
    /// The table.
    #[arg(long, value_name = "NAME")]
    pub table: String,
    /// The table's schema (SQL Server).
    #[arg(long, value_name = "NAME")]
    pub schema: Option<String>,
    /// Key value, one per key column in key order (the rowid for tables without a key).
    #[arg(long, required = true, value_name = "VALUE")]
    pub key: Vec<String>,
    /// Show unchanged columns too.
    #[arg(long)]
    pub all_columns: bool,
    /// Output format: text, or one JSON object per change (the shape of `rowtrail audit
    /// --format json`).
    #[arg(long, value_enum, default_value = "text")]
    pub format: HistoryFormat,
}

/// Output formats of `rowtrail history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryFormat {
    /// One block per change, for people.
    Text,
    /// JSON Lines, as `rowtrail audit --format json`.
    Json,
}

/// Prints the history.
pub fn run(args: &Args, cfg: &Config) -> Result<ExitCode> {
    let archive = Archive::open_read_only(cfg.archive()?)?;
    let table = TableName {
        schema: args.schema.clone().map(Ident::new).transpose()?,
        name: Ident::new(args.table.clone())?,
    };
    let changes = history::row_history(&archive, &table, &args.key)?;
    if args.format == HistoryFormat::Json {
        for c in &changes {
            outln!("{}", rowtrail_restore::audit::to_json(c, args.all_columns));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if changes.is_empty() {
        outln!(
            "no changes archived for {} with key {}",
            table,
            args.key.join(", ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_history(&changes, args.all_columns)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints changes as a row history, one block per change. Each is numbered by its archive id
/// (the number `rowtrail undo --change` and `audit` take); its sequence number is shown as such.
/// Names, logins, hosts and labels come from the source and are printed with their control
/// characters escaped.
pub fn print_history(changes: &[ArchivedChange], all: bool) -> std::io::Result<()> {
    for c in changes {
        let who = printable(c.login.as_deref().unwrap_or("(unknown login)")).into_owned();
        let mut origin = Vec::new();
        if let Some(h) = &c.host {
            origin.push(format!("host {}", printable(h)));
        }
        if let Some(a) = &c.app {
            origin.push(format!("app {}", printable(a)));
        }
        if let Some(ip) = &c.client_ip {
            origin.push(format!("ip {}", printable(ip)));
        }
        let tx =
            c.tx.as_ref()
                .map(|t| format!(" tx {t}"))
                .unwrap_or_default();
        outln!(
            "#{:<6} {} {:<9} by {who}{}{tx}, seq {}",
            c.id,
            printable(c.at.as_deref().unwrap_or("?")),
            c.op.word(),
            if origin.is_empty() {
                String::new()
            } else {
                format!(" ({})", origin.join(", "))
            },
            c.seq,
        );
        for line in describe(c, all) {
            outln!("         {line}");
        }
    }
    Ok(())
}

/// The columns of a change as text: `col = value` for inserts and deletes, `col: before → after`
/// for updates (unchanged columns only with `all`).
pub fn describe(c: &ArchivedChange, all: bool) -> Vec<String> {
    history::changed_columns(c, all)
        .into_iter()
        .map(|col| {
            let name = printable(&col.column);
            match (&col.before, &col.after) {
                (Some(b), Some(a)) if b.same(a) => format!("{name}: {b}"),
                (Some(b), Some(a)) => format!("{name}: {b} → {a}"),
                (None, Some(v)) | (Some(v), None) => format!("{name} = {v}"),
                (None, None) => name.into_owned(),
            }
        })
        .collect()
}
