//! What can go wrong on the standby side.

use rowtrail_apply::ApplyError;
use rowtrail_reader::ReaderError;

/// A standby operation failed; nothing it had not committed was kept.
#[derive(Debug, thiserror::Error)]
pub enum StandbyError {
    /// Reading the source or the archive failed.
    #[error(transparent)]
    Reader(#[from] ReaderError),
    /// Applying changes to the replica failed (rolled back).
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The replica file could not be read or written.
    #[error("{path}: {context}: {cause}")]
    Database {
        /// The replica file.
        path: String,
        /// What was being done.
        context: String,
        /// SQLite's error.
        #[source]
        cause: rusqlite::Error,
    },
    /// The file is not a replica rowtrail made (or it is damaged).
    #[error("{path} is not a rowtrail replica: {reason}")]
    NotAReplica {
        /// The file.
        path: String,
        /// Why not, and what to do.
        reason: String,
    },
    /// The operation cannot be done as asked; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
    /// Another applier moved the replica while this one prepared its step; nothing was
    /// written, and applying again goes on from where the replica stands now.
    #[error("{0} was moved by another applier meanwhile; nothing was written: apply again")]
    Moved(String),
}

impl StandbyError {
    /// A closure turning a SQLite error on `path` into [`StandbyError::Database`].
    pub(crate) fn db(
        path: &std::path::Path,
        context: &str,
    ) -> impl FnOnce(rusqlite::Error) -> StandbyError {
        let path = path.display().to_string();
        let context = context.to_string();
        move |cause| StandbyError::Database {
            path,
            context,
            cause,
        }
    }
}
