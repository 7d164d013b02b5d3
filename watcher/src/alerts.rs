//! Alert rules, their state, and the `alert_command` they are handed to.
//!
//! An alert starts when its condition has held past its threshold and clears when it no longer
//! holds. Each start and each clear is logged (a firing alert is logged again at most every five
//! minutes) and handed, as one JSON object on stdin, to the optional `alert_command`, run by
//! `sh -c` (`cmd /C` on Windows) one at a time, in order.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::status::{FiringAlert, Status};

/// Thresholds; `None` switches a rule off.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    /// Alert when the oldest staged change is older than this.
    pub backlog_age: Option<Duration>,
    /// Alert when the source has not answered for longer than this.
    pub source_down: Option<Duration>,
    /// Alert when the archive's file system has fewer free bytes than this.
    pub min_free_disk: Option<u64>,
    /// Alert when a replica's oldest unapplied change is older than this, beyond the delay it
    /// keeps on purpose (the recovery point objective).
    pub rpo_max: Option<Duration>,
    /// Command that receives each alert start and clear as JSON on stdin.
    pub command: Option<String>,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            backlog_age: Some(Duration::from_secs(60)),
            source_down: Some(Duration::from_secs(30)),
            min_free_disk: Some(1 << 30),
            rpo_max: Some(Duration::from_secs(300)),
            command: None,
        }
    }
}

/// What `alert_command` reads on stdin.
#[derive(Debug, Clone, Serialize)]
pub struct AlertEvent {
    /// `source_down`, `source_blocked`, `backlog_age`, `disk_free`, `replica_lag`,
    /// `verify_failed`, `failed_over` or `fence_pending`.
    pub alert: String,
    /// `firing` or `cleared`.
    pub state: &'static str,
    /// `warning` or `critical`.
    pub severity: &'static str,
    /// What is wrong (or was), for people.
    pub message: String,
    /// The measured value (seconds or bytes).
    pub value: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// When the alert started (µs since the epoch).
    pub since_us: i64,
    /// When this event was made (µs since the epoch).
    pub at_us: i64,
    /// The source's location.
    pub source: String,
    /// The archive file.
    pub archive: String,
    /// The watcher's pid.
    pub pid: u32,
}

struct Firing {
    since_us: i64,
    logged: Instant,
    severity: &'static str,
    message: String,
}

/// The alerts' state across heartbeats.
pub struct Alerts {
    rules: AlertRules,
    firing: std::collections::BTreeMap<&'static str, Firing>,
    notify: Option<Sender<AlertEvent>>,
}

const RELOG: Duration = Duration::from_secs(300);

/// One rule's verdict at this heartbeat: `None` when it cannot be judged now (keep the state).
struct Verdict {
    alert: &'static str,
    severity: &'static str,
    holds: Option<bool>,
    value: Option<f64>,
    threshold: f64,
    message: String,
}

impl Alerts {
    /// Alert state for `rules`; starts the notifier thread when a command is configured.
    pub fn new(rules: AlertRules) -> Self {
        let notify = rules.command.clone().map(spawn_notifier);
        Self {
            rules,
            firing: Default::default(),
            notify,
        }
    }

    /// Judges every rule against `status`, starts and clears alerts, and writes the firing ones
    /// into `status.alerts`.
    pub fn evaluate(&mut self, status: &mut Status, now_us: i64) {
        let mut verdicts = Vec::new();
        if let Some(limit) = self.rules.source_down {
            let down_for = status
                .source_down_since_us
                .map(|s| (now_us - s) as f64 / 1e6);
            verdicts.push(Verdict {
                alert: "source_down",
                severity: "critical",
                holds: Some(
                    !status.source_up && down_for.is_some_and(|d| d >= limit.as_secs_f64()),
                ),
                value: down_for,
                threshold: limit.as_secs_f64(),
                message: format!(
                    "source {} has not answered for {:.0} s: {}",
                    status.source,
                    down_for.unwrap_or(0.0),
                    status.last_error.as_deref().unwrap_or("no answer")
                ),
            });
        }
        if let Some(limit) = self.rules.source_down {
            // A source another process keeps locked answers, but rowtrail cannot work with it.
            let blocked_for = status
                .source_blocked_since_us
                .map(|s| (now_us - s) as f64 / 1e6);
            verdicts.push(Verdict {
                alert: "source_blocked",
                severity: "warning",
                holds: Some(blocked_for.is_some_and(|d| d >= limit.as_secs_f64())),
                value: blocked_for,
                threshold: limit.as_secs_f64(),
                message: format!(
                    "source {} has been locked by another process for {:.0} s: {}",
                    status.source,
                    blocked_for.unwrap_or(0.0),
                    status
                        .source_blocked
                        .as_deref()
                        .unwrap_or("database is locked")
                ),
            });
        }
        if let Some(limit) = self.rules.backlog_age {
            // Unknown while the source is down: keep the alert as it is.
            let age = status.backlog_oldest_age_secs;
            verdicts.push(Verdict {
                alert: "backlog_age",
                severity: "warning",
                holds: status.source_up.then(|| age.is_some_and(|a| a >= limit.as_secs_f64())),
                value: age,
                threshold: limit.as_secs_f64(),
                message: format!(
                    "{} staged change image(s) wait, the oldest for {:.0} s: they are lost if the source is lost now",
                    status.backlog,
                    age.unwrap_or(0.0)
                ),
            });
        }
        if let Some(min) = self.rules.min_free_disk {
            let free = status.archive_free_bytes;
            verdicts.push(Verdict {
                alert: "disk_free",
                severity: "critical",
                holds: free.map(|f| f < min),
                value: free.map(|f| f as f64),
                threshold: min as f64,
                message: format!(
                    "the archive's disk has {} MiB free (alert below {} MiB)",
                    free.unwrap_or(0) >> 20,
                    min >> 20
                ),
            });
        }
        if let (Some(limit), false) = (self.rules.rpo_max, status.replicas.is_empty()) {
            // The worst replica, its deliberate delay set aside; a failing one counts as far
            // behind as its oldest unapplied change.
            let worst = status
                .replicas
                .iter()
                .map(|r| (r, (r.lag_secs - r.delay_secs.unwrap_or(0.0)).max(0.0)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((r, lag)) = worst {
                verdicts.push(Verdict {
                    alert: "replica_lag",
                    severity: "warning",
                    holds: Some(lag >= limit.as_secs_f64()),
                    value: Some(lag),
                    threshold: limit.as_secs_f64(),
                    message: format!(
                        "replica {} is {lag:.0} s behind the archive ({} change(s)){}: a takeover now would lose them unless applied first",
                        r.path,
                        r.behind,
                        r.last_error
                            .as_deref()
                            .map(|e| format!(", failing: {e}"))
                            .unwrap_or_default()
                    ),
                });
            }
        }
        // Running on a promoted copy is a state to end (hand back), and an old primary whose
        // fence is still pending could take writes nobody captures: both alert while they
        // hold. Always on: there is no threshold to tune.
        let failed_over = status
            .takeover
            .as_ref()
            .filter(|t| t.kind == "failover" && t.finished_us.is_some());
        verdicts.push(Verdict {
            alert: "failed_over",
            severity: "warning",
            holds: Some(failed_over.is_some()),
            value: None,
            threshold: 0.0,
            message: failed_over.map_or(String::new(), |t| {
                format!(
                    "takeover {}{}: {} is the primary in place of {}; hand back once the old primary is repaired (`rowtrail handback --to {}`)",
                    t.id,
                    if t.automatic { " (automatic)" } else { "" },
                    t.to,
                    t.from,
                    t.from
                )
            }),
        });
        let pending = failed_over.filter(|t| t.fence.as_deref() == Some("pending"));
        verdicts.push(Verdict {
            alert: "fence_pending",
            severity: "critical",
            holds: Some(pending.is_some()),
            value: None,
            threshold: 0.0,
            message: pending.map_or(String::new(), |t| {
                format!(
                    "the old primary {} could not be fenced yet (it was unreachable): keep clients away from it; the watcher fences it when it is reachable",
                    t.from
                )
            }),
        });
        if !status.checks.is_empty() {
            // A scheduled check whose last run failed, until a later run of it passes.
            let failed: Vec<&crate::status::CheckState> = status
                .checks
                .iter()
                .filter(|c| c.last_ok == Some(false))
                .collect();
            verdicts.push(Verdict {
                alert: "verify_failed",
                severity: "critical",
                holds: Some(!failed.is_empty()),
                value: Some(failed.len() as f64),
                threshold: 1.0,
                message: failed
                    .iter()
                    .map(|c| {
                        format!(
                            "scheduled {} of {} failed: {}",
                            c.check,
                            c.target,
                            c.last_result.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        for v in verdicts {
            self.apply(v, status, now_us);
        }
        status.alerts = self
            .firing
            .iter()
            .map(|(name, f)| FiringAlert {
                alert: (*name).to_string(),
                severity: f.severity.to_string(),
                since_us: f.since_us,
                message: f.message.clone(),
            })
            .collect();
    }

    fn apply(&mut self, v: Verdict, status: &Status, now_us: i64) {
        let Some(holds) = v.holds else { return };
        let event = |state, since_us| AlertEvent {
            alert: v.alert.to_string(),
            state,
            severity: v.severity,
            message: v.message.clone(),
            value: v.value,
            threshold: v.threshold,
            since_us,
            at_us: now_us,
            source: status.source.clone(),
            archive: status.archive.clone(),
            pid: status.pid,
        };
        match (holds, self.firing.get_mut(v.alert)) {
            (true, None) => {
                tracing::error!(
                    alert = v.alert,
                    severity = v.severity,
                    "alert: {}",
                    v.message
                );
                self.send(event("firing", now_us));
                self.firing.insert(
                    v.alert,
                    Firing {
                        since_us: now_us,
                        logged: Instant::now(),
                        severity: v.severity,
                        message: v.message.clone(),
                    },
                );
            }
            (true, Some(f)) => {
                f.message = v.message.clone();
                if f.logged.elapsed() >= RELOG {
                    tracing::warn!(alert = v.alert, "alert still firing: {}", v.message);
                    f.logged = Instant::now();
                }
            }
            (false, Some(_)) => {
                let f = self.firing.remove(v.alert).expect("present");
                tracing::info!(alert = v.alert, "alert cleared");
                let mut e = event("cleared", f.since_us);
                e.message = format!("cleared: {}", f.message);
                self.send(e);
            }
            (false, None) => {}
        }
    }

    fn send(&self, e: AlertEvent) {
        if let Some(tx) = &self.notify {
            let _ = tx.send(e);
        }
    }
}

/// Runs `command` for each event, one at a time, in order, each with a 30 s limit.
fn spawn_notifier(command: String) -> Sender<AlertEvent> {
    let (tx, rx) = mpsc::channel::<AlertEvent>();
    std::thread::Builder::new()
        .name("rowtrail-alerts".into())
        .spawn(move || {
            for event in rx {
                let line = serde_json::to_string(&event).unwrap_or_default() + "\n";
                if let Err(e) = run_command(&command, &line) {
                    tracing::warn!(alert = %event.alert, error = %e, "alert_command failed");
                }
            }
        })
        .expect("spawn the alert thread");
    tx
}

/// Runs `command` through the shell with `input` on its standard input, at most 30 s.
pub(crate) fn run_command(command: &str, input: &str) -> Result<(), String> {
    #[cfg(windows)]
    let mut cmd = {
        let mut c = Command::new("cmd");
        c.arg("/C").arg(command);
        c
    };
    #[cfg(not(windows))]
    let mut cmd = {
        let mut c = Command::new("sh");
        c.arg("-c").arg(command);
        c
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("it exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("it ran longer than 30 s and was killed".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}
