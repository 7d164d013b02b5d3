//! Failover: a replica takes over from a primary that failed.
//!
//! [`plan`] is the dry run: the primary's state now (the heartbeat probe), the replicas that
//! could take over and how far each stands, the one chosen (the most up to date, or the one
//! named), the last change archived and the data-loss window, and why it would be refused.
//! [`apply`] carries it out in labelled steps, each recorded in the archive before the next
//! begins, so a kill at any point is finished by running it again:
//!
//! 1. `begun`: the takeover is recorded (who, from which primary, to which copy).
//! 2. `fenced`: the old primary takes no more writes ([`crate::fence`]); an unreachable one is
//!    fenced as soon as it is reachable again.
//! 3. `drained`: what its staging still holds is archived (nothing more can arrive: it is
//!    fenced), and a cut is recorded at the last change: the stream of the old primary ends
//!    there.
//! 4. `applied`: the chosen replica applies everything archived up to that cut.
//! 5. `promoted`: the replica is marked promoted (applying to it is refused from then on) and
//!    capture is installed on it as a new incarnation, which the takeover links to the old
//!    one, so other replicas cross from one to the other as one stream.
//! 6. `done`: the copy is the primary every command follows.
//!
//! It never leaves two primaries accepting captured writes: the old one is fenced (or its
//! fence is pending because nothing can reach it) before the copy is promoted, and a primary
//! that still answers is refused unless the operator forces it.

use std::path::{Path, PathBuf};

use rowtrail_reader::archive::{Archive, ChangeQuery, Takeover, TakeoverKind};
use rowtrail_reader::failpoint;
use rowtrail_reader::mover;
use rowtrail_reader::source::{SourceInfo, SourceSpec};
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_standby::replica::{Replica, Until};
use serde::Serialize;

use crate::fence::{self, Fenced};
use crate::probe::{self, Address, Timeouts, Verdict};
use crate::TakeoverError;

/// What a failover is asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    /// The primary now (the configured source, or the copy the last takeover promoted).
    pub primary: SourceSpec,
    /// Where the primary's service is reached, for the probe.
    pub address: Address,
    /// The replicas that may take over (the configured ones).
    pub replicas: Vec<PathBuf>,
    /// The replica named to take over (`--to`), instead of the most up to date.
    pub to: Option<PathBuf>,
    /// Fail over even though the primary still answers (it is fenced first).
    pub force: bool,
    /// Started by the watcher on its own (`auto_failover`).
    pub automatic: bool,
    /// The probe's timeouts.
    pub timeouts: Timeouts,
    /// When the primary last answered a heartbeat, if the watcher knows.
    pub last_seen_us: Option<i64>,
    /// Images per archive batch while draining.
    pub batch: usize,
    /// rowtrail's version, recorded with the capture installed on the copy.
    pub version: String,
}

/// A replica that could take over.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Its file.
    pub path: PathBuf,
    /// The archive change id it has applied up to.
    pub position: i64,
    /// Archived changes of the primary it has not applied yet.
    pub behind: u64,
    /// Why it cannot take over, if it cannot.
    pub unfit: Option<String>,
}

/// The last change of the primary the archive holds.
#[derive(Debug, Clone, Serialize)]
pub struct LastChange {
    /// Its archive id.
    pub id: i64,
    /// Its seq.
    pub seq: i64,
    /// Its source time (UTC).
    pub at: Option<String>,
}

/// The dry run: what a failover would do now.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Where the primary is.
    pub primary: String,
    /// Its incarnation, as the archive knows it.
    pub incarnation: Option<String>,
    /// What the probe found just now.
    pub verdict: Verdict,
    /// When the primary last answered a heartbeat (µs since the epoch), if known.
    pub last_seen_us: Option<i64>,
    /// The replicas considered.
    pub candidates: Vec<Candidate>,
    /// The one that would take over.
    pub chosen: Option<PathBuf>,
    /// The last change of the primary in the archive.
    pub last: Option<LastChange>,
    /// Images its staging holds now, if it can be read (they are archived before the copy
    /// takes over); `None`: staging cannot be read, and writes after `last` may be lost.
    pub staged: Option<u64>,
    /// An unfinished takeover this run would finish.
    pub resumes: Option<Takeover>,
    /// Why it would be refused, if it would.
    pub refused: Option<String>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Outcome {
    /// The takeover as recorded (step `done`).
    pub takeover: Takeover,
    /// Changes archived from the old primary's staging during the failover.
    pub drained: u64,
    /// Changes the copy applied to come level.
    pub applied: u64,
    /// Whether the old primary is fenced now (`false`: pending, it could not be reached).
    pub fenced: bool,
    /// Why the fence is pending, if it is.
    pub fence_pending: Option<String>,
    /// A baseline of the new primary was taken (for new replicas and rebuilds); why not, if
    /// it was not.
    pub baseline: Result<u64, String>,
}

/// The operating-system user and host running this, for the record.
pub fn who() -> (String, String) {
    (
        rowtrail_reader::operator::login().unwrap_or_else(|| "unknown".into()),
        rowtrail_reader::operator::host().unwrap_or_else(|| "unknown".into()),
    )
}

/// The incarnation the archive knows for `spec` (the newest source recorded at its location).
fn incarnation_of(archive: &Archive, spec: &SourceSpec) -> Result<Option<String>, TakeoverError> {
    if let Some(p) = archive.recorded_primary()? {
        if p.location == spec.location() {
            return Ok(p.incarnation);
        }
    }
    Ok(archive
        .sources()?
        .into_iter()
        .filter(|s| s.engine == spec.engine() && s.location == spec.location())
        .max_by_key(|s| s.id)
        .map(|s| s.incarnation))
}

pub(crate) fn last_change(
    archive: &Archive,
    incarnation: &str,
) -> Result<Option<LastChange>, TakeoverError> {
    let newest = archive.changes(&ChangeQuery {
        incarnation: Some(incarnation.to_string()),
        newest_first: true,
        limit: Some(1),
        ..ChangeQuery::default()
    })?;
    Ok(newest.first().map(|c| LastChange {
        id: c.id,
        seq: c.seq,
        at: c.at.clone(),
    }))
}

/// Ends the stream of `incarnation` at its last change `last`: records a cut there (nothing more
/// can commit: it is fenced, or gone) and returns the cut's change id, the link point a
/// successor follows from.
pub(crate) fn end_stream(
    archive: &mut Archive,
    incarnation: &str,
    engine: &'static str,
    location: &str,
    last: &LastChange,
) -> Result<Option<i64>, TakeoverError> {
    let cut = archive.record_cut(
        &SourceInfo {
            incarnation: incarnation.to_string(),
            engine,
            location: location.to_string(),
        },
        last.seq,
    )?;
    Ok(cut.map(|c| c.change_id.max(last.id)))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The dry run. Reads only: the archive, the replicas, one probe of the primary.
pub fn plan(archive: &Archive, req: &Request) -> Result<Plan, TakeoverError> {
    let resumes = archive
        .unfinished_takeover()?
        .filter(|t| t.kind == TakeoverKind::Failover);
    let incarnation = match &resumes {
        Some(t) => Some(t.from_incarnation.clone()),
        None => incarnation_of(archive, &req.primary)?,
    };
    // The probe's own reading of the primary says how much its staging holds (a dry run
    // opens nothing for writing).
    let probe = probe::probe(&req.primary, &req.address, &req.timeouts);
    // A primary whose service is gone may leave its staging readable (a SQLite file whose
    // application died): then nothing it committed is lost.
    let staged = probe
        .health
        .as_ref()
        .map(|h| h.staged)
        .or_else(|| req.primary.health().ok().map(|h| h.staged));
    let verdict = probe.verdict;
    let names: Vec<PathBuf> = match (&resumes, &req.to) {
        (Some(t), _) => vec![PathBuf::from(&t.to_location)],
        (None, Some(to)) => vec![to.clone()],
        (None, None) => req.replicas.clone(),
    };
    let primary_file = match &req.primary {
        SourceSpec::Sqlite { path, .. } => Some(path.clone()),
        SourceSpec::Mssql(_) => None,
    };
    let mut candidates = Vec::new();
    for path in names {
        if primary_file.as_deref().is_some_and(|p| same_file(p, &path)) {
            continue;
        }
        let c = match Replica::open(&path) {
            Err(e) => Candidate {
                path,
                position: 0,
                behind: 0,
                unfit: Some(e.to_string()),
            },
            Ok(r) => {
                let follows = incarnation.as_deref() == Some(r.incarnation());
                let promoted_here = resumes.is_some() && r.promoted().is_some();
                let unfit = if promoted_here {
                    None
                } else if let Some(t) = r.promoted() {
                    Some(format!("it was promoted by takeover {t}: it is no replica"))
                } else if !follows {
                    Some(format!(
                        "it follows source {}, not the primary {}",
                        r.incarnation(),
                        incarnation.as_deref().unwrap_or("(unknown to the archive)")
                    ))
                } else {
                    None
                };
                let status = r.status(archive);
                Candidate {
                    position: r.position().change_id,
                    behind: status.as_ref().map(|s| s.behind).unwrap_or(0),
                    unfit: unfit.or_else(|| status.err().map(|e| e.to_string())),
                    path,
                }
            }
        };
        candidates.push(c);
    }
    let chosen = candidates
        .iter()
        .filter(|c| c.unfit.is_none())
        .max_by_key(|c| c.position)
        .map(|c| c.path.clone());
    let last = match &incarnation {
        Some(i) => last_change(archive, i)?,
        None => None,
    };
    let refused = if incarnation.is_none() {
        Some(format!(
            "the archive holds nothing of {}: there is no stream to fail over from (is this the \
             archive of that source?)",
            req.primary.location()
        ))
    } else if candidates.is_empty() {
        Some(
            "no replica to fail over to: configure one ([[replica]] path in rowtrail.toml) or \
             name it with --to FILE"
                .into(),
        )
    } else if chosen.is_none() {
        Some(format!(
            "no replica can take over: {}",
            candidates
                .iter()
                .map(|c| format!(
                    "{}: {}",
                    c.path.display(),
                    c.unfit.as_deref().unwrap_or("?")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ))
    } else if !verdict.failed() && !req.force && resumes.is_none() {
        Some(format!(
            "the primary {} still answers: a failover now would leave clients writing to it; \
             fail over a primary that is down, or pass --force to fence it and take over anyway",
            req.primary.location()
        ))
    } else {
        None
    };
    Ok(Plan {
        primary: req.primary.location(),
        incarnation,
        verdict,
        last_seen_us: req.last_seen_us,
        candidates,
        chosen,
        last,
        staged,
        resumes,
        refused,
    })
}

/// Carries out the failover [`plan`] describes (or finishes the one a kill cut short).
/// `progress` is told each step as it is reached.
pub fn apply(
    archive: &mut Archive,
    req: &Request,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome, TakeoverError> {
    let plan = plan(archive, req)?;
    if let Some(why) = &plan.refused {
        return Err(TakeoverError::Refused(why.clone()));
    }
    let incarnation = plan
        .incarnation
        .clone()
        .expect("a plan that is not refused has one");
    let to = plan
        .chosen
        .clone()
        .expect("a plan that is not refused has one");
    let mut t = match plan.resumes.clone() {
        Some(t) => {
            progress(&format!("finishing takeover {} from step {}", t.id, t.step));
            t
        }
        None => {
            let (by_user, by_host) = who();
            let t = archive.begin_takeover(Takeover {
                id: 0,
                kind: TakeoverKind::Failover,
                step: String::new(),
                from_incarnation: incarnation.clone(),
                from_engine: req.primary.engine().to_string(),
                from_location: req.primary.location(),
                to_engine: "sqlite".into(),
                to_location: to.display().to_string(),
                to_incarnation: None,
                last_change_id: None,
                last_seq: None,
                last_at: None,
                primary_last_seen_us: req.last_seen_us,
                fence: None,
                forced: req.force,
                automatic: req.automatic,
                by_user,
                by_host,
                started_us: 0,
                finished_us: None,
                detail: None,
            })?;
            progress(&format!(
                "takeover {} begun: {} → {}",
                t.id, t.from_location, t.to_location
            ));
            t
        }
    };
    failpoint::hit("failover-begun");
    let mut replica = Replica::open(&to)?;
    let tables: Vec<rowtrail_sql::Table> = replica
        .tables()
        .iter()
        .map(|r| r.definition.as_ref().clone())
        .collect();

    // 2. Fence. Idempotent: a fence already in place is made again.
    let fenced = fence::fence(&req.primary, &tables, &fence::message(t.id, &t.to_location))?;
    if t.step == "begun" || t.fence.as_deref() == Some("pending") {
        t.fence = Some(fenced.as_str().to_string());
        if t.step == "begun" {
            t.step = "fenced".into();
        }
        archive.advance_takeover(&mut t)?;
    }
    match &fenced {
        Fenced::Done => progress("old primary fenced: writes to its captured tables now fail"),
        Fenced::Pending(why) => progress(&format!(
            "old primary cannot be reached ({why}): its fence is pending, the watcher sets it \
             once it is reachable"
        )),
    }
    failpoint::hit("failover-fenced");

    // 3. Drain what its staging holds, then end its stream with a cut at the last change.
    let mut drained = 0;
    if fenced == Fenced::Done {
        match req.primary.open() {
            Ok(mut source) => {
                let stats = mover::drain(source.as_mut(), archive, req.batch.max(1))?;
                drained = stats.archived;
                progress(&format!(
                    "{drained} change(s) archived from the old primary's staging"
                ));
            }
            Err(e) => progress(&format!(
                "the old primary's staging cannot be read ({e}): what it holds is left for the \
                 handback"
            )),
        }
    }
    let last = last_change(archive, &incarnation)?;
    let end = match &last {
        Some(l) => end_stream(
            archive,
            &incarnation,
            req.primary.engine(),
            &req.primary.location(),
            l,
        )?,
        None => None,
    };
    if matches!(t.step.as_str(), "begun" | "fenced") {
        t.last_change_id = end;
        t.last_seq = last.as_ref().map(|l| l.seq);
        t.last_at = last.as_ref().and_then(|l| l.at.clone());
        t.step = "drained".into();
        archive.advance_takeover(&mut t)?;
    }
    failpoint::hit("failover-drained");

    // 4. Bring the replica level (unless a run before this one already promoted it).
    let mut applied = 0;
    if replica.promoted().is_none() {
        // The watcher's replicas job may apply to it at the same moment: go on from where it
        // stands then.
        let mut tries = 0;
        let report = loop {
            match replica.apply(archive, &Until::Latest) {
                Err(rowtrail_standby::StandbyError::Moved(_)) if tries < 5 => tries += 1,
                other => break other?,
            }
        };
        applied = report.applied;
        let need = t.last_change_id.unwrap_or(0);
        if replica.position().change_id < need {
            return Err(TakeoverError::Refused(format!(
                "{} stands at change {} but the old primary's last change is {need}: it cannot \
                 be brought level ({} is paused?); resume it and run the failover again",
                to.display(),
                replica.position().change_id,
                to.display()
            )));
        }
        progress(&format!(
            "{} applied {applied} change(s): level with the archive",
            to.display()
        ));
    }
    if t.step == "drained" {
        t.step = "applied".into();
        archive.advance_takeover(&mut t)?;
    }
    failpoint::hit("failover-applied");

    // 5. Promote: no replica any more, capture installed as a new incarnation.
    if replica.promoted().is_none() {
        replica.promote(t.id)?;
    }
    drop(replica);
    let names: Vec<String> = tables
        .iter()
        .map(|t| t.name.name.as_str().to_string())
        .collect();
    let survey = SqliteSource::survey(&to, Some(&names))?;
    SqliteSource::install(&to, &survey.tables, &req.version)?;
    let new_incarnation = {
        let conn = rusqlite::Connection::open(&to).map_err(TakeoverError::db(
            &to,
            "cannot read the new primary's incarnation",
        ))?;
        rowtrail_reader::sqlite::catalog::incarnation(&conn, &to.display().to_string())?
    };
    if t.step == "applied" {
        t.to_incarnation = new_incarnation.clone();
        t.step = "promoted".into();
        archive.advance_takeover(&mut t)?;
    }
    progress(&format!(
        "{} promoted: capture installed (incarnation {})",
        to.display(),
        new_incarnation.as_deref().unwrap_or("?")
    ));
    failpoint::hit("failover-promoted");

    // 6. Done: the copy is the primary.
    t.step = "done".into();
    archive.advance_takeover(&mut t)?;
    failpoint::hit("failover-done");

    // For new replicas and rebuilds of the new incarnation; replicas that exist cross the link.
    let baseline = (|| -> Result<u64, String> {
        let mut source = SqliteSource::open(&to).map_err(|e| e.to_string())?;
        let report = rowtrail_standby::baseline::take(
            &mut source,
            archive,
            None,
            &mut rowtrail_standby::baseline::Silent,
        )
        .map_err(|e| e.to_string())?;
        Ok(report.taken.iter().map(|t| t.rows).sum())
    })();
    Ok(Outcome {
        takeover: t,
        drained,
        applied,
        fenced: fenced == Fenced::Done,
        fence_pending: match fenced {
            Fenced::Pending(why) => Some(why),
            Fenced::Done => None,
        },
        baseline,
    })
}
