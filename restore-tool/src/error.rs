//! The restore tool's error type.

/// What can go wrong answering a question, or planning and applying an undo.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The archive could not be read.
    #[error(transparent)]
    Reader(#[from] rowtrail_reader::ReaderError),
    /// The archive could not be queried.
    #[error("archive query failed: {0}")]
    Query(#[from] rusqlite::Error),
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
    /// The source database could not be used.
    #[error("source {location}: {context}")]
    Source {
        /// Where the source is.
        location: String,
        /// What rowtrail was doing.
        context: String,
        /// The engine's error.
        #[source]
        cause: rusqlite::Error,
    },
    /// The undo would conflict with later changes, and the mode is refuse.
    #[error("{}", crate::conflict::describe(.0))]
    Conflicts(Vec<crate::conflict::Conflict>),
    /// Rows no longer equal what the archive says they should be (changed by writes not yet
    /// archived, or outside capture), and the mode is refuse.
    #[error("undo refused: {} row(s) no longer equal their archived image or their key is taken (nothing was changed; a write not yet archived? run `rowtrail read` and retry):{}", .0.len(), .0.iter().map(|g| format!("\n  {g}")).collect::<String>())]
    Guards(Vec<String>),
    /// A row to undo in a table without a key matches several rows.
    #[error("change {change}: {count} rows of {table} equal its archived image, so undo cannot tell which one to touch; pass --force to touch exactly one of them")]
    Ambiguous {
        /// The change.
        change: i64,
        /// The table.
        table: String,
        /// How many rows matched (2 means "two or more").
        count: i64,
    },
    /// The undo would leave rows without their parent.
    #[error("undo would leave {0} row(s) without their parent (foreign key); nothing was changed")]
    ForeignKeys(i64),
    /// The source's commit may or may not have happened (its answer was lost).
    #[error("{what}: whether it committed is unknown, so the run stays pending; the next `rowtrail undo --apply` or `rowtrail redo --apply` settles it from the captured writes")]
    CommitUnknown {
        /// What happened.
        what: String,
        /// The driver's or the server's error, if there was one.
        #[source]
        cause: Option<Box<rowtrail_reader::ReaderError>>,
    },
    /// The source will not say which transaction the undo writes in, so its writes could not
    /// be linked to the run.
    #[error("cannot link the undo's writes on {location}: this SQL Server tells a session its transaction id only with VIEW SERVER STATE (SQL Server 2012 and 2014), which this login lacks; grant it to the login that runs undo (nothing was changed)")]
    CannotLink {
        /// Server and database.
        location: String,
    },
    /// The output could not be written (a closed pipe ends a listing early).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The generated SQL could not be made.
    #[error(transparent)]
    Sql(#[from] rowtrail_sql::SqlError),
}
