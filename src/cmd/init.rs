//! `rowtrail init`: write a commented rowtrail.toml.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::config::{Overrides, DEFAULT_FILE};

/// Arguments of `rowtrail init`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  rowtrail init --source app.db --archive /var/lib/rowtrail/trail.db"
)]
pub struct Args {
    /// Where to write the file.
    #[arg(long, default_value = DEFAULT_FILE, value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// The text of a config file for a SQLite source.
pub fn sqlite_config(source: &str, archive: &str) -> String {
    format!(
        "# rowtrail configuration. Relative paths are relative to this file's folder.\n\
         # Environment overrides: ROWTRAIL_SOURCE_PATH, ROWTRAIL_ARCHIVE_PATH, ROWTRAIL_SOCKET.\n\n\
         [source]\n\
         engine = \"sqlite\"\n\
         # The captured database.\n\
         path = {source:?}\n\n\
         [archive]\n\
         # The trace archive (created on first use, mode 0600). Keep it on another disk or host.\n\
         path = {archive:?}\n\
         # Stop (without losing anything) before the archive grows past this size.\n\
         # max_bytes = 10_737_418_240\n\n\
         [watcher]\n\
         # Socket for `rowtrail signal` / `status` (default: a private folder beside the archive).\n\
         # socket = \"/run/rowtrail/watcher.sock\"\n\
         # Safety net: a pass at least this often, even if every signal and probe is missed.\n\
         poll_interval_ms = 1000\n\
         # How often the engine probe (SQLite data_version) looks for new commits.\n\
         probe_interval_ms = 2\n\
         # Staged images per archive transaction.\n\
         batch_size = 5000\n"
    )
}

/// Writes the config file.
pub fn run(args: &Args, o: &Overrides) -> Result<ExitCode> {
    if args.out.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            args.out.display()
        );
    }
    let source = o
        .source
        .as_ref()
        .map_or("app.db".into(), |p| p.display().to_string());
    let archive = o
        .archive
        .as_ref()
        .map_or("trail.db".into(), |p| p.display().to_string());
    std::fs::write(&args.out, sqlite_config(&source, &archive))
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote {}; next: `rowtrail sql generate` to review, `rowtrail sql install` to capture",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
