//! The source database an undo or redo applies to: SQLite ([`sqlite`], a
//! [`rusqlite::Connection`]) or SQL Server ([`mssql::MssqlTarget`]).
//!
//! Planning, conflicts and the journal are the same for both; a target supplies what only the
//! source knows (its incarnation, its foreign keys, whether staging still holds a run's writes),
//! renders the plan in its dialect, and applies it in one transaction whose writes the capture
//! links to the run ([`crate::link`]).

pub mod mssql;
pub mod mssql_errors;
pub mod mssql_keys;
pub mod mssql_script;
pub mod sqlite;

use rowtrail_reader::archive::UndoRun;
use rowtrail_sql::Dialect;

use crate::apply::{Label, StepResult};
use crate::conflict::ForeignKey;
use crate::link::Link;
use crate::plan::Plan;
use crate::RestoreError;

pub use mssql::MssqlTarget;

/// What an apply tells the undo journal while it runs.
pub trait Journal {
    /// The source transaction the run writes in (SQL Server), known while that transaction is
    /// open and before any write; recorded so the writes can be linked to the run.
    fn link(&mut self, tx: i64) -> Result<(), RestoreError>;
    /// Every step's result, after all steps succeeded and before the source commits; an error
    /// rolls the source back.
    fn before_commit(&mut self, results: &[StepResult]) -> Result<(), RestoreError>;
}

/// A source database that undo and redo plans are made for and applied to.
///
/// Reading methods take `&self` so a plan can be made while only a shared borrow is at hand;
/// applying takes `&mut self`.
pub trait UndoTarget {
    /// The source's dialect.
    fn dialect(&self) -> Dialect;
    /// Where the source is, for messages (a file, or a database on a server; never
    /// credentials).
    fn location(&self) -> String;
    /// The source's incarnation id.
    fn incarnation(&self) -> Result<String, RestoreError>;
    /// Every foreign key declared in the source, its tables named as the archive names them.
    fn foreign_keys(&self) -> Result<Vec<ForeignKey>, RestoreError>;
    /// What the writes of `run` carry as their transaction, given the source transaction the
    /// journal recorded for it; `None` when the run cannot have written anything (it never
    /// reached the point where its writes could be linked).
    fn link(&self, run: &UndoRun, recorded_tx: Option<i64>) -> Option<Link>;
    /// Whether the source's staging still holds a write carrying `link` (not yet archived).
    fn staged_with(&self, link: &Link) -> Result<bool, RestoreError>;
    /// The plan as a script a DBA can read and run by hand, `header` first.
    fn script(&self, plan: &Plan, fks: &[ForeignKey], header: &str)
        -> Result<String, RestoreError>;
    /// Applies `plan` in one source transaction, telling `journal` the link and the results
    /// before the commit.
    fn apply(
        &mut self,
        plan: &Plan,
        fks: &[ForeignKey],
        label: &Label,
        journal: &mut dyn Journal,
    ) -> Result<Vec<StepResult>, RestoreError>;
}

/// The header of a plan's script: what it is, for which source, and how to run it by hand.
pub fn script_header(plan: &Plan, incarnation: &str, dialect: Dialect) -> String {
    let kind = plan.kind.word();
    let what = format!(
        "rowtrail {kind} script ({} step(s), mode {})",
        plan.steps.len(),
        plan.mode.word()
    );
    match dialect {
        Dialect::Sqlite => format!(
            "{what}, for the SQLite source {incarnation}.\n\
             Run by hand with: sqlite3 -bail <source.db> < this-file.sql (one transaction; a failed\n\
             guard stops it and nothing changes). `rowtrail {kind} --apply` also records it in the undo journal."
        ),
        // The T-SQL renderer adds the sqlcmd line itself.
        Dialect::Mssql => format!(
            "{what}, for the SQL Server source {incarnation}.\n\
             A failed guard stops it with error 50003 and nothing changes. Run by hand, it is not\n\
             journaled; `rowtrail {kind} --apply` runs it and records it in the undo journal."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Mode;
    use rowtrail_reader::archive::RunKind;

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
