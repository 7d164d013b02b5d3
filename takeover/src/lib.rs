//! rowtrail's takeover: when the primary fails, a replica on the backup host takes over.
//!
//! - [`probe`]: the heartbeat of the primary (connect, login, query, each with its timeout),
//!   which tells a slow primary from a gone one.
//! - [`fence`]: making sure an old primary takes no more writes once another copy is primary.
//! - [`failover`]: the plan (dry run) and its labelled steps: fence, drain what the old
//!   primary's staging still holds, apply everything archived to the chosen replica, promote it
//!   (capture installed as a new incarnation linked to the old one), record it.
//!
//! Every step is recorded in the archive ([`rowtrail_reader::archive::Takeover`]), so a run cut
//! short is finished by the next, and the newest finished takeover names the current primary,
//! which every command follows.

pub mod failover;
pub mod fence;
pub mod handback;
pub mod probe;

use rowtrail_reader::ReaderError;
use rowtrail_standby::StandbyError;

/// A takeover failed or was refused; what its steps committed is recorded, and running it
/// again finishes it.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    /// Reading the source or the archive failed.
    #[error(transparent)]
    Reader(Box<ReaderError>),
    /// The replica could not be brought level or promoted.
    #[error(transparent)]
    Standby(Box<StandbyError>),
    /// A database could not be fenced or promoted.
    #[error("{path}: {context}: {cause}")]
    Database {
        /// The file.
        path: String,
        /// What was being done.
        context: String,
        /// SQLite's error.
        #[source]
        cause: rusqlite::Error,
    },
    /// The takeover cannot be done as asked; the message says why and what to do.
    #[error("{0}")]
    Refused(String),
}

impl TakeoverError {
    /// A closure turning a SQLite error on `path` into [`TakeoverError::Database`].
    pub(crate) fn db(
        path: &std::path::Path,
        context: &str,
    ) -> impl FnOnce(rusqlite::Error) -> TakeoverError {
        let path = path.display().to_string();
        let context = context.to_string();
        move |cause| TakeoverError::Database {
            path,
            context,
            cause,
        }
    }
}

impl From<ReaderError> for TakeoverError {
    fn from(e: ReaderError) -> Self {
        TakeoverError::Reader(Box::new(e))
    }
}

impl From<StandbyError> for TakeoverError {
    fn from(e: StandbyError) -> Self {
        TakeoverError::Standby(Box::new(e))
    }
}
