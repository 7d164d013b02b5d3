//! SQL Server's refusals of a job's step, as the conflicts they are (exit code 3).
//!
//! * `THROW 50003` from a guard that did not hold (refuse and cascade modes): the row no longer
//!   equals its archived image, or a re-insert's key is taken.
//! * `547` (a foreign-key or check constraint), `2627` and `2601` (a unique key or index): the
//!   source's constraints refused a step, for a row the archive does not know about.
//!
//! Each names the change the step undoes (its comment: who, when, which table; never row
//! values), not the server's text, which for a key violation quotes the key's values. Any other
//! server error is reported as it is. Under `XACT_ABORT` each of them has rolled the whole
//! transaction back: nothing changed.

use rowtrail_reader::mssql::error::ServerError;

use super::script::Rendered;
use crate::{ApplyError, Job};

/// The error number of the undo script's guard (`THROW 50003, N'rowtrail undo: step N …'`).
pub const GUARD: u32 = 50003;
/// A foreign-key or check constraint refused a statement.
pub const CONSTRAINT: u32 = 547;
/// A unique constraint refused a statement.
pub const UNIQUE_CONSTRAINT: u32 = 2627;
/// A unique index refused a statement.
pub const UNIQUE_INDEX: u32 = 2601;

/// The step number in a guard's message (`rowtrail undo: step 12 conflicts: …`).
fn step_in_message(message: &str) -> Option<usize> {
    let rest = message.split("step ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The conflict `e`, raised by batch `batch` (0-based) of the script, stands for, or `None`
/// when it is not one (report it as it is).
pub fn refusal(
    e: &ServerError,
    rendered: &Rendered,
    batch: usize,
    job: &Job<'_>,
) -> Option<ApplyError> {
    let why = match e.code {
        GUARD => "",
        CONSTRAINT => " (a foreign-key or check constraint of the source refused it)",
        UNIQUE_CONSTRAINT | UNIQUE_INDEX => {
            " (a unique key of the source refused it: that key is taken)"
        }
        _ => return None,
    };
    let step = match e.code {
        GUARD => step_in_message(&e.message).or_else(|| rendered.step_at_line(batch, e.line)),
        _ => rendered.step_at_line(batch, e.line),
    };
    let what = match step.and_then(|n| rendered.plan_step(n).map(|i| (n, i))) {
        Some((n, i)) => format!("step {n}: {}{why}", job.steps[i].comment),
        None => format!("a step (SQL Server error {}){why}", e.code),
    };
    Some(ApplyError::Guards {
        what: job.what.to_string(),
        rows: vec![what],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_message_names_its_step() {
        assert_eq!(
            step_in_message("rowtrail undo: step 12 conflicts: the row no longer equals its archived image, or its key is taken"),
            Some(12)
        );
        assert_eq!(step_in_message("something else"), None);
    }
}
