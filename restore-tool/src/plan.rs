//! Undo and redo plans: which changes, in which order, under which conflict mode.
//!
//! Planning is pure: it takes archived changes (the scope and every later change of the same
//! source) and the source's foreign keys, and returns ordered steps. A plan becomes a
//! [`Job`] of the apply layer ([`Plan::job`]), which renders and applies it.

use std::collections::HashSet;

use rowtrail_apply::{Job, JobStep, Label};
use rowtrail_reader::archive::{ArchivedChange as Change, RunKind};
use rowtrail_sql::undo::{OnConflict, Step};
use rowtrail_sql::ForeignKey;
use serde::Serialize;

use crate::conflict::{ChangeRef, Conflict, Dependencies, Dependency};

/// What to do about later changes that depend on a change in scope (after Oracle's Flashback
/// Transaction Backout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Refuse the whole undo (the default).
    Refuse,
    /// Undo the dependent later changes too, newest first.
    Cascade,
    /// Leave the conflicting rows alone and undo the rest.
    Skip,
    /// Undo anyway: make each row equal its before-image whatever it is now.
    Force,
}

impl Mode {
    /// The mode's word in the journal.
    pub fn word(self) -> &'static str {
        match self {
            Mode::Refuse => "refuse",
            Mode::Cascade => "cascade",
            Mode::Skip => "skip",
            Mode::Force => "force",
        }
    }

    /// What a guard failure at apply time means in this mode.
    pub fn on_conflict(self) -> OnConflict {
        match self {
            Mode::Refuse | Mode::Cascade => OnConflict::Stop,
            Mode::Skip => OnConflict::Skip,
            Mode::Force => OnConflict::Force,
        }
    }
}

/// One step of a plan: a change, undone (inverse) or redone (forward).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    /// The archived change.
    pub change: Change,
    /// Redo (re-apply the change) rather than undo it.
    pub forward: bool,
}

impl PlannedStep {
    /// The row change this step makes, for rendering.
    pub fn step(&self) -> Step<'_> {
        let c = &self.change;
        let (expect, target) = if self.forward {
            (c.before.as_deref(), c.after.as_deref())
        } else {
            (c.after.as_deref(), c.before.as_deref())
        };
        Step {
            table: &c.table,
            expect,
            target,
            rowid: c.rowid,
        }
    }

    /// A one-line description (no row values).
    pub fn comment(&self) -> String {
        format!(
            "{} {}: {} {}",
            if self.forward { "redo" } else { "undo" },
            self.change.summary(),
            self.step().action(),
            rowtrail_sql::printable::printable(&self.change.table.name.to_string())
        )
    }
}

/// An ordered plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Undo or redo.
    pub kind: RunKind,
    /// The conflict mode.
    pub mode: Mode,
    /// Steps in the order they apply (undo: newest first; redo: oldest first).
    pub steps: Vec<PlannedStep>,
    /// Later changes outside the scope that depend on changes in it.
    pub conflicts: Vec<Conflict>,
    /// Changes added by cascade.
    pub cascaded: Vec<ChangeRef>,
    /// Changes left alone because of conflicts (skip mode).
    pub skipped: Vec<ChangeRef>,
}

impl Plan {
    /// Whether the plan must be refused as it stands.
    pub fn refused(&self) -> bool {
        self.mode == Mode::Refuse && !self.conflicts.is_empty()
    }

    /// Each step's one-line comment (no row values), in step order.
    pub fn comments(&self) -> Vec<String> {
        self.steps.iter().map(PlannedStep::comment).collect()
    }

    /// The plan as a job of the apply layer, each step with its line of `comments` (from
    /// [`Plan::comments`]).
    pub fn job<'a>(
        &'a self,
        comments: &'a [String],
        foreign_keys: &'a [ForeignKey],
        label: Option<&'a Label>,
    ) -> Job<'a> {
        Job {
            what: self.kind.word(),
            steps: self
                .steps
                .iter()
                .zip(comments)
                .map(|(s, comment)| JobStep {
                    id: s.change.id,
                    comment,
                    step: s.step(),
                })
                .collect(),
            on_conflict: self.mode.on_conflict(),
            foreign_keys,
            label,
            any_equal_row: false,
        }
    }
}

/// The header of a plan's script: what it is, for which source, and how to run it by hand.
pub fn script_header(plan: &Plan, incarnation: &str, dialect: rowtrail_sql::Dialect) -> String {
    let kind = plan.kind.word();
    let what = format!(
        "rowtrail {kind} script ({} step(s), mode {})",
        plan.steps.len(),
        plan.mode.word()
    );
    match dialect {
        rowtrail_sql::Dialect::Sqlite => format!(
            "{what}, for the SQLite source {incarnation}.\n\
             Run by hand with: sqlite3 -bail <source.db> < this-file.sql (one transaction; a failed\n\
             guard stops it and nothing changes). `rowtrail {kind} --apply` also records it in the undo journal."
        ),
        // The T-SQL renderer adds the sqlcmd line itself.
        rowtrail_sql::Dialect::Mssql => format!(
            "{what}, for the SQL Server source {incarnation}.\n\
             A failed guard stops it with error 50003 and nothing changes. Run by hand, it is not\n\
             journaled; `rowtrail {kind} --apply` runs it and records it in the undo journal."
        ),
    }
}

/// Plans the undo of `targets` (archive ids). `history` holds every eligible change of the
/// source from the oldest target on, oldest first (targets included).
pub fn undo(history: Vec<Change>, targets: &[i64], fks: &[ForeignKey], mode: Mode) -> Plan {
    let wanted: HashSet<i64> = targets.iter().copied().collect();
    let mut in_scope: Vec<bool> = history.iter().map(|c| wanted.contains(&c.id)).collect();
    let deps = Dependencies::new(&history, fks);
    let mut cascaded = Vec::new();
    if mode == Mode::Cascade {
        let mut work: Vec<usize> = (0..history.len()).filter(|&i| in_scope[i]).collect();
        while let Some(i) = work.pop() {
            for (j, _) in deps.of(i) {
                if !in_scope[j] {
                    in_scope[j] = true;
                    cascaded.push(ChangeRef::of(&history[j]));
                    work.push(j);
                }
            }
        }
        cascaded.sort_by_key(|c| c.id);
    }
    let mut conflicts = Vec::new();
    let mut skip = vec![false; history.len()];
    let scoped: Vec<(usize, Vec<(usize, Dependency)>)> = (0..history.len())
        .rev()
        .filter(|&i| in_scope[i])
        .map(|i| (i, deps.of(i)))
        .collect();
    for (i, dependents) in &scoped {
        for &(j, why) in dependents {
            if !in_scope[j] {
                conflicts.push(Conflict::between(&history[*i], &history[j], why));
            }
        }
    }
    // Skipped: changes with a dependent outside the scope, or one that is skipped (repeated
    // until nothing changes: a dependent is usually later, but not always).
    let mut changed = mode == Mode::Skip;
    while changed {
        changed = false;
        for (i, dependents) in &scoped {
            if !skip[*i] && dependents.iter().any(|&(j, _)| !in_scope[j] || skip[j]) {
                skip[*i] = true;
                changed = true;
            }
        }
    }
    conflicts.sort_by_key(|c| (c.change.id, c.later.id));
    let mut skipped = Vec::new();
    let kept = (0..history.len())
        .filter(|&i| in_scope[i] && !skip[i])
        .count();
    // Sized once: a plan can hold a great many changes, and each is moved here only once.
    let mut steps = Vec::with_capacity(kept);
    for (i, change) in history.into_iter().enumerate().rev() {
        if !in_scope[i] {
            continue;
        }
        if skip[i] {
            skipped.push(ChangeRef::of(&change));
        } else {
            steps.push(PlannedStep {
                change,
                forward: false,
            });
        }
    }
    skipped.reverse();
    Plan {
        kind: RunKind::Undo,
        mode,
        steps,
        conflicts,
        cascaded,
        skipped,
    }
}

/// Plans re-applying `changes` (the changes an undo run undid), oldest first. Conflicts are
/// found by the guards when it is applied: each row must still equal its before-image.
pub fn redo(mut changes: Vec<Change>, mode: Mode) -> Plan {
    changes.sort_by_key(|c| c.id);
    Plan {
        kind: RunKind::Redo,
        mode,
        steps: changes
            .into_iter()
            .map(|change| PlannedStep {
                change,
                forward: true,
            })
            .collect(),
        conflicts: Vec::new(),
        cascaded: Vec::new(),
        skipped: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowtrail_sql::Dialect;

    fn plan() -> Plan {
        Plan {
            kind: RunKind::Undo,
            mode: Mode::Skip,
            steps: vec![],
            conflicts: vec![],
            cascaded: vec![],
            skipped: vec![],
        }
    }

    #[test]
    fn headers_say_how_to_run_the_script_by_hand_for_the_engine() {
        let sqlite = script_header(&plan(), "inc-1", Dialect::Sqlite);
        assert!(
            sqlite.starts_with(
                "rowtrail undo script (0 step(s), mode skip), for the SQLite source inc-1."
            ) && sqlite.contains("sqlite3 -bail <source.db> < this-file.sql"),
            "{sqlite}"
        );
        let mssql = script_header(&plan(), "inc-2", Dialect::Mssql);
        assert!(
            mssql.contains("for the SQL Server source inc-2")
                && mssql.contains("error 50003")
                && !mssql.contains("sqlite3"),
            "{mssql}"
        );
    }
}
