//! Archived changes as apply steps: forward (what a replica or a rebuild does: the row must
//! hold the before-image and becomes the after-image) and backward (a rewind: the reverse).

use rowtrail_apply::{Job, JobStep, OnConflict, Step};
use rowtrail_reader::archive::ArchivedChange;
use rowtrail_sql::Table;

/// Which way changes are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Before-image → after-image.
    Forward,
    /// After-image → before-image.
    Backward,
}

/// One job of `changes`, each written to the replica form `form_of` gives for its table, in
/// the order given. A guard that does not hold stops it (the replica then differs from what
/// the archive says it should hold).
pub(crate) fn job<'a>(
    what: &'a str,
    changes: &'a [ArchivedChange],
    forms: &'a [&'a Table],
    comments: &'a [String],
    direction: Direction,
) -> Job<'a> {
    let steps = changes
        .iter()
        .zip(forms)
        .zip(comments)
        .map(|((c, form), comment)| {
            let (expect, target) = match direction {
                Direction::Forward => (c.before.as_deref(), c.after.as_deref()),
                Direction::Backward => (c.after.as_deref(), c.before.as_deref()),
            };
            JobStep {
                id: c.id,
                comment,
                step: Step {
                    table: form,
                    expect,
                    target,
                    rowid: c.rowid,
                },
            }
        })
        .collect();
    Job {
        what,
        steps,
        on_conflict: OnConflict::Stop,
        foreign_keys: &[],
        label: None,
        any_equal_row: true,
    }
}
