//! The watcher's socket protocol: one JSON object per line each way.
//!
//! Requests: `{"cmd":"signal"}` (a hint; answered at once), `{"cmd":"flush","timeout_ms":N}`
//! (answered when staging has been drained, or with an error), `{"cmd":"status"}`,
//! `{"cmd":"shutdown"}`, `{"cmd":"failover","to":FILE,"force":BOOL}`,
//! `{"cmd":"handback","to":FILE,"conflicts":RULE}`. Every reply has `"ok"`; failures carry `"error"`.

use serde::{Deserialize, Serialize};

use crate::status::Status;

/// The longest request line the watcher reads.
pub const MAX_LINE: usize = 64 * 1024;

/// A request to the watcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// Changes were committed: look now.
    Signal,
    /// Drain staging now and answer when done.
    Flush {
        /// How long the caller will wait.
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Report the watcher's state.
    Status,
    /// Finish the batch in hand and stop.
    Shutdown,
    /// Fail over to a replica (the watcher holds the archive, so it carries it out).
    Failover {
        /// The replica to promote (default: the most up to date configured one).
        #[serde(default)]
        to: Option<String>,
        /// Take over even though the primary still answers.
        #[serde(default)]
        force: bool,
    },
    /// Hand the primary's role back to the repaired old primary.
    Handback {
        /// The repaired primary.
        to: String,
        /// What to do with conflicts (`keep`, `take-promoted`; none: refuse when there are).
        #[serde(default)]
        conflicts: Option<String>,
    },
}

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drained {
    /// Changes newly archived by the flush's passes.
    pub archived: u64,
    /// Staged images read.
    pub images: u64,
}

/// A reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// For `flush`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drained: Option<Drained>,
    /// For `failover` and `handback`: the outcome, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
}

impl Response {
    /// A bare success.
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    /// A failure.
    pub fn error(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(msg.into()),
            ..Self::default()
        }
    }
}
