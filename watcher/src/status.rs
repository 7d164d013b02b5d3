//! What the watcher knows about itself, as `status` reports it (and the metrics endpoint shows).
//!
//! The JSON form is part of rowtrail's interface (`rowtrail status --json`); fields are only
//! ever added. It never holds row values or secrets.

use std::sync::{Arc, Mutex, MutexGuard};

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

/// The overall verdict, as `status` prints it and its exit code reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Source up, no alert firing, the last pass succeeded.
    #[default]
    Healthy,
    /// Working, but an alert is firing, the last pass failed, the stream cannot be published
    /// to, or a remote replica cannot be applied to.
    Degraded,
    /// The source is down.
    Down,
}

/// One alert that is firing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiringAlert {
    /// `source_down`, `backlog_age` or `disk_free`.
    pub alert: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// Since when (µs since the epoch).
    pub since_us: i64,
    /// What is wrong, for people.
    pub message: String,
}

/// The watcher's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The overall verdict.
    pub health: Health,
    /// Process id.
    pub pid: u32,
    /// rowtrail version.
    pub version: String,
    /// When the watcher started (µs since the epoch).
    pub started_us: i64,
    /// Where the source is (never with a password).
    pub source: String,
    /// The source's incarnation, once seen.
    pub incarnation: Option<String>,
    /// The archive file.
    pub archive: String,
    /// Whether the source answers (false after 3 failed heartbeats in a row).
    pub source_up: bool,
    /// Failed heartbeats in a row.
    pub source_failures: u32,
    /// Since when the source has not answered (µs since the epoch), while it does not.
    pub source_down_since_us: Option<i64>,
    /// SQLite: another process keeps the source locked past the heartbeat's wait (what the
    /// heartbeat saw, naming who holds what where that is known), while it does.
    #[serde(default)]
    pub source_blocked: Option<String>,
    /// Since when the source has been blocked (µs since the epoch), while it is.
    #[serde(default)]
    pub source_blocked_since_us: Option<i64>,
    /// Images waiting in staging, at the last heartbeat.
    pub backlog: u64,
    /// Age in seconds of the oldest staged image: what is at risk if the source is lost now.
    pub backlog_oldest_age_secs: Option<f64>,
    /// Free bytes on the archive's file system.
    pub archive_free_bytes: Option<u64>,
    /// Passes run.
    pub passes: u64,
    /// Total time spent in passes, in seconds.
    pub pass_seconds_total: f64,
    /// Changes archived since start, counted as each batch commits (a pass that fails later
    /// keeps what it archived before).
    pub archived: u64,
    /// Staged images archived since start (an update's two images count as two).
    #[serde(default)]
    pub images: u64,
    /// When the last pass succeeded (µs since the epoch).
    pub last_pass_us: Option<i64>,
    /// The last error, while the latest attempt fails.
    pub last_error: Option<String>,
    /// When the last error happened (µs since the epoch); kept after recovery.
    pub last_error_us: Option<i64>,
    /// Wake counts.
    pub wakeups: Wakeups,
    /// Alerts firing now.
    pub alerts: Vec<FiringAlert>,
    /// SQLite: a `rowtrail_context` row is committed, so every change is being labelled with
    /// its login, host and transaction whoever makes it (degraded until it is deleted).
    pub context_committed: bool,
    /// The replicas the watcher keeps current.
    #[serde(default)]
    pub replicas: Vec<ReplicaState>,
    /// The change stream, when `[stream]` is configured.
    #[serde(default)]
    pub stream: Option<StreamStatus>,
    /// The scheduled checks (`verify_every`): the archive's hash chain, replicas against the
    /// source.
    #[serde(default)]
    pub checks: Vec<CheckState>,
    /// The replicas kept current from the change stream (`[[remote_replica]]`).
    #[serde(default)]
    pub remote_replicas: Vec<RemoteReplicaState>,
    /// What the last heartbeat of the primary found: `up`, `blocked`, `slow` (it accepts
    /// connections but did not answer in time) or `gone` (it failed outright).
    #[serde(default)]
    pub primary_state: Option<String>,
    /// What the last failed heartbeat said, while heartbeats fail.
    #[serde(default)]
    pub primary_detail: Option<String>,
    /// When the primary last answered a heartbeat (µs since the epoch).
    #[serde(default)]
    pub primary_last_seen_us: Option<i64>,
    /// How long the last heartbeat took, in milliseconds.
    #[serde(default)]
    pub primary_probe_ms: Option<f64>,
    /// The heartbeat's interval now (it tightens while changes flow or heartbeats fail).
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
    /// Failed heartbeats in a row that mark the primary down.
    #[serde(default)]
    pub failures_to_down: u32,
    /// The newest takeover (failover or handback) the archive records, if any.
    #[serde(default)]
    pub takeover: Option<TakeoverState>,
    /// The nodes the watcher answers health checks for, with their roles now.
    #[serde(default)]
    pub nodes: Vec<NodeState>,
}

/// A takeover, as the status reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TakeoverState {
    /// Its id in the archive.
    pub id: i64,
    /// `failover` or `handback`.
    pub kind: String,
    /// The last step it finished (`done` when finished).
    pub step: String,
    /// The primary it took over from.
    pub from: String,
    /// The copy that took over.
    pub to: String,
    /// What fencing did to the old primary (`fenced`, `pending`).
    pub fence: Option<String>,
    /// Whether the watcher started it on its own.
    pub automatic: bool,
    /// When it began and finished (µs since the epoch).
    pub started_us: i64,
    /// When it finished.
    pub finished_us: Option<i64>,
    /// Why the last attempt failed, while it does.
    pub last_error: Option<String>,
}

/// One node: a database clients may be sent to, and what it is now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// Where it is (a file, or a server and database).
    pub target: String,
    /// `source` (the configured primary) or `replica` (a configured replica).
    pub kind: String,
    /// `primary` (it takes the writes), `replica` (a healthy standby), `down` (the primary,
    /// not answering), `fenced` (a former primary another copy took over from), `unhealthy` (a
    /// replica that fails to apply).
    pub role: String,
    /// Where its health endpoints are served, if anywhere.
    pub health_listen: Option<String>,
}

/// One replica fed from the change stream, as its job last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteReplicaState {
    /// The replica file.
    pub path: String,
    /// The stream's server (never with credentials).
    pub url: String,
    /// The JetStream stream (empty until known).
    pub stream: String,
    /// The source's subjects it reads.
    pub subjects: String,
    /// Its durable consumer.
    pub consumer: String,
    /// Whether it holds a connection now.
    pub connected: bool,
    /// The archive change id it stands at.
    pub position: i64,
    /// The source seq it stands at.
    pub position_seq: i64,
    /// Whether that is a consistent state of the source.
    pub consistent: bool,
    /// Messages of its source not yet applied (delivered or not): the consumer's lag.
    pub pending: u64,
    /// Age in the archive of the oldest of them, in seconds (0 when level).
    pub lag_secs: f64,
    /// Changes received and held for the rest of their transaction.
    pub waiting: u64,
    /// Changes applied since the watcher started.
    pub applied: u64,
    /// When it last applied something (µs since the epoch).
    pub last_apply_us: Option<i64>,
    /// Why the last attempt failed, while it fails.
    pub last_error: Option<String>,
    /// When the last error happened (µs since the epoch); kept after recovery.
    pub last_error_us: Option<i64>,
}

/// One scheduled check, as the verify job last ran it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckState {
    /// `verify` (the archive's hash chain) or `compare` (a replica against the source).
    pub check: String,
    /// The archive or the replica file.
    pub target: String,
    /// How often it runs, in seconds.
    pub every_secs: f64,
    /// Runs since the watcher started.
    pub runs: u64,
    /// Runs that failed since the watcher started.
    pub failures: u64,
    /// When the last run ended (µs since the epoch).
    pub last_run_us: Option<i64>,
    /// Whether the last run passed (`None` before the first).
    pub last_ok: Option<bool>,
    /// What the last run found, for people (never row values).
    pub last_result: Option<String>,
    /// How long the last run took, in seconds.
    pub last_secs: f64,
    /// When the next run is due (µs since the epoch).
    pub next_run_us: i64,
}

/// One replica, as the replicas job last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaState {
    /// The replica file.
    pub path: String,
    /// The delay it keeps, in seconds.
    pub delay_secs: Option<f64>,
    /// The archive change id it stands at.
    pub position: i64,
    /// The source seq it stands at.
    pub position_seq: i64,
    /// Whether that is a consistent state of the source.
    pub consistent: bool,
    /// Archived changes not yet applied.
    pub behind: u64,
    /// Age of the oldest change not applied, in seconds (0 when level).
    pub lag_secs: f64,
    /// Whether applying is paused.
    pub paused: bool,
    /// Changes applied since the watcher started.
    pub applied: u64,
    /// How long the last round took, in seconds.
    pub last_apply_secs: f64,
    /// Changes per second of the last round that applied some.
    pub apply_rate: f64,
    /// Seconds the changes not yet applied would take at that rate (the replica's recovery
    /// time if it had to take over now; 0 when level).
    pub rto_estimate_secs: f64,
    /// Why the last round failed, while it fails.
    pub last_error: Option<String>,
}

/// The change stream's publisher, as the status reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// The server (never with credentials).
    pub url: String,
    /// The JetStream stream.
    pub stream: String,
    /// The subjects this source publishes to.
    pub subjects: String,
    /// Whether the publisher holds a connection now.
    pub connected: bool,
    /// The published position: the id of the last change the stream acknowledged.
    pub published_id: i64,
    /// The archive's last change id, when the lag was measured.
    pub archive_tip: i64,
    /// Changes archived but not yet acknowledged by the stream.
    pub lag_changes: u64,
    /// How long the oldest of them has been in the archive, in seconds (0 when none waits).
    pub lag_seconds: f64,
    /// Changes the stream took since the watcher started.
    pub published: u64,
    /// Changes sent again that the stream already held (dropped by it), since start.
    pub duplicates: u64,
    /// When the stream last acknowledged something (µs since the epoch).
    pub last_publish_us: Option<i64>,
    /// The last error, while the latest attempt fails.
    pub last_error: Option<String>,
    /// When the last error happened (µs since the epoch); kept after recovery.
    pub last_error_us: Option<i64>,
}

impl Status {
    /// The role of node `target` of kind `kind` now.
    fn role_of(&self, target: &str, kind: &str) -> &'static str {
        if target == self.source {
            if self.source_up {
                "primary"
            } else {
                "down"
            }
        } else if kind == "replica" {
            match self.replicas.iter().find(|r| r.path == target) {
                Some(r) if r.last_error.is_none() => "replica",
                _ => "unhealthy",
            }
        } else {
            "fenced"
        }
    }

    /// Recomputes [`Status::health`] and the nodes' roles from the other fields.
    pub fn judge(&mut self) {
        let roles: Vec<&'static str> = self
            .nodes
            .iter()
            .map(|n| self.role_of(&n.target, &n.kind))
            .collect();
        for (n, role) in self.nodes.iter_mut().zip(roles) {
            n.role = role.to_string();
        }
        self.health = if !self.source_up {
            Health::Down
        } else if !self.alerts.is_empty()
            || self.last_error.is_some()
            || self.context_committed
            || self.source_blocked.is_some()
            || self.replicas.iter().any(|r| r.last_error.is_some())
            || self.stream.as_ref().is_some_and(|s| s.last_error.is_some())
            || self.remote_replicas.iter().any(|r| r.last_error.is_some())
        {
            Health::Degraded
        } else {
            Health::Healthy
        };
    }
}

/// The watcher's [`Status`], shared by the jobs that write their part of it and the endpoints
/// that read it. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Board(Arc<Mutex<Status>>);

impl Board {
    /// A board holding `status`.
    pub(crate) fn new(status: Status) -> Self {
        Self(Arc::new(Mutex::new(status)))
    }

    /// Changes the status and judges it again.
    pub(crate) fn update<T>(&self, change: impl FnOnce(&mut Status) -> T) -> T {
        let mut s = self.lock();
        let out = change(&mut s);
        s.judge();
        out
    }

    /// A copy of the status now.
    pub(crate) fn snapshot(&self) -> Status {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Status> {
        // A job that panicked while writing leaves a status worth reading still.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
