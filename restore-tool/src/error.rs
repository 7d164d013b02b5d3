//! The restore tool's error type.

/// What can go wrong answering a question, or planning and applying an undo.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The archive could not be read.
    #[error(transparent)]
    Reader(#[from] rowtrail_reader::ReaderError),
    /// The source could not be written (a guard, a constraint, a lost commit, …).
    #[error(transparent)]
    Apply(Box<rowtrail_apply::ApplyError>),
    /// The table has no changes in the archive.
    #[error("table {table:?} has no archived changes{hint}")]
    UnknownTable {
        /// The name asked for.
        table: String,
        /// Which tables do.
        hint: String,
    },
    /// The key given does not fit the table's key.
    #[error("{0}")]
    BadKey(String),
    /// A scope or option that cannot be served.
    #[error("{0}")]
    BadRequest(String),
    /// The undo would conflict with later changes, and the mode is refuse.
    #[error("{}", crate::conflict::describe(.0))]
    Conflicts(Vec<crate::conflict::Conflict>),
    /// A transaction the undo touches is still partly in staging (not yet archived).
    #[error("{0}")]
    PartlyStaged(crate::staged::PartlyStaged),
    /// The source could not be reached: nothing was touched.
    #[error("cannot reach the {engine} source {location}; nothing was changed")]
    Unreachable {
        /// `SQLite` or `SQL Server`.
        engine: &'static str,
        /// Where the source is (never credentials).
        location: String,
        /// Why.
        #[source]
        cause: Box<rowtrail_apply::ApplyError>,
    },
    /// Another undo or redo holds the archive's undo lock.
    #[error("another undo or redo is running on this archive ({0})")]
    Busy(String),
    /// The output could not be written (a closed pipe ends a listing early).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The generated SQL could not be made.
    #[error(transparent)]
    Sql(#[from] rowtrail_sql::SqlError),
}

impl From<rowtrail_apply::ApplyError> for RestoreError {
    fn from(e: rowtrail_apply::ApplyError) -> Self {
        RestoreError::Apply(Box::new(e))
    }
}

impl RestoreError {
    /// Whether the error is a conflict with the source's rows (exit code 3): conflicts with
    /// later changes, guards that did not hold, an ambiguous row, a foreign key the undo would
    /// break.
    pub fn is_conflict(&self) -> bool {
        match self {
            RestoreError::Conflicts(_) => true,
            RestoreError::Apply(e) => e.is_conflict(),
            _ => false,
        }
    }
}
