//! `rowtrail verify`: check the archive.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use rowtrail_reader::archive::{Archive, Digest};

use crate::config::Config;

/// Arguments of `rowtrail verify`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rowtrail verify\n  rowtrail verify --digest > digest.txt         # keep it somewhere else\n  rowtrail verify --against \"$(cat digest.txt)\"  # detects truncation or rewriting since"
)]
pub struct Args {
    /// Print only the digest (for keeping elsewhere).
    #[arg(long)]
    pub digest: bool,
    /// Also check that the state this digest pinned is intact.
    #[arg(long, value_name = "DIGEST")]
    pub against: Option<String>,
}

/// Verifies the archive; exit 1 when anything is wrong.
pub fn run(args: &Args, cfg: &Config) -> Result<ExitCode> {
    let against = args
        .against
        .as_deref()
        .map(|d| d.parse::<Digest>().map_err(|e| anyhow!(e)))
        .transpose()?;
    let archive = Archive::open_read_only(cfg.archive()?)?;
    let report = archive.verify(against.as_ref())?;
    if args.digest && report.ok() {
        match &report.digest {
            Some(d) => outln!("{d}"),
            None => outln!("rowtrail2-0-0-{0}-0-{0}", "0".repeat(64)),
        }
        return Ok(ExitCode::SUCCESS);
    }
    for p in &report.problems {
        outln!("PROBLEM: {p}");
    }
    if report.ok() {
        outln!(
            "archive verified: {} change(s) from {} source(s); hash chain intact{}",
            report.changes,
            report.sources,
            if against.is_some() {
                "; digest matches"
            } else {
                ""
            }
        );
        if let Some(d) = &report.digest {
            outln!("digest: {d}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        outln!(
            "archive verification FAILED: {} problem(s)",
            report.problems.len()
        );
        if !report.lost.is_empty() {
            let ranges: Vec<String> = report
                .lost
                .iter()
                .map(|&(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
            let lost: i64 = report.lost.iter().map(|&(lo, hi)| hi - lo + 1).sum();
            outln!(
                "the file is damaged: {} change(s) can still be read (checked above), {lost} cannot \
                 (ids {}); restore the archive from a backup, and keep this file: what it still \
                 holds can be compared with the backup",
                report.changes,
                ranges.join(", ")
            );
        }
        Ok(ExitCode::from(crate::EXIT_ERROR))
    }
}
