//! A job as T-SQL ([`rowtrail_sql::mssql::undo`]): its steps in an order SQL Server's
//! immediate foreign-key checks accept, and what the script reports back turned into step
//! results.
//!
//! The dry run prints exactly the script `--apply` sends (its batches, in order, in one
//! transaction), so the order is decided here, once, from the job and the target's foreign
//! keys.

use rowtrail_sql::mssql::undo::{self, OUTCOME_FORCED, OUTCOME_SKIPPED};
use rowtrail_sql::mssql::Script;
use rowtrail_sql::undo::ScriptStep;

use crate::{ApplyError, Job, Outcome, StepResult};

/// A rendered job.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The script (header and one batch).
    pub script: Script,
    /// `order[k]` is the job step that the script's step `k + 1` applies.
    pub order: Vec<usize>,
}

impl Rendered {
    /// The batches sent to the server, in order.
    pub fn batches(&self) -> impl Iterator<Item = &str> {
        self.script.batches().iter().map(|b| b.sql.as_str())
    }

    /// The job step of the script's step `n` (1-based).
    pub fn plan_step(&self, n: usize) -> Option<usize> {
        n.checked_sub(1).and_then(|k| self.order.get(k).copied())
    }

    /// How many script steps batches `0..=batch` hold together.
    pub fn steps_through(&self, batch: usize) -> usize {
        self.step_at_line(batch, u32::MAX).unwrap_or(0)
    }

    /// The script step whose statements hold line `line` (1-based) of batch `batch` (0-based):
    /// the last `-- step N:` comment at or above it, the steps numbered on from batch to batch.
    pub fn step_at_line(&self, batch: usize, line: u32) -> Option<usize> {
        let mut step = None;
        for (b, text) in self.batches().enumerate().take(batch + 1) {
            for (i, text) in text.lines().enumerate() {
                if b == batch && i as u32 + 1 > line {
                    break;
                }
                let next = step.map_or(1, |s| s + 1);
                if text.starts_with(&format!("-- step {next}: ")) {
                    step = Some(next);
                }
            }
        }
        step
    }
}

/// Renders `job` for SQL Server, its steps in an order its foreign keys accept.
pub fn render(job: &Job<'_>, header: &str) -> Result<Rendered, ApplyError> {
    let steps = job.script_steps();
    let order = undo::foreign_key_order(&steps, job.foreign_keys);
    let ordered: Vec<ScriptStep<'_>> = order.iter().map(|&i| steps[i]).collect();
    let script = undo::script(header, &ordered, job.on_conflict)?;
    Ok(Rendered { script, order })
}

/// Each step's result, in the order the script applied them, from the script's outcome rows
/// (`(step, outcome)` for each step whose guard did not hold; every other step applied).
pub fn results(
    job: &Job<'_>,
    rendered: &Rendered,
    outcomes: &[(i64, String)],
) -> Result<Vec<StepResult>, ApplyError> {
    let mut by_step = vec![Outcome::Applied; rendered.order.len()];
    for (step, word) in outcomes {
        let outcome = match word.as_str() {
            OUTCOME_SKIPPED => Outcome::Skipped,
            OUTCOME_FORCED => Outcome::Forced,
            other => {
                return Err(ApplyError::Hook(format!(
                    "the {} script reported outcome {other:?} for step {step}, which rowtrail does not know",
                    job.what
                )))
            }
        };
        let slot = usize::try_from(*step)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|k| by_step.get_mut(k))
            .ok_or_else(|| {
                ApplyError::Hook(format!(
                    "the {} script reported an outcome for step {step}, which it does not have",
                    job.what
                ))
            })?;
        *slot = outcome;
    }
    Ok(rendered
        .order
        .iter()
        .zip(by_step)
        .map(|(&i, outcome)| {
            let s = &job.steps[i];
            StepResult {
                index: i,
                id: s.id,
                action: s.step.action(),
                outcome,
            }
        })
        .collect())
}
