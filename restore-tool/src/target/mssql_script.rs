//! A plan as T-SQL ([`rowtrail_sql::mssql::undo`]): its steps in an order SQL Server's
//! immediate foreign-key checks accept, and what the script reports back turned into the
//! journal's step results.
//!
//! The dry run prints exactly the script `--apply` sends (one batch), so the order is decided
//! here, once, from the plan and the source's foreign keys.

use rowtrail_sql::mssql::undo::{self, OUTCOME_FORCED, OUTCOME_SKIPPED};
use rowtrail_sql::mssql::Script;
use rowtrail_sql::undo::ScriptStep;

use crate::apply::{Outcome, StepResult};
use crate::conflict::ForeignKey;
use crate::plan::Plan;
use crate::RestoreError;

/// A rendered plan.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The script (header and one batch).
    pub script: Script,
    /// `order[k]` is the plan step that the script's step `k + 1` applies.
    pub order: Vec<usize>,
}

impl Rendered {
    /// The one batch sent to the server.
    pub fn batch(&self) -> &str {
        self.script.batches().first().map_or("", |b| b.sql.as_str())
    }

    /// The plan step of the script's step `n` (1-based).
    pub fn plan_step(&self, n: usize) -> Option<usize> {
        n.checked_sub(1).and_then(|k| self.order.get(k).copied())
    }

    /// The script step whose statements hold line `line` of the batch (1-based): the last
    /// `-- step N:` comment at or above it.
    pub fn step_at_line(&self, line: u32) -> Option<usize> {
        let mut step = None;
        for (i, text) in self.batch().lines().enumerate() {
            if i as u32 + 1 > line {
                break;
            }
            let next = step.map_or(1, |s| s + 1);
            if text.starts_with(&format!("-- step {next}: ")) {
                step = Some(next);
            }
        }
        step
    }
}

/// Renders `plan` for SQL Server, its steps in an order `fks` accept.
pub fn render(plan: &Plan, fks: &[ForeignKey], header: &str) -> Result<Rendered, RestoreError> {
    let comments = plan.comments();
    let steps = plan.script_steps(&comments);
    let keys: Vec<undo::ForeignKey> = fks
        .iter()
        .map(|f| undo::ForeignKey {
            child: f.child.clone(),
            parent: f.parent.clone(),
        })
        .collect();
    let order = undo::foreign_key_order(&steps, &keys);
    let ordered: Vec<ScriptStep<'_>> = order.iter().map(|&i| steps[i]).collect();
    let script = undo::script(header, &ordered, plan.mode.on_conflict())?;
    Ok(Rendered { script, order })
}

/// Each step's result, in the order the script applied them, from the script's outcome rows
/// (`(step, outcome)` for each step whose guard did not hold; every other step applied).
pub fn results(
    plan: &Plan,
    rendered: &Rendered,
    outcomes: &[(i64, String)],
) -> Result<Vec<StepResult>, RestoreError> {
    let mut by_step = vec![Outcome::Applied; rendered.order.len()];
    for (step, word) in outcomes {
        let outcome = match word.as_str() {
            OUTCOME_SKIPPED => Outcome::Skipped,
            OUTCOME_FORCED => Outcome::Forced,
            other => {
                return Err(RestoreError::BadRequest(format!(
                    "the undo script reported outcome {other:?} for step {step}, which rowtrail does not know"
                )))
            }
        };
        let slot = usize::try_from(*step)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|k| by_step.get_mut(k))
            .ok_or_else(|| {
                RestoreError::BadRequest(format!(
                    "the undo script reported an outcome for step {step}, which it does not have"
                ))
            })?;
        *slot = outcome;
    }
    Ok(rendered
        .order
        .iter()
        .zip(by_step)
        .map(|(&i, outcome)| {
            let s = &plan.steps[i];
            StepResult {
                change_id: s.change.id,
                action: s.step().action(),
                outcome,
            }
        })
        .collect())
}
