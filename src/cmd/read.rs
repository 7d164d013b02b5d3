//! `rowtrail read`: one drain of staging into the archive.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use rowtrail_reader::archive::Archive;
use rowtrail_reader::lock::ArchiveLock;
use rowtrail_reader::mover;

use crate::config::Config;
use crate::progress::Progress;

/// Arguments of `rowtrail read`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example (cron, every minute):\n  * * * * * rowtrail --config /etc/rowtrail.toml read --quiet\n\n\
A source records which archive its changes go to: a new or emptied archive pointed at a source\n\
another archive already took changes from is refused (restore the archive instead, or pass\n\
--adopt once to start a new one on purpose)."
)]
pub struct Args {
    /// Images per archive transaction (default: the config's batch_size).
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// Print nothing when all is well.
    #[arg(long, short)]
    pub quiet: bool,
    /// Take changes even though the source records that another archive took its earlier ones
    /// (after moving to a new archive on purpose; the earlier changes stay in the other one).
    #[arg(long)]
    pub adopt: bool,
}

/// Opens the archive configured in `cfg` for writing.
pub fn open_archive(cfg: &Config) -> Result<Archive> {
    Ok(Archive::open(cfg.archive()?, &cfg.archive_options())?)
}

/// Drains staging once.
pub fn run(args: &Args, cfg: &Config) -> Result<ExitCode> {
    let batch = args.batch.unwrap_or(cfg.batch_size).max(1);
    let _lock = ArchiveLock::acquire(cfg.archive()?)?;
    let mut source = cfg.source_spec()?.open()?;
    let mut archive = open_archive(cfg)?;
    archive.adopt_sources(args.adopt);
    let started = Instant::now();
    let mut last_report = Instant::now();
    // A bar on a terminal; elsewhere (cron, logs) a line every 2 s unless --quiet.
    let bar = Progress::wanted(args.quiet);
    let total = if bar {
        source.staged_count().ok()
    } else {
        None
    };
    let progress = Progress::new(bar, "archiving", "staged images", total);
    let drained = mover::drain_while(source.as_mut(), &mut archive, batch, &mut |stats| {
        if progress.is_shown() {
            progress.set(stats.images);
            progress.message(format!("{} changes", stats.archived));
        } else if !args.quiet && last_report.elapsed().as_secs() >= 2 {
            eprintln!("  … {} changes archived so far", stats.archived);
            last_report = Instant::now();
        }
        true
    });
    progress.finish();
    let (stats, _) = drained?;
    let secs = started.elapsed().as_secs_f64();
    if !args.quiet {
        let rate = if secs > 0.0 {
            stats.archived as f64 / secs
        } else {
            0.0
        };
        outln!(
            "archived {} change(s) from {} staged image(s) in {:.3} s ({:.0} changes/s){}; staging is drained",
            stats.archived,
            stats.images,
            secs,
            rate,
            if stats.duplicates > 0 {
                format!("; {} already archived by an interrupted pass were skipped", stats.duplicates)
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
