//! rowtrail-watcher: the daemon that keeps the archive current.
//!
//! The watcher is woken three ways, and correctness needs none of them but the last: a
//! [`protocol`] message on its local socket (a Unix socket in a private folder; a named pipe on
//! Windows), the engine probe (SQLite `data_version`), and a poll timer. Each wake runs the
//! trace reader's drain ([`rowtrail_reader::mover`]). [`client`] is the other end of the socket,
//! used by `rowtrail signal` and `rowtrail status`. A [`health`] heartbeat judges the source,
//! the backlog and the archive's disk, raising [`alerts`]; [`metrics`] serves them to Prometheus.

pub mod alerts;
pub mod client;
mod daemon;
mod endpoint;
pub mod error;
pub mod health;
pub mod metrics;
pub mod protocol;
pub mod status;

pub use alerts::AlertRules;
pub use daemon::{run, SourceFactory, WatcherOptions};
pub use error::WatcherError;
pub use health::HealthCheck;

use std::path::{Path, PathBuf};

/// The default socket for an archive: `watcher.sock` in a private folder beside it,
/// `.<archive file name>.rowtrail/`.
pub fn default_socket(archive: &Path) -> PathBuf {
    let mut dir = std::ffi::OsString::from(".");
    dir.push(archive.file_name().unwrap_or_default());
    dir.push(".rowtrail");
    archive.with_file_name(dir).join("watcher.sock")
}
