//! The error type of the pure SQL layer.

/// Everything that can be wrong with a model or a name before any SQL is produced.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// An identifier is empty, too long, or holds a character no engine accepts.
    #[error("invalid identifier {name:?}: {reason}")]
    InvalidIdentifier {
        /// The offending name, as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A table cannot be captured as it is (no columns, a reserved column name, ...).
    #[error("table {table} cannot be captured: {reason}")]
    Uncapturable {
        /// The table, as the user would write it.
        table: String,
        /// What is wrong and what to do about it.
        reason: String,
    },
    /// A stored row image could not be decoded: the bytes are damaged or not an image.
    #[error("row image is damaged: {0}")]
    BadImage(&'static str),
    /// A table definition recorded as JSON could not be read back.
    #[error("table definition is not readable: {0}")]
    BadDefinition(#[source] serde_json::Error),
    /// A DDL script could not be read: what is wrong, and where.
    #[error("DDL line {line}: {message}")]
    BadDdl {
        /// The 1-based line of the script where the problem is.
        line: u64,
        /// What is wrong and, where possible, what to do.
        message: String,
    },
}
