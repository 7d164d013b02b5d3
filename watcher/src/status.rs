//! What the watcher knows about itself, as `status` reports it.

use serde::{Deserialize, Serialize};

/// How often each wake source fired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wakeups {
    /// Socket signals and flushes.
    pub signal: u64,
    /// Engine probe saw a change.
    pub probe: u64,
    /// Poll timer.
    pub poll: u64,
}

/// The watcher's state. Never holds row values or secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Process id.
    pub pid: u32,
    /// rowtrail version.
    pub version: String,
    /// When the watcher started (µs since the epoch).
    pub started_us: i64,
    /// Where the source is.
    pub source: String,
    /// The source's incarnation, once connected.
    pub incarnation: Option<String>,
    /// The archive file.
    pub archive: String,
    /// Whether the source answered the last attempt.
    pub source_up: bool,
    /// Failed attempts to reach the source in a row.
    pub source_failures: u32,
    /// Passes run.
    pub passes: u64,
    /// Changes archived since start.
    pub archived: u64,
    /// Images left in staging after the last pass (0 means drained).
    pub backlog: u64,
    /// When the last pass succeeded (µs since the epoch).
    pub last_pass_us: Option<i64>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_us: Option<i64>,
    /// Wake counts.
    pub wakeups: Wakeups,
}
