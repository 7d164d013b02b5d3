//! Handback: the repaired primary takes its role back from the copy a failover promoted.
//!
//! [`plan`] is the dry run; [`apply`] carries it out in labelled steps, each recorded in the
//! archive before the next, so a kill is finished by running it again:
//!
//! 1. `begun`: recorded (from the promoted copy, to the repaired primary).
//! 2. `fenced`: the promoted copy takes no more writes (the maintenance window opens); the
//!    repaired primary is fenced too, if its fence was still pending.
//! 3. `drained`: the promoted copy's staging is archived and its stream ended with a cut; the
//!    repaired primary's staging (writes it made before it failed that never reached the
//!    archive) is archived under its old incarnation, after its stream's end: the **orphans**,
//!    each checked against what the promoted side changed since.
//! 4. `applied`: in one transaction of the repaired primary, its capture triggers and fence
//!    come off, every change made on the promoted side since the failover is applied with the
//!    guards of undo (a row changes only if it still holds the before-image), the fence goes
//!    back, and a marker records it. A row whose guard does not hold is a **conflict**: listed
//!    with its old, new and current images and left as it is (`keep`), or made equal to the
//!    promoted side's (`take-promoted`); with conflicts and no rule chosen, nothing is applied.
//! 5. `promoted`: capture is installed on the repaired primary again as a new incarnation (so
//!    the handback's own writes were never captured as user changes that would loop back),
//!    and its fence comes off.
//! 6. `done`: the repaired primary is the primary every command follows.
//!
//! Then the promoted copy becomes a replica again: rebuilt from a baseline of the primary's new
//! incarnation, level with it. Where the two differ after the handback (conflicts kept,
//! orphans), the new incarnation is not linked as the promoted copy's successor, and other
//! replicas must be rebuilt (the outcome says so).

use std::path::{Path, PathBuf};

use rowtrail_apply::{Job, JobStep, OnConflict, Step};
use rowtrail_reader::archive::{Archive, ArchivedChange, ChangeQuery, Takeover, TakeoverKind};
use rowtrail_reader::failpoint;
use rowtrail_reader::mover;
use rowtrail_reader::source::SourceSpec;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_sql::{Table, Value};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::failover::{end_stream, last_change, who};
use crate::fence::{self, Fenced};
use crate::TakeoverError;

/// The marker a handback's apply leaves in the repaired primary, in the same transaction.
const MARKER: &str = "rowtrail_handback";

/// What to do with a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictRule {
    /// Leave the repaired primary's row as it is (listed for the DBA).
    Keep,
    /// Make the row equal what the promoted side made it.
    TakePromoted,
}

/// What a handback is asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    /// The current primary: the copy a failover promoted.
    pub primary: SourceSpec,
    /// The repaired primary that takes its role back.
    pub to: PathBuf,
    /// What to do with conflicts (`None`: refuse when there are any).
    pub conflicts: Option<ConflictRule>,
    /// Images per archive batch while draining.
    pub batch: usize,
    /// rowtrail's version, recorded with the capture installed again.
    pub version: String,
}

/// A change of the promoted side whose guard does not hold on the repaired primary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    /// The archived change.
    pub change: i64,
    /// Its table.
    pub table: String,
    /// The columns, in order.
    pub columns: Vec<String>,
    /// The row the promoted side changed (`None`: it inserted it).
    pub old: Option<Vec<String>>,
    /// The row it made (`None`: it deleted it).
    pub new: Option<Vec<String>>,
    /// The repaired primary's row now (`None`: there is none).
    pub current: Option<Vec<String>>,
    /// Whether the rule made the row equal `new` anyway.
    pub taken: bool,
}

/// A change the old primary made that never reached the archive before the failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    /// Its archive id (archived by the handback).
    pub change: i64,
    /// Its table.
    pub table: String,
    /// insert, update or delete.
    pub op: String,
    /// When it was written (source time).
    pub at: Option<String>,
    /// Changes of the promoted side to the same row.
    pub also_changed_by: Vec<i64>,
}

/// The dry run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The failover being handed back.
    pub failover: Option<Takeover>,
    /// The promoted copy (the primary now).
    pub promoted: String,
    /// The repaired primary.
    pub to: String,
    /// Changes made on the promoted side since the failover, to apply.
    pub changes: u64,
    /// The conflicts applying them would meet now.
    pub conflicts: Vec<Conflict>,
    /// Images the repaired primary's staging holds (archived and shown as orphans by the
    /// handback); orphans archived already are listed in `orphans`.
    pub staged_orphans: u64,
    /// Orphans already archived.
    pub orphans: Vec<Orphan>,
    /// An unfinished handback this run would finish.
    pub resumes: Option<Takeover>,
    /// Why it would be refused.
    pub refused: Option<String>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// The handback as recorded.
    pub takeover: Takeover,
    /// Changes applied to the repaired primary.
    pub applied: u64,
    /// Conflicts met (kept or taken, as the rule said).
    pub conflicts: Vec<Conflict>,
    /// The orphans.
    pub orphans: Vec<Orphan>,
    /// Whether the repaired primary equals the promoted copy now (no conflict kept, no
    /// orphan): only then do replicas of the promoted copy go on from it.
    pub level: bool,
    /// The promoted copy rebuilt as a replica of the primary (or why not).
    pub demoted: Result<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct Detail {
    applied: u64,
    conflicts: u64,
    orphans: u64,
    diverged: bool,
    demoted: bool,
}

fn sqlite_path(spec: &SourceSpec) -> Result<&Path, TakeoverError> {
    match spec {
        SourceSpec::Sqlite { path, .. } => Ok(path),
        SourceSpec::Mssql(_) => Err(TakeoverError::Refused(
            "handback to SQL Server is not built yet: it is for SQLite sources in this version"
                .into(),
        )),
    }
}

/// The finished failover that made the current primary, if the newest takeover is one.
fn failover_to_hand_back(archive: &Archive) -> Result<Option<Takeover>, TakeoverError> {
    Ok(archive
        .takeovers()?
        .into_iter()
        .rev()
        .find(|t| t.finished_us.is_some())
        .filter(|t| t.kind == TakeoverKind::Failover))
}

fn changes_since(
    archive: &Archive,
    incarnation: &str,
) -> Result<Vec<ArchivedChange>, TakeoverError> {
    Ok(archive
        .stream(&ChangeQuery {
            incarnation: Some(incarnation.to_string()),
            ..ChangeQuery::default()
        })?
        .collect::<Result<_, _>>()?)
}

fn orphans(
    archive: &Archive,
    failover: &Takeover,
    promoted_changes: &[ArchivedChange],
) -> Result<Vec<Orphan>, TakeoverError> {
    let end = failover.last_change_id.unwrap_or(0);
    let late = archive.stream(&ChangeQuery {
        incarnation: Some(failover.from_incarnation.clone()),
        after_id: Some(end),
        ..ChangeQuery::default()
    })?;
    let mut out = Vec::new();
    for c in late {
        let c = c?;
        let keys = [c.before_key(), c.after_key()];
        let also = promoted_changes
            .iter()
            .filter(|p| {
                p.table.name.name == c.table.name.name
                    && [p.before_key(), p.after_key()]
                        .iter()
                        .flatten()
                        .any(|k| keys.iter().flatten().any(|o| o == k))
            })
            .map(|p| p.id)
            .collect();
        out.push(Orphan {
            change: c.id,
            table: c.table.name.to_string(),
            op: c.op.word().to_string(),
            at: c.at.clone(),
            also_changed_by: also,
        });
    }
    Ok(out)
}

fn text(row: &Option<Vec<Value>>) -> Option<Vec<String>> {
    row.as_ref()
        .map(|r| r.iter().map(|v| v.to_string()).collect())
}

/// The repaired primary's row that `c` is about (by its key), if any.
fn current_row(conn: &Connection, c: &ArchivedChange) -> Option<Vec<Value>> {
    let t = &c.table;
    if t.primary_key.is_empty() {
        return None;
    }
    let image = c.before.as_ref().or(c.after.as_ref())?;
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|col| col.name.sqlite().to_string())
        .collect();
    let cond: Vec<String> = t
        .primary_key
        .iter()
        .enumerate()
        .map(|(n, &i)| format!("{} IS ?{}", t.columns[i].name.sqlite(), n + 1))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {}",
        cols.join(", "),
        t.name.name.sqlite(),
        cond.join(" AND ")
    );
    let params: Vec<rowtrail_reader::sqlite::Param> = t
        .primary_key
        .iter()
        .map(|&i| rowtrail_reader::sqlite::Param(&image[i]))
        .collect();
    conn.query_row(&sql, rusqlite::params_from_iter(params), |r| {
        (0..cols.len())
            .map(|i| r.get_ref(i).map(rowtrail_reader::sqlite::value_of))
            .collect::<Result<Vec<_>, _>>()
    })
    .optional()
    .ok()
    .flatten()
}

/// Changes applied together in one guarded step of the handback; a chunk that meets a guard
/// that does not hold is rolled back to its savepoint and applied change by change.
const CHUNK: usize = 2_000;

/// Applies `changes` to the repaired primary inside `tx` with `rule` for conflicts (`None`:
/// skip them, to see them); returns how many were applied and the conflicts.
fn apply_changes(
    tx: &rusqlite::Transaction<'_>,
    changes: &[ArchivedChange],
    rule: Option<ConflictRule>,
) -> Result<(u64, Vec<Conflict>), TakeoverError> {
    let mut conflicts = Vec::new();
    let mut applied = 0u64;
    let sql = |what: &str| {
        tx.execute_batch(what)
            .map_err(|cause| TakeoverError::Database {
                path: "the repaired primary".into(),
                context: "cannot apply a chunk of the handback".into(),
                cause,
            })
    };
    for chunk in changes.chunks(CHUNK) {
        // The common case first: every guard of the chunk holds, one job.
        sql("SAVEPOINT rowtrail_handback_chunk")?;
        match apply_job(tx, chunk, OnConflict::Stop) {
            Ok(_) => {
                sql("RELEASE rowtrail_handback_chunk")?;
                applied += chunk.len() as u64;
                continue;
            }
            Err(rowtrail_apply::ApplyError::Guards { .. }) => {
                sql("ROLLBACK TO rowtrail_handback_chunk; RELEASE rowtrail_handback_chunk")?;
            }
            Err(e) => return Err(TakeoverError::Refused(format!("handback: {e}"))),
        }
        // A guard did not hold: change by change, each with the row its guard saw (read
        // before the rule touches it).
        for c in chunk {
            let current = current_row(tx, c);
            let on_conflict = match rule {
                Some(ConflictRule::TakePromoted) => OnConflict::Force,
                _ => OnConflict::Skip,
            };
            let results = apply_job(tx, std::slice::from_ref(c), on_conflict)
                .map_err(|e| TakeoverError::Refused(format!("handback: {e}")))?;
            match results.first().map(|r| r.outcome) {
                Some(rowtrail_apply::Outcome::Applied) => applied += 1,
                Some(outcome) => conflicts.push(Conflict {
                    change: c.id,
                    table: c.table.name.to_string(),
                    columns: c
                        .table
                        .columns
                        .iter()
                        .map(|col| col.name.as_str().to_string())
                        .collect(),
                    old: text(&c.before),
                    new: text(&c.after),
                    current: text(&current),
                    taken: outcome == rowtrail_apply::Outcome::Forced,
                }),
                None => {}
            }
        }
    }
    Ok((applied, conflicts))
}

/// One guarded job of `changes`, forward, inside `tx`.
fn apply_job(
    tx: &rusqlite::Transaction<'_>,
    changes: &[ArchivedChange],
    on_conflict: OnConflict,
) -> Result<Vec<rowtrail_apply::StepResult>, rowtrail_apply::ApplyError> {
    let comments: Vec<String> = changes.iter().map(ArchivedChange::summary).collect();
    let job = Job {
        what: "handback",
        steps: changes
            .iter()
            .zip(&comments)
            .map(|(c, comment)| JobStep {
                id: c.id,
                comment,
                step: Step {
                    table: c.table.as_ref(),
                    expect: c.before.as_deref(),
                    target: c.after.as_deref(),
                    rowid: c.rowid,
                },
            })
            .collect(),
        on_conflict,
        foreign_keys: &[],
        label: None,
        any_equal_row: true,
    };
    rowtrail_apply::sqlite::apply_within(tx, &job)
}

/// Opens the repaired primary for the apply transaction.
fn open_target(path: &Path) -> Result<Connection, TakeoverError> {
    let conn = Connection::open(path)
        .map_err(TakeoverError::db(path, "cannot open the repaired primary"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(TakeoverError::db(path, "cannot set the busy timeout"))?;
    conn.execute_batch("PRAGMA foreign_keys = OFF;")
        .map_err(TakeoverError::db(
            path,
            "cannot set up the repaired primary",
        ))?;
    Ok(conn)
}

/// Takes capture triggers and the fence off `tables` inside the caller's transaction (the
/// handback's writes are not user changes), leaving staging and the registry.
fn quiet_sql(tables: &[Table]) -> String {
    let mut s = String::new();
    for t in tables {
        s.push_str(&rowtrail_sql::sqlite::upgrade::drop_triggers(t));
    }
    s.push_str(&rowtrail_sql::sqlite::fence::unfence_script(tables));
    s
}

fn marker_done(conn: &Connection, takeover: i64) -> bool {
    conn.query_row(
        &format!("SELECT count(*) FROM {MARKER} WHERE takeover = ?1"),
        [takeover],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .unwrap_or(false)
}

fn captured_tables(path: &Path) -> Result<Vec<Table>, TakeoverError> {
    let conn = Connection::open(path).map_err(TakeoverError::db(path, "cannot open"))?;
    let location = path.display().to_string();
    if !rowtrail_reader::sqlite::catalog::installed(&conn, &location)? {
        return Ok(Vec::new());
    }
    Ok(
        rowtrail_reader::sqlite::catalog::registry(&conn, &location)?
            .into_iter()
            .map(|c| c.table)
            .collect(),
    )
}

/// The dry run. Reads the archive, the repaired primary (inside a transaction it rolls back:
/// the conflicts are the ones applying would meet now) and its staging's size.
pub fn plan(archive: &Archive, req: &Request) -> Result<Plan, TakeoverError> {
    plan_with(archive, req, true)
}

/// [`plan`], with the trial apply that finds the conflicts only when `trial` (a handback with
/// a rule for conflicts needs no trial: it applies them the way the rule says).
fn plan_with(archive: &Archive, req: &Request, trial: bool) -> Result<Plan, TakeoverError> {
    let to = sqlite_path(&SourceSpec::Sqlite {
        path: req.to.clone(),
        capture_new_tables: false,
    })?
    .to_path_buf();
    let resumes = archive
        .unfinished_takeover()?
        .filter(|t| t.kind == TakeoverKind::Handback);
    let failover = match &resumes {
        Some(h) => archive
            .takeovers()?
            .into_iter()
            .rev()
            .find(|t| t.kind == TakeoverKind::Failover && t.id < h.id),
        None => failover_to_hand_back(archive)?,
    };
    let mut plan = Plan {
        failover: failover.clone(),
        promoted: req.primary.location(),
        to: to.display().to_string(),
        changes: 0,
        conflicts: Vec::new(),
        staged_orphans: 0,
        orphans: Vec::new(),
        resumes: resumes.clone(),
        refused: None,
    };
    let Some(f) = failover else {
        plan.refused = Some(
            "there is nothing to hand back: no failover made the current primary (was the \
             handback done already?)"
                .into(),
        );
        return Ok(plan);
    };
    if f.from_location != plan.to {
        plan.refused = Some(format!(
            "{} is not the old primary: failover {} took over from {}; hand back to that one",
            plan.to, f.id, f.from_location
        ));
        return Ok(plan);
    }
    if !to.exists() {
        plan.refused = Some(format!(
            "{} does not exist: restore the old primary's file first",
            plan.to
        ));
        return Ok(plan);
    }
    let incarnation = {
        let conn = Connection::open(&to).map_err(TakeoverError::db(&to, "cannot open"))?;
        rowtrail_reader::sqlite::catalog::incarnation(&conn, &plan.to)?
    };
    let handback_done_apply = resumes
        .as_ref()
        .is_some_and(|h| matches!(h.step.as_str(), "applied" | "promoted"));
    if incarnation.as_deref() != Some(f.from_incarnation.as_str()) && !handback_done_apply {
        plan.refused = Some(format!(
            "{} does not hold the old primary's capture (incarnation {} expected, {} found): \
             it is another database, or was reinstalled",
            plan.to,
            f.from_incarnation,
            incarnation.as_deref().unwrap_or("none")
        ));
        return Ok(plan);
    }
    let promoted_inc = f.to_incarnation.clone().unwrap_or_default();
    let changes = changes_since(archive, &promoted_inc)?;
    plan.changes = changes.len() as u64;
    plan.orphans = orphans(archive, &f, &changes)?;
    if !handback_done_apply {
        // The heartbeat's read-only look: nothing is opened for writing by a dry run.
        plan.staged_orphans = SqliteSource::health(&to).map_or(0, |h| h.staged);
    }
    if !handback_done_apply && trial {
        let tables = captured_tables(&to)?;
        let mut conn = open_target(&to)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(TakeoverError::db(&to, "cannot read the repaired primary"))?;
        tx.execute_batch(&quiet_sql(&tables))
            .map_err(TakeoverError::db(&to, "cannot try the handback"))?;
        let (_, conflicts) = apply_changes(&tx, &changes, None)?;
        tx.rollback()
            .map_err(TakeoverError::db(&to, "cannot roll the trial back"))?;
        plan.conflicts = conflicts;
    }
    Ok(plan)
}

/// Carries out the handback [`plan`] describes (or finishes one a kill cut short).
pub fn apply(
    archive: &mut Archive,
    req: &Request,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome, TakeoverError> {
    let plan = plan_with(archive, req, req.conflicts.is_none())?;
    if let Some(why) = &plan.refused {
        return Err(TakeoverError::Refused(why.clone()));
    }
    let f = plan
        .failover
        .clone()
        .expect("a plan that is not refused has one");
    let to = req.to.clone();
    let promoted_path = PathBuf::from(&f.to_location);
    let promoted_inc = f.to_incarnation.clone().unwrap_or_default();
    if plan.resumes.is_none() && !plan.conflicts.is_empty() && req.conflicts.is_none() {
        return Err(TakeoverError::Refused(format!(
            "{} change(s) of the promoted side meet rows the repaired primary holds otherwise \
             (see the plan: `rowtrail handback --to {}`); choose what to do with them: \
             --conflicts keep (leave those rows, listed) or --conflicts take-promoted",
            plan.conflicts.len(),
            to.display()
        )));
    }
    let mut t = match plan.resumes.clone() {
        Some(t) => {
            progress(&format!("finishing handback {} from step {}", t.id, t.step));
            t
        }
        None => {
            let (by_user, by_host) = who();
            let t = archive.begin_takeover(Takeover {
                id: 0,
                kind: TakeoverKind::Handback,
                step: String::new(),
                from_incarnation: promoted_inc.clone(),
                from_engine: "sqlite".into(),
                from_location: f.to_location.clone(),
                to_engine: "sqlite".into(),
                to_location: to.display().to_string(),
                to_incarnation: None,
                last_change_id: None,
                last_seq: None,
                last_at: None,
                primary_last_seen_us: None,
                fence: None,
                forced: false,
                automatic: false,
                by_user,
                by_host,
                started_us: 0,
                finished_us: None,
                detail: None,
            })?;
            progress(&format!(
                "handback {} begun: {} → {}",
                t.id, t.from_location, t.to_location
            ));
            t
        }
    };
    let mut detail: Detail = t
        .detail
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    failpoint::hit("handback-begun");

    // 2. Fence the promoted copy (and the repaired primary, if its fence is still pending).
    let promoted_tables = captured_tables(&promoted_path)?;
    let promoted_spec = SourceSpec::Sqlite {
        path: promoted_path.clone(),
        capture_new_tables: false,
    };
    let to_spec = SourceSpec::Sqlite {
        path: to.clone(),
        capture_new_tables: false,
    };
    if t.step == "begun" {
        match fence::fence(
            &promoted_spec,
            &promoted_tables,
            &fence::message(t.id, &t.to_location),
        )? {
            Fenced::Done => {}
            Fenced::Pending(why) => {
                return Err(TakeoverError::Refused(format!(
                    "the promoted copy cannot be fenced ({why}): its writes not yet archived \
                     would be lost; bring it back and run the handback again"
                )))
            }
        }
        let to_tables = captured_tables(&to)?;
        if let Fenced::Pending(why) =
            fence::fence(&to_spec, &to_tables, &fence::message(f.id, &f.to_location))?
        {
            return Err(TakeoverError::Refused(format!(
                "the repaired primary cannot be fenced ({why})"
            )));
        }
        t.fence = Some("fenced".into());
        t.step = "fenced".into();
        archive.advance_takeover(&mut t)?;
        progress("the promoted copy is fenced: writes to it fail until the handback is done");
    }
    failpoint::hit("handback-fenced");

    // 3. Drain both: the promoted copy's stream ends; the repaired primary's tail is orphans.
    if t.step == "fenced" {
        let mut source = promoted_spec.open()?;
        let stats = mover::drain(source.as_mut(), archive, req.batch.max(1))?;
        progress(&format!(
            "{} change(s) archived from the promoted copy's staging",
            stats.archived
        ));
        if let Some(l) = last_change(archive, &promoted_inc)? {
            t.last_change_id = end_stream(archive, &promoted_inc, "sqlite", &f.to_location, &l)?;
            t.last_seq = Some(l.seq);
            t.last_at = l.at.clone();
        } else {
            t.last_change_id = f.last_change_id;
        }
        if let Ok(mut old) = to_spec.open() {
            let stats = mover::drain(old.as_mut(), archive, req.batch.max(1))?;
            if stats.archived > 0 {
                progress(&format!(
                    "{} orphan change(s) archived from the repaired primary's staging",
                    stats.archived
                ));
            }
        }
        t.step = "drained".into();
        archive.advance_takeover(&mut t)?;
    }
    failpoint::hit("handback-drained");
    let changes = changes_since(archive, &promoted_inc)?;
    let orphans = orphans(archive, &f, &changes)?;

    // 4. Apply the promoted side's changes to the repaired primary, guarded, in one
    // transaction that also leaves the marker.
    let mut conflicts = Vec::new();
    if t.step == "drained" {
        let tables = captured_tables(&to)?;
        let mut conn = open_target(&to)?;
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {MARKER} (takeover INTEGER PRIMARY KEY, applied INTEGER NOT NULL, conflicts INTEGER NOT NULL)"
        ))
        .map_err(TakeoverError::db(&to, "cannot record the handback"))?;
        if !marker_done(&conn, t.id) {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(TakeoverError::db(
                    &to,
                    "cannot start the handback's transaction",
                ))?;
            tx.execute_batch(&quiet_sql(&tables))
                .map_err(TakeoverError::db(
                    &to,
                    "cannot take capture off for the handback",
                ))?;
            let (applied, found) = apply_changes(&tx, &changes, req.conflicts)?;
            // The fence goes back on until capture is installed again.
            tx.execute_batch(&rowtrail_sql::sqlite::fence::fence_script(
                &tables,
                &fence::message(t.id, &t.to_location),
            ))
            .map_err(TakeoverError::db(
                &to,
                "cannot fence the repaired primary again",
            ))?;
            tx.execute(
                &format!("INSERT INTO {MARKER} (takeover, applied, conflicts) VALUES (?1, ?2, ?3)"),
                rusqlite::params![t.id, applied as i64, found.len() as i64],
            )
            .map_err(TakeoverError::db(&to, "cannot record the handback"))?;
            tx.commit().map_err(TakeoverError::db(
                &to,
                "cannot commit the handback's transaction",
            ))?;
            detail.applied = applied;
            detail.conflicts = found.len() as u64;
            conflicts = found;
        }
        detail.orphans = orphans.len() as u64;
        detail.diverged = !orphans.is_empty() || conflicts.iter().any(|c| !c.taken);
        t.detail = serde_json::to_string(&detail).ok();
        t.step = "applied".into();
        archive.advance_takeover(&mut t)?;
        progress(&format!(
            "{} change(s) applied to {}; {} conflict(s)",
            detail.applied,
            to.display(),
            detail.conflicts
        ));
    }
    failpoint::hit("handback-applied");

    // 5. Capture on the repaired primary again, as a new incarnation; then its fence off.
    if t.step == "applied" {
        let names: Vec<String> = captured_tables(&to)?
            .iter()
            .map(|t| t.name.name.as_str().to_string())
            .collect();
        if !names.is_empty() {
            SqliteSource::uninstall(&to, None, false, &req.version)?;
        }
        let wanted: Vec<String> = if names.is_empty() {
            promoted_tables
                .iter()
                .map(|t| t.name.name.as_str().to_string())
                .collect()
        } else {
            names
        };
        let survey = SqliteSource::survey(&to, Some(&wanted))?;
        SqliteSource::install(&to, &survey.tables, &req.version)?;
        fence::unfence(&to_spec, &survey.tables)?;
        let conn = Connection::open(&to).map_err(TakeoverError::db(&to, "cannot open"))?;
        t.to_incarnation =
            rowtrail_reader::sqlite::catalog::incarnation(&conn, &to.display().to_string())?;
        t.step = "promoted".into();
        archive.advance_takeover(&mut t)?;
        progress(&format!(
            "{} takes writes again: capture installed (incarnation {})",
            to.display(),
            t.to_incarnation.as_deref().unwrap_or("?")
        ));
    }
    failpoint::hit("handback-promoted");

    t.step = "done".into();
    archive.advance_takeover(&mut t)?;
    failpoint::hit("handback-done");

    // Then the promoted copy becomes a replica again, rebuilt level with the primary.
    let demoted = demote(archive, &to, &promoted_path);
    if demoted.is_ok() {
        detail.demoted = true;
        let _ =
            archive.set_takeover_detail(t.id, &serde_json::to_string(&detail).unwrap_or_default());
    }
    Ok(Outcome {
        level: !detail.diverged,
        takeover: t,
        applied: detail.applied,
        conflicts,
        orphans,
        demoted,
    })
}

/// Rebuilds `promoted` as a replica of the primary `to`'s new incarnation: a baseline of the
/// primary, a replica built beside `promoted` and moved over it.
fn demote(archive: &mut Archive, to: &Path, promoted: &Path) -> Result<String, String> {
    let mut source = SqliteSource::open(to).map_err(|e| e.to_string())?;
    rowtrail_standby::baseline::take(
        &mut source,
        archive,
        None,
        &mut rowtrail_standby::baseline::Silent,
    )
    .map_err(|e| e.to_string())?;
    let incarnation = {
        use rowtrail_reader::source::Source as _;
        source.info().incarnation.clone()
    };
    drop(source);
    let mut rebuilt = promoted.as_os_str().to_owned();
    rebuilt.push(".handback");
    let rebuilt = PathBuf::from(rebuilt);
    let _ = std::fs::remove_file(&rebuilt);
    rowtrail_standby::replica::create(
        &rebuilt,
        archive,
        &rowtrail_standby::replica::CreateOptions {
            incarnation: Some(incarnation),
            ..Default::default()
        },
        &mut |_, _| {},
    )
    .map_err(|e| e.to_string())?;
    for ext in ["-wal", "-shm"] {
        let mut side = promoted.as_os_str().to_owned();
        side.push(ext);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    std::fs::rename(&rebuilt, promoted).map_err(|e| {
        format!(
            "cannot move the rebuilt replica {} over {}: {e}",
            rebuilt.display(),
            promoted.display()
        )
    })?;
    Ok(format!(
        "{} is a replica again, level with {}",
        promoted.display(),
        to.display()
    ))
}
