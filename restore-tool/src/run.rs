//! A whole undo or redo: plan from the archive, apply to the source, record in the journal.
//!
//! The journal entry is written before the source is touched (state `applying`), the link to
//! the source transaction (SQL Server) before its first write, the items just before the source
//! commits, and the state `applied` just after. A run interrupted between those points is
//! settled by the next undo or redo ([`settle_pending`]): it committed exactly when a write
//! carrying its link ([`crate::link`]) exists (in staging or already archived).
//!
//! The source is any [`UndoTarget`]: a [`rusqlite::Connection`] or a SQL Server
//! [`crate::target::MssqlTarget`]. Callers serialise runs on one archive (the CLI holds
//! `<archive>.undo.lock`).

use rowtrail_reader::archive::{Archive, RunKind, RunState, UndoItem, UndoRun};

use crate::apply::{Label, StepResult};
use crate::link;
use crate::load;
use crate::plan::{self, Mode, Plan};
use crate::scope::{self, Scope};
use crate::target::{Journal, UndoTarget};
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

/// Settles every run of the source's incarnation left `applying` by an interrupted undo or
/// redo; returns each run settled and whether it had committed.
pub fn settle_pending<T: UndoTarget + ?Sized>(
    archive: &Archive,
    source: &T,
) -> Result<Vec<(i64, bool)>, RestoreError> {
    let incarnation = source.incarnation()?;
    let mut settled = Vec::new();
    for run in archive.runs(Some(RunState::Applying))? {
        if run.incarnation != incarnation {
            continue;
        }
        let committed = match source.link(&run, link::recorded(archive, run.id)?) {
            None => false,
            // Staging first: the reader deletes a write from staging only after archiving it,
            // so a write missing from staging now is archived already, or was never made.
            Some(l) => source.staged_with(&l)? || link::archived(archive, &incarnation, &l)?,
        };
        archive.settle_run(run.id, committed)?;
        settled.push((run.id, committed));
    }
    Ok(settled)
}

/// Plans undoing `scope` on the source behind `source`.
pub fn prepare_undo<T: UndoTarget + ?Sized>(
    archive: &Archive,
    source: &T,
    scope: &Scope,
    mode: Mode,
) -> Result<Prepared, RestoreError> {
    let incarnation = source.incarnation()?;
    let fks = source.foreign_keys()?;
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
pub fn prepare_redo<T: UndoTarget + ?Sized>(
    archive: &Archive,
    source: &T,
    run: i64,
    mode: Mode,
) -> Result<Prepared, RestoreError> {
    if mode == Mode::Cascade {
        return Err(RestoreError::BadRequest(
            "redo has no cascade mode: it re-applies exactly what one undo run undid".into(),
        ));
    }
    let incarnation = source.incarnation()?;
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
        fks: source.foreign_keys()?,
    })
}

/// The journal's side of an apply: the link and the items of one run.
struct RunJournal<'a> {
    archive: &'a Archive,
    run: i64,
}

impl Journal for RunJournal<'_> {
    fn link(&mut self, tx: i64) -> Result<(), RestoreError> {
        link::record(self.archive, self.run, tx)
    }

    fn before_commit(&mut self, results: &[StepResult]) -> Result<(), RestoreError> {
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
        Ok(self.archive.record_items(self.run, &items)?)
    }
}

/// Applies a prepared plan and journals it; returns the run and each step's result (None
/// when the plan has no steps: nothing is recorded then).
pub fn execute<T: UndoTarget + ?Sized>(
    archive: &Archive,
    source: &mut T,
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
    let mut journal = RunJournal {
        archive,
        run: run.id,
    };
    match source.apply(plan, &prepared.fks, &label, &mut journal) {
        Ok(results) => {
            archive.settle_run(run.id, true)?;
            let run = archive.run(run.id)?.unwrap_or(run);
            Ok(Some((run, results)))
        }
        // The capture tells later whether the source committed.
        Err(e @ RestoreError::CommitUnknown { .. }) => Err(e),
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
