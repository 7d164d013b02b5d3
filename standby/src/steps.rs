//! Archived changes as apply steps: forward (what a replica or a rebuild does: the row must
//! hold the before-image and becomes the after-image) and backward (a rewind: the reverse),
//! and the labelled crash points of writing them to a replica ([`FAILPOINTS`]).

use rowtrail_apply::{Job, JobStep, OnConflict, Step};
use rowtrail_reader::archive::ArchivedChange;
use rowtrail_sql::Table;

/// A step forward (or back) is about to open its replica transaction.
pub(crate) const BEFORE_TRANSACTION: &str = "replica-before-transaction";
/// Its rows are written, its position not yet.
pub(crate) const ROWS_WRITTEN: &str = "replica-rows-written";
/// Its rows and position are written, not yet committed.
pub(crate) const POSITION_WRITTEN: &str = "replica-position-written";
/// It is committed (the next step, if any, not begun).
pub(crate) const COMMITTED: &str = "replica-committed";
/// A new replica's tables are loaded from the baselines, not yet committed.
pub(crate) const CREATE_LOADED: &str = "replica-create-loaded";
/// A new replica is built and brought to its cut beside its name, not yet renamed to it.
pub(crate) const CREATE_BUILT: &str = "replica-create-built";

/// Every labelled crash point of building and applying to a replica, in the order they are
/// reached (`ROWTRAIL_TEST_FAILPOINT`, see [`rowtrail_reader::failpoint`]); the apply layer's
/// own `undo-mid-apply` is reached halfway through a step's rows, between the first two.
pub const FAILPOINTS: [&str; 6] = [
    CREATE_LOADED,
    CREATE_BUILT,
    BEFORE_TRANSACTION,
    ROWS_WRITTEN,
    POSITION_WRITTEN,
    COMMITTED,
];

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
