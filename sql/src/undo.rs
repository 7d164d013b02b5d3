//! What an undo, a redo or a forward apply asks of an engine, in the terms every dialect shares.
//!
//! A [`Step`] says what a row must be now (`expect`; `None` means its key must be free) and what
//! it must become (`target`; `None` means deleted). Planning (which steps, in which order) lives
//! in the restore tool; applying them to a connection lives in the apply layer. Each dialect has
//! one renderer that writes steps as guarded statements: [`crate::sqlite::undo`] for SQLite and
//! [`crate::mssql::undo`] for SQL Server.

use crate::Table;
use crate::Value;

/// One inverse (or, for redo and forward apply, forward) row change.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The table.
    pub table: &'a Table,
    /// What the row must equal now; `None` when the row must not exist (its key is free).
    pub expect: Option<&'a [Value]>,
    /// What the row must become; `None` to delete it.
    pub target: Option<&'a [Value]>,
    /// The SQLite rowid the row had, preferred among equal rows of a table without a key.
    pub rowid: Option<i64>,
}

impl Step<'_> {
    /// `insert`, `update` or `delete`: the statement the step applies.
    pub fn action(&self) -> &'static str {
        match (self.expect, self.target) {
            (None, _) => "insert",
            (Some(_), Some(_)) => "update",
            (Some(_), None) => "delete",
        }
    }
}

/// How a step whose guard does not hold is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// Stop, and roll everything back.
    Stop,
    /// Leave that row alone and go on.
    Skip,
    /// Make the row equal the target anyway.
    Force,
}

/// One step of a script, with the comment that says what it does.
#[derive(Debug, Clone, Copy)]
pub struct ScriptStep<'a> {
    /// One line (no line breaks) describing the step.
    pub comment: &'a str,
    /// The step.
    pub step: Step<'a>,
}
