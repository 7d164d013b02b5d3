//! `rowtrail audit`: who changed what, filtered, streamed as a table, JSON lines or CSV.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;
use rowtrail_reader::archive::Archive;
use rowtrail_restore::audit::{self, AuditFilter};
use rowtrail_restore::RestoreError;
use rowtrail_sql::printable::printable;

use crate::config::Config;

/// Output formats of `audit` and `history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON object per line (JSON Lines); the shape is in docs/audit-and-undo.md.
    Json,
    /// Comma-separated values with a header line.
    Csv,
}

/// Arguments of `rowtrail audit`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rowtrail audit --user alice --since 2026-11-21T14:05:00Z\n  rowtrail audit --table staff --op delete --format csv > deletes.csv\n  rowtrail audit --tx 81723 --format json | jq .columns\n  rowtrail audit --client-ip 192.0.2.10 --limit 100                 # first page\n  rowtrail audit --client-ip 192.0.2.10 --limit 100 --after-id 4711 # next page\n\nResults stream in archive order (oldest first), read a page at a time; nothing is loaded\nwhole. Times are UTC."
)]
pub struct Args {
    /// Only this table.
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// The table's schema (SQL Server).
    #[arg(long, value_name = "NAME")]
    pub schema: Option<String>,
    /// Only changes by this login.
    #[arg(long, visible_alias = "login", value_name = "LOGIN")]
    pub user: Option<String>,
    /// Only changes from this client address.
    #[arg(long, value_name = "ADDRESS")]
    pub client_ip: Option<String>,
    /// Only this operation (`keychange`: SQL Server only, an unpaired image of a multi-row key change).
    #[arg(long, value_parser = audit::OPS)]
    pub op: Option<String>,
    /// Only changes at or after this UTC time (2026-11-21T14:05:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only changes before this UTC time.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this transaction.
    #[arg(long, value_name = "ID")]
    pub tx: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// At most this many changes.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Start after this archive change id (the next page of an earlier listing).
    #[arg(long, value_name = "ID")]
    pub after_id: Option<i64>,
    /// Show unchanged columns of updates too.
    #[arg(long)]
    pub all_columns: bool,
    /// Changes read from the archive per query.
    #[arg(long, default_value_t = 1000, value_name = "N", hide = true)]
    pub page_size: u64,
}

/// Lists the changes.
pub fn run(args: &Args, cfg: &Config) -> Result<ExitCode> {
    let archive = Archive::open_read_only(cfg.archive()?)?;
    let filter = AuditFilter {
        table: args.table.clone(),
        schema: args.schema.clone(),
        login: args.user.clone(),
        client_ip: args.client_ip.clone(),
        op: args.op.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        tx: args.tx.clone(),
        after_id: args.after_id,
        limit: args.limit,
    };
    let out = std::io::stdout();
    let mut out = BufWriter::new(out.lock());
    let result = (|| -> Result<(u64, Option<i64>), RestoreError> {
        match args.format {
            Format::Table => writeln!(
                out,
                "{:>7}  {:<24}  {:<14} {:<9} {:<14} {:<15} {:<10} {:<12} CHANGES",
                "ID", "AT (UTC)", "TABLE", "OP", "LOGIN", "CLIENT IP", "TX", "KEY"
            )?,
            Format::Csv => writeln!(out, "{}", audit::CSV_HEADER)?,
            Format::Json => {}
        }
        audit::stream(&archive, &filter, args.page_size.max(1), &mut |c| {
            match args.format {
                Format::Json => writeln!(out, "{}", audit::to_json(c, args.all_columns))?,
                Format::Csv => writeln!(out, "{}", audit::to_csv(c, args.all_columns))?,
                Format::Table => {
                    let opt = |v: &Option<String>| {
                        v.as_deref()
                            .map_or("-".into(), |t| printable(t).into_owned())
                    };
                    let tx = opt(&c.tx_text());
                    writeln!(
                        out,
                        "{:>7}  {:<24}  {:<14} {:<9} {:<14} {:<15} {:<10} {:<12} {}",
                        c.id,
                        opt(&c.at),
                        printable(&c.table.name.to_string()),
                        c.op.word(),
                        opt(&c.login),
                        opt(&c.client_ip),
                        tx,
                        printable(&audit::key_text(c)),
                        printable(&audit::columns_text(c, args.all_columns))
                    )?
                }
            }
            Ok(())
        })
    })();
    let flushed = out.flush();
    match result {
        Err(RestoreError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS)
        }
        Err(e) => return Err(e.into()),
        Ok((count, last)) => {
            if let Err(e) = flushed {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(ExitCode::SUCCESS);
                }
                return Err(e.into());
            }
            if let (Some(limit), Some(last)) = (args.limit, last) {
                if count == limit {
                    eprintln!("({count} shown; the next page: --after-id {last})");
                }
            }
            if count == 0 && args.format == Format::Table {
                eprintln!("no archived change matches");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
