//! A whole undo or redo: plan from the archive, apply to the source, record in the journal.
//!
//! The journal entry is written before the source is touched (state `applying`), the items
//! just before the source commits, and the state `applied` just after. A run interrupted
//! between those points is settled by the next undo or redo ([`settle_pending`]): it committed
//! exactly when a write labelled with its tag exists (in staging or already archived).
//!
//! Callers serialise runs on one archive (the CLI holds `<archive>.undo.lock`).

use rowtrail_reader::archive::{Archive, RunKind, RunState, UndoItem, UndoRun};
use rusqlite::Connection;

use crate::apply::{self, Label, StepResult};
use crate::load;
use crate::plan::{self, Mode, Plan};
use crate::scope::{self, Scope};
use crate::RestoreError;

/// Who the run's writes are attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The login recorded for the writes.
    pub login: String,
    /// The host recorded for the writes.
    pub host: Option<String>,
}

/// A plan with what it was made from.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The plan.
    pub plan: Plan,
    /// How many changes the scope selected (before cascade or skip).
    pub selected: usize,
    /// The source's incarnation.
    pub incarnation: String,
    /// The scope as JSON (for the journal).
    pub scope: String,
    /// For a redo: the undo run it re-applies.
    pub redo_of: Option<i64>,
    /// The source's foreign keys.
    pub fks: Vec<crate::conflict::ForeignKey>,
}

/// Settles every run of `incarnation` left `applying` by an interrupted undo or redo;
/// returns each run settled and whether it had committed.
pub fn settle_pending(
    archive: &Archive,
    source: &Connection,
) -> Result<Vec<(i64, bool)>, RestoreError> {
    let incarnation = apply::incarnation(source)?;
    let mut settled = Vec::new();
    for run in archive.runs(Some(RunState::Applying))? {
        if run.incarnation != incarnation {
            continue;
        }
        let committed = archive.has_tagged_changes(&incarnation, &run.tx_tag)?
            || apply::staged_with_tag(source, &run.tx_tag)?;
        archive.settle_run(run.id, committed)?;
        settled.push((run.id, committed));
    }
    Ok(settled)
}

/// Plans undoing `scope` on the source behind `source`.
pub fn prepare_undo(
    archive: &Archive,
    source: &Connection,
    scope: &Scope,
    mode: Mode,
) -> Result<Prepared, RestoreError> {
    let incarnation = apply::incarnation(source)?;
    let fks = apply::foreign_keys(source)?;
    let (targets, history) = match load::source_id(archive, &incarnation)? {
        None => (Vec::new(), Vec::new()),
        Some(id) => {
            let targets = scope::select(archive, id, scope)?;
            let history = match targets.first() {
                Some(&first) => load::eligible_from(archive, id, statement_start(archive, first)?)?,
                None => Vec::new(),
            };
            (targets, history)
        }
    };
    Ok(Prepared {
        selected: targets.len(),
        plan: plan::undo(history, &targets, &fks, mode),
        incarnation,
        scope: scope.to_json(),
        redo_of: None,
        fks,
    })
}

/// Plans re-applying what undo run `run` undid.
pub fn prepare_redo(
    archive: &Archive,
    source: &Connection,
    run: i64,
    mode: Mode,
) -> Result<Prepared, RestoreError> {
    if mode == Mode::Cascade {
        return Err(RestoreError::BadRequest(
            "redo has no cascade mode: it re-applies exactly what one undo run undid".into(),
        ));
    }
    let incarnation = apply::incarnation(source)?;
    let undo_run = archive
        .run(run)?
        .ok_or_else(|| RestoreError::BadRequest(format!("the undo journal has no run {run}")))?;
    if undo_run.kind != RunKind::Undo || undo_run.state != RunState::Applied {
        return Err(RestoreError::BadRequest(format!(
            "run {run} is a {} run in state {}: only an applied undo run can be redone",
            undo_run.kind.word(),
            undo_run.state.word()
        )));
    }
    if undo_run.incarnation != incarnation {
        return Err(RestoreError::BadRequest(format!(
            "run {run} undid changes of another installation (incarnation {}) than this source's ({incarnation})",
            undo_run.incarnation
        )));
    }
    let ids: Vec<i64> = archive
        .run_items(run)?
        .into_iter()
        .filter(|i| i.outcome != "skipped")
        .map(|i| i.change_id)
        .collect();
    let changes = load::by_ids(archive, &ids)?;
    Ok(Prepared {
        selected: changes.len(),
        plan: plan::redo(changes, mode),
        incarnation,
        scope: format!("{{\"redo_of\":{run}}}"),
        redo_of: Some(run),
        fks: apply::foreign_keys(source)?,
    })
}

/// Applies a prepared plan and journals it; returns the run and each step's result (None
/// when the plan has no steps: nothing is recorded then).
pub fn execute(
    archive: &Archive,
    source: &mut Connection,
    prepared: &Prepared,
    actor: &Actor,
) -> Result<Option<(UndoRun, Vec<StepResult>)>, RestoreError> {
    let plan = &prepared.plan;
    if plan.refused() {
        return Err(RestoreError::Conflicts(plan.conflicts.clone()));
    }
    if plan.steps.is_empty() {
        return Ok(None);
    }
    let run = archive.begin_run(
        plan.kind,
        plan.mode.word(),
        &prepared.scope,
        &prepared.incarnation,
        prepared.redo_of,
    )?;
    let label = Label {
        tag: run.tx_tag.clone(),
        login: actor.login.clone(),
        host: actor.host.clone(),
        app: format!("rowtrail {}", plan.kind.word()),
    };
    let mut record = |results: &[StepResult]| -> Result<(), RestoreError> {
        let items: Vec<UndoItem> = results
            .iter()
            .enumerate()
            .map(|(n, r)| UndoItem {
                ordinal: n as i64 + 1,
                change_id: r.change_id,
                action: r.action.to_string(),
                outcome: r.outcome.word().to_string(),
            })
            .collect();
        Ok(archive.record_items(run.id, &items)?)
    };
    match apply::apply(source, plan, &prepared.fks, &label, &mut record) {
        Ok(results) => {
            archive.settle_run(run.id, true)?;
            let run = archive.run(run.id)?.unwrap_or(run);
            Ok(Some((run, results)))
        }
        Err(e) => {
            archive.settle_run(run.id, false)?;
            Err(e)
        }
    }
}

/// The first change archived with the same server time as change `id`, at or before it.
///
/// Foreign-key actions (`ON UPDATE CASCADE`) capture the child rows they move just before the
/// parent's own change, in the same statement and so at the same time: planning must see them
/// to know that those children now hang under the parent's new key.
fn statement_start(archive: &Archive, id: i64) -> Result<i64, RestoreError> {
    Ok(archive.connection().query_row(
        "SELECT coalesce(min(c.id), ?1) FROM changes c, changes f \
         WHERE f.id = ?1 AND c.at = f.at AND c.source_id = f.source_id AND c.id <= ?1",
        [id],
        |r| r.get(0),
    )?)
}
