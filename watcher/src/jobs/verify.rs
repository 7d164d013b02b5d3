//! The verify job: the scheduled backup checks operators of backup systems run daily or weekly.
//!
//! * the archive's hash chain, as `rowtrail verify` checks it, every `[archive] verify_every`;
//! * each replica against its live source, as `rowtrail compare` checks it (by key-range
//!   checksums; rows still changing are not differences), every `verify_every` of its
//!   `[[replica]]`. The replica is not brought forward first: the replicas job does that.
//!
//! The first run of each check is one period after the watcher starts, then one period after
//! the previous run ended. Each run's outcome goes into the status (`checks`: the last run, its
//! result, the next run); a failed one (a broken chain, a replica that differs, or a check that
//! could not run) raises the `verify_failed` alert until a later run of that check passes. The
//! status and the log name tables and counts, never rows.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::select;
use rowtrail_reader::archive::Archive;
use rowtrail_reader::now_micros;
use rowtrail_reader::source::SourceOpener;
use rowtrail_standby::compare;
use rowtrail_standby::replica::Replica;

use super::{Job, JobContext};
use crate::status::CheckState;
use crate::WatcherError;

/// What the verify job checks, and how it reaches the source.
pub struct VerifySettings {
    /// How often the archive's hash chain is verified (`None`: never).
    pub archive_every: Option<Duration>,
    /// Replicas compared with the source, each with its period.
    pub replicas: Vec<(PathBuf, Duration)>,
    /// Opens a fresh connection to the source for each comparison.
    pub open_source: SourceOpener,
}

impl VerifySettings {
    /// Whether there is anything to check.
    pub fn any(&self) -> bool {
        self.archive_every.is_some() || !self.replicas.is_empty()
    }
}

/// What one check looks at.
enum Target {
    /// The archive's hash chain.
    Archive,
    /// A replica against the source.
    Replica(PathBuf),
}

/// The verify job.
pub(crate) struct Verify {
    archive: PathBuf,
    checks: Vec<(Target, Duration)>,
    open_source: SourceOpener,
}

impl Verify {
    /// A job running `settings`' checks against the archive at `archive`.
    pub(crate) fn new(archive: PathBuf, settings: VerifySettings) -> Self {
        let mut checks = Vec::new();
        if let Some(every) = settings.archive_every {
            checks.push((Target::Archive, every));
        }
        for (path, every) in settings.replicas {
            checks.push((Target::Replica(path), every));
        }
        Self {
            archive,
            checks,
            open_source: settings.open_source,
        }
    }
}

impl Target {
    /// `verify` or `compare`, and the file it looks at.
    fn describe(&self, archive: &Path) -> (&'static str, String) {
        match self {
            Target::Archive => ("verify", archive.display().to_string()),
            Target::Replica(p) => ("compare", p.display().to_string()),
        }
    }

    /// Runs the check: `Ok(summary)` when it passed, `Err(summary)` when it failed.
    fn run(&self, archive: &Path, open_source: &mut SourceOpener) -> Result<String, String> {
        let archive = Archive::open_read_only(archive).map_err(|e| e.to_string())?;
        match self {
            Target::Archive => {
                let report = archive.verify(None).map_err(|e| e.to_string())?;
                if report.ok() {
                    Ok(format!(
                        "hash chain intact: {} change(s) from {} source(s)",
                        report.changes, report.sources
                    ))
                } else {
                    Err(format!(
                        "{} problem(s), the first: {}; run `rowtrail verify` for all",
                        report.problems.len(),
                        report.problems.first().cloned().unwrap_or_default()
                    ))
                }
            }
            Target::Replica(path) => {
                let replica = Replica::open(path).map_err(|e| e.to_string())?;
                let mut source = open_source().map_err(|e| e.to_string())?;
                let cmp = compare::compare(&replica, source.as_mut(), &archive)
                    .map_err(|e| e.to_string())?;
                let rows: u64 = cmp.tables.iter().map(|t| t.source_rows).sum();
                if !cmp.differs() {
                    return Ok(format!(
                        "equal to the source: {} table(s), {rows} row(s)",
                        cmp.tables.len()
                    ));
                }
                let differing: Vec<String> = cmp
                    .tables
                    .iter()
                    .filter(|t| t.differs())
                    .map(|t| {
                        format!(
                            "{} ({} missing, {} extra, {} different)",
                            t.table,
                            t.missing.len(),
                            t.extra.len(),
                            t.different.len()
                        )
                    })
                    .collect();
                Err(format!(
                    "differs from the source: {}; `rowtrail compare --replica {}` lists the keys \
                     and repairs",
                    differing.join(", "),
                    path.display()
                ))
            }
        }
    }
}

impl Job for Verify {
    fn name(&self) -> &'static str {
        "verify"
    }

    fn run(mut self: Box<Self>, ctx: JobContext) -> Result<(), WatcherError> {
        let start = Instant::now();
        let mut due: Vec<Instant> = self
            .checks
            .iter()
            .map(|(_, every)| start + *every)
            .collect();
        let due_us = |at: Instant| {
            now_micros() + at.saturating_duration_since(Instant::now()).as_micros() as i64
        };
        ctx.board.update(|s| {
            s.checks = self
                .checks
                .iter()
                .zip(&due)
                .map(|((target, every), at)| {
                    let (check, target) = target.describe(&self.archive);
                    CheckState {
                        check: check.to_string(),
                        target,
                        every_secs: every.as_secs_f64(),
                        next_run_us: due_us(*at),
                        ..CheckState::default()
                    }
                })
                .collect();
        });
        loop {
            let Some(next) = due.iter().min().copied() else {
                return Ok(());
            };
            let now = Instant::now();
            select! {
                recv(ctx.shutdown.signal()) -> _ => return Ok(()),
                default(next.saturating_duration_since(now)) => {}
            }
            if ctx.shutdown.is_triggered() {
                return Ok(());
            }
            for (i, ((target, every), at)) in self.checks.iter().zip(&mut due).enumerate() {
                if *at > Instant::now() {
                    continue;
                }
                let began = Instant::now();
                let outcome = target.run(&self.archive, &mut self.open_source);
                let secs = began.elapsed().as_secs_f64();
                *at = Instant::now() + *every;
                let next_us = due_us(*at);
                let (check, file) = target.describe(&self.archive);
                match &outcome {
                    Ok(m) => tracing::info!(check, target = %file, "scheduled check passed: {m}"),
                    Err(m) => tracing::error!(check, target = %file, "scheduled check FAILED: {m}"),
                }
                ctx.board.update(|s| {
                    let c = &mut s.checks[i];
                    c.runs += 1;
                    c.failures += u64::from(outcome.is_err());
                    c.last_run_us = Some(now_micros());
                    c.last_ok = Some(outcome.is_ok());
                    c.last_result = Some(match &outcome {
                        Ok(m) | Err(m) => m.clone(),
                    });
                    c.last_secs = secs;
                    c.next_run_us = next_us;
                });
                if ctx.shutdown.is_triggered() {
                    return Ok(());
                }
            }
        }
    }
}
