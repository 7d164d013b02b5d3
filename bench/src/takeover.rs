//! Takeover: a failover of a replica that is level with the archive (the recovery time a
//! standby gives when the primary dies), and a handback of as many changes made on the promoted
//! side, guarded row by row, to the repaired primary.
//!
//! The source holds `n` rows with capture installed and a baseline; a replica is built and
//! kept level. The failover is forced (the primary here is a file that still answers) and runs
//! every step: fence, drain, apply, promote, done; the baseline of the new primary taken after
//! it is timed apart. Then `n` rows are updated on the promoted copy, archived, and handed back.

use std::path::Path;
use std::time::Instant;

use anyhow::{ensure, Result};
use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::source::SourceSpec;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_standby::baseline::{self, Silent};
use rowtrail_standby::replica::{self, CreateOptions};
use rowtrail_takeover::probe::{Address, Timeouts};
use rowtrail_takeover::{failover, handback};

use crate::fixture::{self, timed};
use crate::report::{Figure, Target};
use crate::Settings;

/// The takeover scenario.
pub fn run(s: &Settings, dir: &Path) -> Result<Vec<Figure>> {
    let n: i64 = if s.quick { 2_000 } else { 100_000 };
    let source = dir.join("takeover-source.db");
    let archive_path = dir.join("takeover-trail.db");
    let standby = dir.join("takeover-standby.db");
    for p in [&archive_path, &standby] {
        fixture::remove_db(p);
    }
    let conn = fixture::fresh_source(&source, n, true)?;
    let mut archive = Archive::open(&archive_path, &ArchiveOptions::default())?;
    let mut src = SqliteSource::open(&source)?;
    baseline::take(&mut src, &mut archive, None, &mut Silent)?;
    replica::create(
        &standby,
        &archive,
        &CreateOptions::default(),
        &mut |_, _| {},
    )?;
    drop(src);

    // Failover: level replica, every step.
    let req = failover::Request {
        primary: SourceSpec::Sqlite {
            path: source.clone(),
            capture_new_tables: false,
        },
        address: Address::None,
        replicas: vec![standby.clone()],
        to: None,
        force: true,
        automatic: false,
        timeouts: Timeouts::default(),
        last_seen_us: None,
        batch: mover::DEFAULT_BATCH,
        version: "bench".into(),
    };
    let started = Instant::now();
    let mut promoted_at = None;
    let outcome = failover::apply(&mut archive, &req, &mut |step| {
        if step.contains("promoted") {
            promoted_at = Some(started.elapsed().as_secs_f64());
        }
    })?;
    let total = started.elapsed().as_secs_f64();
    let rto = promoted_at.unwrap_or(total);
    ensure!(outcome.takeover.step == "done", "the failover finished");
    drop(conn);

    // Changes on the promoted side, archived, then handed back.
    let b = fixture::open_source(&standby)?;
    b.execute_batch("BEGIN; UPDATE items SET qty = qty + 1; COMMIT;")?;
    drop(b);
    let mut promoted = SqliteSource::open(&standby)?;
    mover::drain(&mut promoted, &mut archive, mover::DEFAULT_BATCH)?;
    drop(promoted);
    let hreq = handback::Request {
        primary: SourceSpec::Sqlite {
            path: standby.clone(),
            capture_new_tables: false,
        },
        to: source.clone(),
        conflicts: None,
        batch: mover::DEFAULT_BATCH,
        version: "bench".into(),
    };
    let mut steps: Vec<(String, f64)> = Vec::new();
    let started = Instant::now();
    let (handback_secs, h) = timed(|| {
        Ok(handback::apply(&mut archive, &hreq, &mut |step| {
            steps.push((step.to_string(), started.elapsed().as_secs_f64()));
        })?)
    })?;
    ensure!(
        h.applied == n as u64,
        "{} of {n} changes handed back",
        h.applied
    );
    ensure!(h.conflicts.is_empty() && h.level, "a clean handback");
    let at = |word: &str| {
        steps
            .iter()
            .find(|(s, _)| s.contains(word))
            .map(|(_, t)| *t)
    };
    let apply_secs = match (at("archived from the promoted"), at("applied to")) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => handback_secs,
    };
    drop(archive);
    for p in [&archive_path, &standby, &source] {
        fixture::remove_db(p);
    }
    Ok(vec![
        Figure::new(
            "takeover",
            format!("failover of a level replica ({n} rows), to promoted"),
            rto,
            "s",
            Target::AtMost(5.0),
            format!(
                "fence, drain, apply, promote; {:.2} s with the new primary's baseline",
                total
            ),
        ),
        Figure::new(
            "takeover",
            format!("handback of {n} changes, guarded (apply step)"),
            n as f64 / apply_secs,
            "changes/s",
            Target::AtLeast(50_000.0),
            format!("apply {apply_secs:.2} s"),
        ),
        Figure::new(
            "takeover",
            format!("handback of {n} changes, every step"),
            n as f64 / handback_secs,
            "changes/s",
            Target::Report,
            format!(
                "{handback_secs:.2} s: fence, drain, apply, capture again, baseline, replica rebuilt"
            ),
        ),
    ])
}
