//! The apply layer's error type.

/// What can go wrong applying a job to a target.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The reader's side failed (a SQL Server connection, a catalog query, the journal).
    #[error(transparent)]
    Reader(#[from] rowtrail_reader::ReaderError),
    /// The statements could not be made.
    #[error(transparent)]
    Sql(#[from] rowtrail_sql::SqlError),
    /// A SQLite target could not be used.
    #[error("source {location}: {context}")]
    Database {
        /// Where the target is.
        location: String,
        /// What rowtrail was doing.
        context: String,
        /// The engine's error.
        #[source]
        cause: rusqlite::Error,
    },
    /// Rows no longer equal what the job expects (changed by writes not yet archived, or
    /// outside capture), and the job stops on conflicts: nothing was changed.
    #[error("{what} refused: {} row(s) no longer equal their archived image or their key is taken (nothing was changed; a row changed after its last archived change? run `rowtrail read` and retry; a row marked \"even forced\" was refused by a constraint of the source, such as a unique key another row holds):{}", .rows.len(), .rows.iter().map(|g| format!("\n  {g}")).collect::<String>())]
    Guards {
        /// `undo`, `redo`, …: what was refused.
        what: String,
        /// Each step that did not hold, described without row values.
        rows: Vec<String>,
    },
    /// A step on a table without a key matches several rows.
    #[error("change {change}: {count} rows of {table} equal its archived image, so {what} cannot tell which one to touch; pass --force to touch exactly one of them")]
    Ambiguous {
        /// `undo`, `redo`, …
        what: String,
        /// The step's id (the archived change).
        change: i64,
        /// The table.
        table: String,
        /// How many rows matched (2 means "two or more").
        count: i64,
    },
    /// The job would leave rows without their parent.
    #[error(
        "{what} would leave {count} row(s) without their parent (foreign key); nothing was changed"
    )]
    ForeignKeys {
        /// `undo`, `redo`, …
        what: String,
        /// How many rows more than before.
        count: i64,
    },
    /// Steps were recorded for a table definition other than the table's now (columns added,
    /// renamed or dropped, the table renamed or dropped): written back, they would leave row
    /// states that never existed.
    #[error("{what} refused: the table it would write is not the table the changes were captured in (nothing was changed; undo them by hand if you must):{}", .rows.iter().map(|g| format!("\n  {g}")).collect::<String>())]
    TableChanged {
        /// `undo`, `redo`, …
        what: String,
        /// Each table and the changes it refuses, described without row values.
        rows: Vec<String>,
    },
    /// The target's commit may or may not have happened (its answer was lost).
    #[error("{what}: whether it committed is unknown, so the run stays pending; the next `rowtrail undo --apply` or `rowtrail redo --apply` settles it from the captured writes")]
    CommitUnknown {
        /// What happened.
        what: String,
        /// The driver's or the server's error, if there was one.
        #[source]
        cause: Option<Box<rowtrail_reader::ReaderError>>,
    },
    /// The target will not say which transaction the job writes in, so its writes could not be
    /// linked to it.
    #[error("cannot link the undo's writes on {location}: this SQL Server tells a session its transaction id only with VIEW SERVER STATE (SQL Server 2012 and 2014), which this login lacks; grant it to the login that runs undo (nothing was changed)")]
    CannotLink {
        /// Server and database.
        location: String,
    },
    /// A batch of the job ran past the command timeout: it was cancelled on the server and the
    /// job's transaction rolled back (or, when the cancel went unanswered, its connection
    /// closed, which rolls it back too). Nothing was changed.
    #[error("{what} stopped: batch {batch} of {batches} (steps {first} to {last}) did not finish within {seconds} s (the command timeout) on {location}; it was {}, and the whole {what} rolled back: nothing was changed. Another session may hold locks on those rows (see blocking_session_id in sys.dm_exec_requests); or the batch needs longer: run it again with --command-timeout SECS (or set [source] command_timeout_seconds; 0 waits for ever)", if *.cancelled { "cancelled on the server" } else { "abandoned (the server did not acknowledge the cancel) and its connection closed" })]
    Timeout {
        /// `undo`, `redo`, …
        what: String,
        /// Server and database.
        location: String,
        /// The batch that ran out of time (1-based).
        batch: usize,
        /// How many batches the job has.
        batches: usize,
        /// Its first step (1-based, in the script's order).
        first: usize,
        /// Its last step.
        last: usize,
        /// The timeout, in seconds.
        seconds: u64,
        /// Whether the server acknowledged the cancel.
        cancelled: bool,
    },
    /// The caller's hook refused the job before the commit (its own error, as text).
    #[error("{0}")]
    Hook(String),
}

impl ApplyError {
    /// Whether the error is a conflict the target's rows raised (exit code 3): a guard that did
    /// not hold, an ambiguous row, or a foreign key the job would break.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ApplyError::Guards { .. }
                | ApplyError::Ambiguous { .. }
                | ApplyError::ForeignKeys { .. }
        )
    }
}
