//! A SQLite source as an undo target: the connection itself, through [`crate::apply`].
//!
//! The run's writes carry its tag ([`Link::Tag`]): the apply labels its transaction with a
//! `rowtrail_context` row, which the capture triggers read.

use rowtrail_reader::archive::UndoRun;
use rowtrail_sql::Dialect;
use rusqlite::Connection;

use super::{Journal, UndoTarget};
use crate::apply::{self, Label, StepResult};
use crate::conflict::ForeignKey;
use crate::link::Link;
use crate::plan::Plan;
use crate::RestoreError;

impl UndoTarget for Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn location(&self) -> String {
        self.path().unwrap_or("(memory)").to_string()
    }

    fn incarnation(&self) -> Result<String, RestoreError> {
        apply::incarnation(self)
    }

    fn foreign_keys(&self) -> Result<Vec<ForeignKey>, RestoreError> {
        apply::foreign_keys(self)
    }

    fn link(&self, run: &UndoRun, _recorded_tx: Option<i64>) -> Option<Link> {
        Some(Link::Tag(run.tx_tag.clone()))
    }

    fn staged_with(&self, link: &Link) -> Result<bool, RestoreError> {
        match link {
            Link::Tag(tag) => apply::staged_with_tag(self, tag),
            // SQLite's capture records the writer's declared label, never a transaction id.
            Link::Transaction(_) => Ok(false),
        }
    }

    fn script(
        &self,
        plan: &Plan,
        _fks: &[ForeignKey],
        header: &str,
    ) -> Result<String, RestoreError> {
        apply::script(plan, header, Dialect::Sqlite)
    }

    fn apply(
        &mut self,
        plan: &Plan,
        fks: &[ForeignKey],
        label: &Label,
        journal: &mut dyn Journal,
    ) -> Result<Vec<StepResult>, RestoreError> {
        apply::apply(self, plan, fks, label, &mut |results| {
            journal.before_commit(results)
        })
    }
}
