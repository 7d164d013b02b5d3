//! `rowtrail`: trigger-based change capture with an audit archive and guarded undo.
//!
//! This binary is a thin front: it parses the command line and the config, then calls the
//! crates (`rowtrail-sql`, `rowtrail-reader`, `rowtrail-watcher`, `rowtrail-restore`).

/// Like `println!`, for a command's output on stdout: a write that fails (a reader that went
/// away, `rowtrail audit | head`) returns the error from the enclosing function instead of
/// panicking; a closed pipe then ends the command quietly (see [`main`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            return Err(e.into());
        }
    }};
}

/// Like `print!`, as [`outln!`] is like `println!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            return Err(e.into());
        }
    }};
}

mod cmd;
mod config;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Every exit code rowtrail uses, in one place. 0 is success (`ExitCode::SUCCESS`); `status`
// follows monitoring-plugin conventions for 0 and 1.

/// Exit code: the command failed.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `status`: the watcher works, but an alert fires or the last pass failed.
pub const EXIT_DEGRADED: u8 = 1;
/// Exit code: the command line is wrong (clap's own code for usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: an undo found conflicts and refused.
pub const EXIT_CONFLICT: u8 = 3;
/// Exit code: `rowtrail compare` found differences.
pub const EXIT_DIFFERENCES: u8 = 4;
/// Exit code of `status`: the source is down, or no watcher answers.
pub const EXIT_DOWN: u8 = 5;

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
  rowtrail replica create --to standby.db        # a readable copy, kept current by `replica apply`
  rowtrail restore --as-of 2026-12-03T09:00:00Z --out then.db   # the tables as they were

Config: ./rowtrail.toml, or --config FILE, or $ROWTRAIL_CONFIG. Exit codes: 0 ok, 1 error
(`status`: degraded), 2 usage, 3 undo conflict, 4 differences found (`compare`), 5 down
(`status`).";

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
    /// Log what the command does at debug level (as RUST_LOG=debug; RUST_LOG, when set, wins).
    #[arg(long, short = 'v', global = true)]
    verbose: bool,
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
    /// Re-apply to a source restored from an old backup what the archive holds after the
    /// backup point, with redo's guards; dry run unless --apply.
    Reapply(cmd::undo::ReapplyArgs),
    /// Verify the archive: hash chain, sequence order, images; print or check a digest.
    Verify(cmd::verify::Args),
    /// Take a baseline of the captured tables into the archive, online.
    Baseline(cmd::baseline::Args),
    /// Build, apply to, inspect, pause, resume or rewind a replica of the source.
    #[command(subcommand)]
    Replica(cmd::replica::ReplicaCommand),
    /// Rebuild the captured tables as of an earlier moment (a time, seq:N, before-tx:ID) into a new file.
    Restore(cmd::replica::RestoreArgs),
    /// Compare a replica with its source; exit 4 when they differ; repair on request.
    Compare(cmd::compare::Args),
    /// Promote a replica when the primary failed: fence, drain, apply, promote (dry run unless --apply).
    Failover(cmd::failover::Args),
    /// Give the primary's role back to the repaired old primary (dry run unless --apply).
    Handback(cmd::failover::HandbackArgs),
    /// Print the current primary's connection target (it moves with failovers).
    Primary(cmd::failover::PrimaryArgs),
    /// Run a self-contained demonstration on SQLite (no server, no arguments needed).
    Demo(cmd::demo::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with EXIT_USAGE.
            let _ = e.print();
            return if e.exit_code() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_USAGE)
            };
        }
    };
    let overrides = config::Overrides {
        config: cli.config.clone(),
        source: cli.source.clone(),
        archive: cli.archive.clone(),
    };
    let result = match &cli.command {
        Command::Init(a) => cmd::init::run(a, &overrides),
        Command::Demo(a) => {
            cmd::logging::init(config::LogFormat::Text, cli.verbose);
            cmd::demo::run(a)
        }
        other => match config::Config::load(&overrides) {
            Err(e) => Err(e),
            Ok(cfg) => {
                cmd::logging::init(cfg.log_format, cli.verbose);
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
                    Command::Reapply(a) => cmd::undo::reapply(a, &cfg),
                    Command::Verify(a) => cmd::verify::run(a, &cfg),
                    Command::Baseline(a) => cmd::baseline::run(a, &cfg),
                    Command::Replica(c) => cmd::replica::run(c, &cfg),
                    Command::Restore(a) => cmd::replica::restore(a, &cfg),
                    Command::Compare(a) => cmd::compare::run(a, &cfg),
                    Command::Failover(a) => cmd::failover::run(a, &cfg),
                    Command::Handback(a) => cmd::failover::handback(a, &cfg),
                    Command::Primary(a) => cmd::failover::primary(a, &cfg),
                    Command::Init(_) | Command::Demo(_) => unreachable!("handled above"),
                }
            }
        },
    };
    match result {
        Ok(code) => code,
        // The reader of the output went away (`| head`): stop quietly, as `cat` would.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rowtrail: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Whether `e` is a write to a pipe whose reader has gone.
fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_states_every_exit_code_as_defined() {
        let text = AFTER_HELP.split_whitespace().collect::<Vec<_>>().join(" ");
        for (code, meaning) in [
            (EXIT_ERROR, "error"),
            (EXIT_DEGRADED, "error (`status`: degraded)"),
            (EXIT_USAGE, "usage"),
            (EXIT_CONFLICT, "undo conflict"),
            (4, "differences found"),
            (EXIT_DOWN, "down"),
        ] {
            assert!(
                text.contains(&format!("{code} {meaning}")),
                "{code} {meaning} in {text}"
            );
        }
    }

    #[test]
    fn usage_errors_are_clap_s_code() {
        let e = Cli::try_parse_from(["rowtrail", "--no-such-flag"]).unwrap_err();
        assert_eq!(e.exit_code(), i32::from(EXIT_USAGE));
    }
}
