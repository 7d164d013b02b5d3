//! What a job is made of, and what comes back.

use rowtrail_sql::undo::{OnConflict, ScriptStep, Step};
use rowtrail_sql::ForeignKey;

use crate::ApplyError;

/// One row change of a job.
#[derive(Debug, Clone, Copy)]
pub struct JobStep<'a> {
    /// The caller's id for the step: the archived change it undoes or applies.
    pub id: i64,
    /// One line describing it, without row values (scripts and errors show it).
    pub comment: &'a str,
    /// The row change.
    pub step: Step<'a>,
}

/// Row changes applied in one transaction.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// `undo`, `redo`, `replica apply`, …: what the job is, for messages.
    pub what: &'a str,
    /// The steps, in the order the caller planned them.
    pub steps: Vec<JobStep<'a>>,
    /// What a step whose guard does not hold does.
    pub on_conflict: OnConflict,
    /// The target's foreign keys (an engine that checks them immediately orders steps by them).
    pub foreign_keys: &'a [ForeignKey],
    /// How the target's capture labels the job's writes (SQLite sources), if it has capture.
    pub label: Option<&'a Label>,
    /// Whether a step on a table without a key may touch any one of several equal rows. Off
    /// for undo (which of them a user meant matters to the audit); on for a copy, whose equal
    /// rows nobody can tell apart.
    pub any_equal_row: bool,
}

impl Job<'_> {
    /// The steps as a script renders them.
    pub fn script_steps(&self) -> Vec<ScriptStep<'_>> {
        self.steps
            .iter()
            .map(|s| ScriptStep {
                comment: s.comment,
                step: s.step,
            })
            .collect()
    }
}

/// How a job's writes are labelled in a SQLite source's capture (a `rowtrail_context` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The job's tag (`undo:<id>`), recorded as the transaction of every write.
    pub tag: String,
    /// The login recorded for the writes.
    pub login: String,
    /// The host recorded for the writes.
    pub host: Option<String>,
    /// The application recorded for the writes.
    pub app: String,
}

/// What a job's writes carry as their transaction in the target's capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// The job's tag (`undo:<id>`, `redo:<id>`): SQLite sources.
    Tag(String),
    /// The id of the source transaction the job wrote in: SQL Server sources.
    Transaction(i64),
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Tag(t) => write!(f, "{t}"),
            Link::Transaction(id) => write!(f, "{id}"),
        }
    }
}

/// What happened to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guard held and the row was changed.
    Applied,
    /// The guard failed and the row was made to match anyway (force).
    Forced,
    /// The guard failed and the row was left alone (skip).
    Skipped,
}

impl Outcome {
    /// The word in the journal.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Forced => "forced",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The step's position in [`Job::steps`].
    pub index: usize,
    /// The step's id ([`JobStep::id`]).
    pub id: i64,
    /// `insert`, `update` or `delete`.
    pub action: &'static str,
    /// What happened.
    pub outcome: Outcome,
}

/// What an apply tells its caller while it runs.
pub trait Hooks {
    /// The source transaction the job writes in (SQL Server), known while that transaction is
    /// open and before any write; recorded so the writes can be linked to the job.
    fn link(&mut self, tx: i64) -> Result<(), ApplyError>;
    /// Every step's result, after all steps succeeded and before the target commits; an error
    /// rolls the target back.
    fn before_commit(&mut self, results: &[StepResult]) -> Result<(), ApplyError>;
    /// `done` of the job's steps have run (called now and then during a long job).
    fn progress(&mut self, _done: usize) {}
}
