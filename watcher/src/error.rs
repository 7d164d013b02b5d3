//! The watcher's error type.

use std::path::PathBuf;

/// What stops the watcher, or a client's request.
#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    /// No watcher answers on the socket.
    #[error("no watcher is running for this archive (nothing answers at {}); start one with `rowtrail watch`", socket.display())]
    NotRunning {
        /// The socket tried.
        socket: PathBuf,
    },
    /// The watcher did not answer in time.
    #[error("the watcher at {} did not answer within {seconds} s", socket.display())]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// How long the client waited.
        seconds: u64,
    },
    /// The watcher answered with an error.
    #[error("the watcher reports: {0}")]
    Remote(String),
    /// Socket I/O failed.
    #[error("socket {}: {context}", socket.display())]
    Socket {
        /// The socket.
        socket: PathBuf,
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        cause: std::io::Error,
    },
    /// A reply or request was not valid protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A job of the watcher ended while the watcher was meant to run (it failed or panicked),
    /// so the watcher stopped.
    #[error("the watcher's {job} job stopped: {reason}")]
    Job {
        /// The job's name.
        job: &'static str,
        /// What it reported.
        reason: String,
    },
    /// The reader failed in a way the watcher cannot recover from.
    #[error(transparent)]
    Reader(#[from] rowtrail_reader::ReaderError),
}
