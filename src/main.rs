//! `rowtrail`: trigger-based change capture with an audit archive and guarded undo.
//!
//! This binary is a thin front: it parses the command line and the config, then calls the
//! crates (`rowtrail-sql`, `rowtrail-reader`, `rowtrail-watcher`, `rowtrail-restore`).

mod cmd;
mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code: the command failed.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: an undo found conflicts and refused.
pub const EXIT_CONFLICT: u8 = 3;

const AFTER_HELP: &str = "\
Examples:
  rowtrail demo                                  # see it all work, no server needed
  rowtrail init --source app.db --archive trail.db
  rowtrail sql generate --out scripts/           # review what will be installed
  rowtrail sql install                           # capture every table of the source
  rowtrail watch                                 # run the watcher (Ctrl-C stops it)
  rowtrail status                                # is the watcher healthy?
  rowtrail history --table staff --key 3         # one row's life
  rowtrail verify --digest                       # check the archive's hash chain

Config: ./rowtrail.toml, or --config FILE, or $ROWTRAIL_CONFIG. Exit codes: 0 ok, 1 error,
2 usage, 3 undo conflict.";

/// Trigger-based change capture for SQL Server and SQLite, with a tamper-evident archive.
#[derive(Debug, Parser)]
#[command(name = "rowtrail", version, about, after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    /// Config file (default: ./rowtrail.toml, or $ROWTRAIL_CONFIG).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// SQLite source database, overriding the config.
    #[arg(long, global = true, value_name = "FILE")]
    source: Option<PathBuf>,
    /// Archive file, overriding the config.
    #[arg(long, global = true, value_name = "FILE")]
    archive: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a commented rowtrail.toml.
    Init(cmd::init::Args),
    /// Generate, install or remove the capture scripts.
    #[command(subcommand)]
    Sql(cmd::sql::SqlCommand),
    /// Move staged changes into the archive once, then exit (for cron and scripts).
    Read(cmd::read::Args),
    /// Run the watcher daemon: wake on signals, probes and a poll timer; move staged changes.
    Watch(cmd::watch::Args),
    /// Wake the running watcher (optionally wait until staging is drained).
    Signal(cmd::watch::SignalArgs),
    /// Show the running watcher's status.
    Status(cmd::watch::StatusArgs),
    /// Show one row's history: every change with who, when, from where.
    History(cmd::history::Args),
    /// List changes filtered by table, login, client IP, operation, time and transaction.
    Audit(cmd::audit::Args),
    /// Undo changes, newest first, with guards; dry run unless --apply.
    Undo(cmd::undo::Args),
    /// Re-apply what an undo run undid, with the same guards; dry run unless --apply.
    Redo(cmd::undo::RedoArgs),
    /// Verify the archive: hash chain, sequence order, images; print or check a digest.
    Verify(cmd::verify::Args),
    /// Run a self-contained demonstration on SQLite (no server, no arguments needed).
    Demo(cmd::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = config::Overrides {
        config: cli.config.clone(),
        source: cli.source.clone(),
        archive: cli.archive.clone(),
    };
    let result = match &cli.command {
        Command::Init(a) => cmd::init::run(a, &overrides),
        Command::Demo(a) => {
            cmd::logging::init(config::LogFormat::Text);
            cmd::demo::run(a)
        }
        other => match config::Config::load(&overrides) {
            Err(e) => Err(e),
            Ok(cfg) => {
                cmd::logging::init(cfg.log_format);
                match other {
                    Command::Sql(c) => cmd::sql::run(c, &cfg),
                    Command::Read(a) => cmd::read::run(a, &cfg),
                    Command::Watch(a) => cmd::watch::run(a, &cfg),
                    Command::Signal(a) => cmd::watch::signal(a, &cfg),
                    Command::Status(a) => cmd::watch::status(a, &cfg),
                    Command::History(a) => cmd::history::run(a, &cfg),
                    Command::Audit(a) => cmd::audit::run(a, &cfg),
                    Command::Undo(a) => cmd::undo::run(a, &cfg),
                    Command::Redo(a) => cmd::undo::redo(a, &cfg),
                    Command::Verify(a) => cmd::verify::run(a, &cfg),
                    Command::Init(_) | Command::Demo(_) => unreachable!("handled above"),
                }
            }
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rowtrail: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
