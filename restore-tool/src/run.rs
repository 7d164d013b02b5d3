//! A whole undo or redo: plan from the archive, apply to the source, record in the journal.
//!
//! The journal entry is written before the source is touched (state `applying`), the link to
//! the source transaction (SQL Server) before its first write, the items just before the source
//! commits, and the state `applied` just after. A run interrupted between those points is
//! settled by the next undo or redo ([`settle_pending`]): it committed exactly when a write
//! carrying its link ([`rowtrail_apply::Link`]) exists (in staging or already archived).
//!
//! The source is any apply [`Target`] with capture installed. Callers serialise runs on one
//! archive ([`crate::session`] holds `<archive>.undo.lock`).

use rowtrail_apply::{ApplyError, Hooks, Label, Link, StepResult, Target};
use rowtrail_reader::archive::{window_start, Archive, RunKind, RunState, UndoItem, UndoRun};
use rowtrail_sql::{ForeignKey, Value};

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
    pub fks: Vec<ForeignKey>,
}

/// The incarnation of the capture installed on `source`, or an error that says to install it.
pub fn incarnation(source: &dyn Target) -> Result<String, RestoreError> {
    source.incarnation()?.ok_or_else(|| {
        RestoreError::BadRequest(format!(
            "source {}: cannot read the incarnation (is capture installed? run `rowtrail sql install`)",
            source.location()
        ))
    })
}

/// What the writes of `run` carry in `source`'s capture.
fn link_of(source: &dyn Target, run: &UndoRun) -> Option<Link> {
    source.link(&run.tx_tag, run.source_tx)
}

/// The transaction value the archive records for the writes a link names.
fn link_value(link: &Link) -> Value {
    match link {
        Link::Tag(t) => Value::text(t),
        Link::Transaction(tx) => Value::Integer(*tx),
    }
}

/// Settles every run of the source's incarnation left `applying` by an interrupted undo or
/// redo; returns each run settled and whether it had committed.
pub fn settle_pending(
    archive: &Archive,
    source: &dyn Target,
) -> Result<Vec<(i64, bool)>, RestoreError> {
    let incarnation = incarnation(source)?;
    let mut settled = Vec::new();
    for run in archive.runs(Some(RunState::Applying))? {
        if run.incarnation != incarnation {
            continue;
        }
        let committed = match link_of(source, &run) {
            None => false,
            // Staging first: the reader deletes a write from staging only after archiving it,
            // so a write missing from staging now is archived already, or was never made.
            // Within the run's window: a transaction id the server reuses after a restart is
            // another transaction.
            Some(l) => {
                let since = window_start(run.created_us);
                source.staged_with(&l, since)?
                    || archive.has_changes_in_tx(&incarnation, &link_value(&l), since)?
            }
        };
        archive.settle_run(run.id, committed)?;
        settled.push((run.id, committed));
    }
    Ok(settled)
}

/// Plans undoing `scope` on `source`; refused when a transaction the plan touches still has
/// images in the source's staging ([`crate::staged`]).
pub fn prepare_undo(
    archive: &Archive,
    source: &dyn Target,
    scope: &Scope,
    mode: Mode,
) -> Result<Prepared, RestoreError> {
    let incarnation = incarnation(source)?;
    let fks = source.foreign_keys()?;
    let targets = scope::select(archive, &incarnation, scope)?;
    let history = match targets.first() {
        Some(&first) => archive.changes(&rowtrail_reader::archive::ChangeQuery {
            incarnation: Some(incarnation.clone()),
            undo_eligible: true,
            after_id: Some(archive.statement_start(first)? - 1),
            ..Default::default()
        })?,
        None => Vec::new(),
    };
    let plan = plan::undo(history, &targets, &fks, mode);
    // Half a transaction is never undone: the rest of it must be archived first.
    if let Some(partly) = crate::staged::partly_staged(source, &plan.steps)? {
        return Err(RestoreError::PartlyStaged(partly));
    }
    Ok(Prepared {
        selected: targets.len(),
        plan,
        incarnation,
        scope: scope.to_json(),
        redo_of: None,
        fks,
    })
}

/// Plans re-applying, to a source restored from an old backup, the changes archived after its
/// backup point: every change of incarnation `from` above seq `after` (a transaction boundary)
/// up to the newest cut, forward in archive order, each guarded (the row must be what the change
/// found). Journaled as a redo run of `from` whose scope names it and the seqs.
pub fn prepare_reapply(
    archive: &Archive,
    source: &dyn Target,
    from: &str,
    after: i64,
    mode: Mode,
) -> Result<Prepared, RestoreError> {
    if mode == Mode::Cascade {
        return Err(RestoreError::BadRequest(
            "re-applying has no cascade mode: it applies exactly the changes archived after the \
             backup point"
                .into(),
        ));
    }
    // Capture must be installed; the run is the restored incarnation's (the one the archive
    // knows), whatever the source has been given since.
    incarnation(source)?;
    let start = archive
        .cut_at_seq(from, after)
        .map_err(|e| RestoreError::BadRequest(e.to_string()))?;
    let newest = archive.cut(from, None)?.ok_or_else(|| {
        RestoreError::BadRequest(format!(
            "the archive holds no complete state of source {from}"
        ))
    })?;
    let changes = archive.changes(&rowtrail_reader::archive::ChangeQuery {
        incarnation: Some(from.to_string()),
        after_id: Some(start.change_id),
        before_id: Some(newest.change_id + 1),
        ..Default::default()
    })?;
    Ok(Prepared {
        selected: changes.len(),
        plan: plan::redo(changes, mode),
        incarnation: from.to_string(),
        scope: serde_json::json!({"reapply_of": from, "after_seq": after, "to_seq": newest.seq})
            .to_string(),
        redo_of: None,
        fks: source.foreign_keys()?,
    })
}

/// Plans re-applying what undo run `run` undid.
pub fn prepare_redo(
    archive: &Archive,
    source: &dyn Target,
    run: i64,
    mode: Mode,
) -> Result<Prepared, RestoreError> {
    if mode == Mode::Cascade {
        return Err(RestoreError::BadRequest(
            "redo has no cascade mode: it re-applies exactly what one undo run undid".into(),
        ));
    }
    let incarnation = incarnation(source)?;
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
    let changes = if ids.is_empty() {
        Vec::new()
    } else {
        archive.changes(&rowtrail_reader::archive::ChangeQuery {
            ids: Some(ids),
            ..Default::default()
        })?
    };
    Ok(Prepared {
        selected: changes.len(),
        plan: plan::redo(changes, mode),
        incarnation,
        scope: format!("{{\"redo_of\":{run}}}"),
        redo_of: Some(run),
        fks: source.foreign_keys()?,
    })
}

/// The journal's side of an apply: the link and the items of one run.
struct RunJournal<'a> {
    archive: &'a Archive,
    run: i64,
    progress: &'a mut dyn FnMut(usize),
}

impl Hooks for RunJournal<'_> {
    fn link(&mut self, tx: i64) -> Result<(), ApplyError> {
        Ok(self.archive.link_run(self.run, tx)?)
    }

    fn before_commit(&mut self, results: &[StepResult]) -> Result<(), ApplyError> {
        let items: Vec<UndoItem> = results
            .iter()
            .enumerate()
            .map(|(n, r)| UndoItem {
                ordinal: n as i64 + 1,
                change_id: r.id,
                action: r.action.to_string(),
                outcome: r.outcome.word().to_string(),
            })
            .collect();
        Ok(self.archive.record_items(self.run, &items)?)
    }

    fn progress(&mut self, done: usize) {
        (self.progress)(done);
    }
}

/// Applies a prepared plan and journals it; returns the run and each step's result (None
/// when the plan has no steps: nothing is recorded then).
pub fn execute(
    archive: &Archive,
    source: &mut dyn Target,
    prepared: &Prepared,
    actor: &Actor,
) -> Result<Option<(UndoRun, Vec<StepResult>)>, RestoreError> {
    execute_with_progress(archive, source, prepared, actor, &mut |_| {})
}

/// [`execute`], telling `progress` now and then how many steps have run.
pub fn execute_with_progress(
    archive: &Archive,
    source: &mut dyn Target,
    prepared: &Prepared,
    actor: &Actor,
    progress: &mut dyn FnMut(usize),
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
    let mut journal = RunJournal {
        archive,
        run: run.id,
        progress,
    };
    let comments = plan.comments();
    let job = plan.job(&comments, &prepared.fks, Some(&label));
    match source.apply(&job, &mut journal) {
        Ok(results) => {
            archive.settle_run(run.id, true)?;
            let run = archive.run(run.id)?.unwrap_or(run);
            Ok(Some((run, results)))
        }
        // The capture tells later whether the source committed.
        Err(e @ ApplyError::CommitUnknown { .. }) => Err(e.into()),
        Err(e) => {
            archive.settle_run(run.id, false)?;
            Err(e.into())
        }
    }
}
