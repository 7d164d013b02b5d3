//! The restore tool's error type.

/// What can go wrong answering a question or planning an undo.
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
}
