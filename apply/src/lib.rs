//! rowtrail-apply: guarded row changes applied to an engine in one transaction.
//!
//! Undo and redo (backward), a replica, a rebuild as of a time and a handback (forward) are one
//! operation on different steps: a [`Job`] of [`JobStep`]s, each saying what a row must be now
//! and what it must become, applied to a [`Target`] in one transaction, each step's guard
//! checked, the outcome of every step reported, and the caller told before the commit
//! ([`Hooks`]) so what it records about the job commits with it or not at all.
//!
//! * [`Target`]: a database rowtrail writes to, one implementation per engine, laid out alike:
//!   [`sqlite::SqliteTarget`] and [`mssql::MssqlTarget`]; [`open`] opens the one a
//!   [`SourceSpec`] names.
//! * [`Link`]: how the capture on a target recognises the job's own writes.
//! * Rendering is each dialect's own: [`rowtrail_sql::sqlite::undo`] and
//!   [`rowtrail_sql::mssql::undo`].

mod error;
mod job;
pub mod mssql;
pub mod sqlite;

pub use error::ApplyError;
pub use job::{Hooks, Job, JobStep, Label, Link, Outcome, StepResult};
pub use rowtrail_sql::undo::{OnConflict, Step};
pub use rowtrail_sql::ForeignKey;

use rowtrail_reader::source::SourceSpec;
use rowtrail_sql::Dialect;

/// A database rowtrail writes to: a captured source (undo, redo, handback) or a copy of one.
///
/// Reading methods take `&self`, so a plan can be made while only a shared borrow is at hand;
/// applying takes `&mut self`.
pub trait Target {
    /// The target's dialect.
    fn dialect(&self) -> Dialect;
    /// Where it is, for messages (a file, or a database on a server; never credentials).
    fn location(&self) -> String;
    /// The incarnation of the capture installed on it; `None` when it has none.
    fn incarnation(&self) -> Result<Option<String>, ApplyError>;
    /// Every foreign key declared in it, its tables named as the archive names them.
    fn foreign_keys(&self) -> Result<Vec<ForeignKey>, ApplyError>;
    /// What the writes of a job labelled `tag` carry in this target's capture, given the source
    /// transaction recorded for it; `None` when it cannot have written anything (it never
    /// reached the point where its writes could be linked).
    fn link(&self, tag: &str, recorded_tx: Option<i64>) -> Option<Link>;
    /// Whether the target's staging still holds a write carrying `link` (not yet archived),
    /// stamped at or after `since_us` (µs since the epoch; a transaction id the server reused
    /// later is another transaction, and an earlier one not the job's).
    fn staged_with(&self, link: &Link, since_us: i64) -> Result<bool, ApplyError>;
    /// The first of `wanted` (each a link and its `since_us`, as for [`Target::staged_with`])
    /// whose writes staging still holds, by its index. An engine that can answer for many
    /// links at once in fewer round trips does so.
    fn first_staged(&self, wanted: &[(Link, i64)]) -> Result<Option<usize>, ApplyError> {
        for (k, (link, since)) in wanted.iter().enumerate() {
            if self.staged_with(link, *since)? {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }
    /// The job as a script a DBA can read and run by hand, `header` first.
    fn script(&self, job: &Job<'_>, header: &str) -> Result<String, ApplyError>;
    /// Applies `job` in one transaction, telling `hooks` the link and the results before the
    /// commit; the results are in the order the steps were applied.
    fn apply(
        &mut self,
        job: &Job<'_>,
        hooks: &mut dyn Hooks,
    ) -> Result<Vec<StepResult>, ApplyError>;
}

/// Opens the target `spec` names, reached before anything else is touched: a target that cannot
/// be reached fails here.
pub fn open(spec: &SourceSpec) -> Result<Box<dyn Target>, ApplyError> {
    Ok(match spec {
        SourceSpec::Sqlite { path, .. } => Box::new(sqlite::SqliteTarget::open(path)?),
        SourceSpec::Mssql(settings) => Box::new(mssql::MssqlTarget::connect(settings)?),
    })
}
