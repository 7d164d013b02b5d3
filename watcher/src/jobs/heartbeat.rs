//! The heartbeat job: a fresh look at the primary (a TCP connect, a login, a trivial query,
//! each with its own timeout: [`rowtrail_takeover::probe`]) and at the archive's disk; then
//! the alert rules.
//!
//! It has its own connection, so it keeps judging while a pass is stuck (a locked or full
//! archive), and it notices a source file that was moved, replaced or deleted, which the mover's
//! open connection would not. When the source comes back (or was reinstalled) it tells the mover
//! to reconnect.
//!
//! The interval adapts: the busy interval (`watcher.heartbeat_interval_ms`) while changes flow
//! or after a failed heartbeat, the idle one (`takeover.idle_interval_ms`) otherwise. After
//! `takeover.failures` failed heartbeats in a row the primary is down: detection takes at most
//! `failures × busy interval` plus one probe's timeouts. A probe that timed out is told apart
//! (`slow`: it accepts connections but does not answer) from one that failed (`gone`). With
//! `takeover.auto_failover` the watcher then fails over on its own.

use std::path::PathBuf;
use std::time::Duration;

use rowtrail_reader::{now_micros, ReaderError};
use rowtrail_takeover::probe::{Probe, Verdict};

use super::{Job, JobContext};
use crate::alerts::{AlertRules, Alerts};
use crate::control::{Event, FailoverAsk, FailoverOrder};
use crate::WatcherError;

/// One heartbeat against the primary.
pub type HealthCheck = Box<dyn FnMut() -> Probe + Send>;

/// Failed heartbeats in a row before the source counts as down, unless configured.
pub const DOWN_AFTER: u32 = 3;

/// How the heartbeat paces itself and when it calls the primary down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The interval while changes flow, and after a failed heartbeat.
    pub busy: Duration,
    /// The interval while nothing flows.
    pub idle: Duration,
    /// Failed heartbeats in a row that mark the primary down.
    pub failures: u32,
    /// Fail over on its own once the primary is down.
    pub auto_failover: bool,
}

/// The heartbeat job.
pub(crate) struct Heartbeat {
    check: HealthCheck,
    pacing: Pacing,
    rules: AlertRules,
    archive: PathBuf,
}

impl Heartbeat {
    /// A heartbeat running `check` as `pacing` says, judging `rules`; `archive` is the file
    /// whose disk is watched.
    pub(crate) fn new(
        check: HealthCheck,
        pacing: Pacing,
        rules: AlertRules,
        archive: PathBuf,
    ) -> Self {
        Self {
            check,
            pacing,
            rules,
            archive,
        }
    }
}

impl Job for Heartbeat {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    fn run(mut self: Box<Self>, ctx: JobContext) -> Result<(), WatcherError> {
        let mut alerts = Alerts::new(self.rules.clone());
        let pacing = self.pacing;
        let mut last_archived = 0u64;
        loop {
            let probe = (self.check)();
            let free = fs4::available_space(&self.archive).ok();
            // A fence a failover left pending (the old primary was unreachable) is set as soon
            // as the old primary is reachable again; the record is read again while it waits.
            let pending = ctx
                .board
                .snapshot()
                .takeover
                .is_some_and(|t| t.fence.as_deref() == Some("pending"));
            let takeover = if pending {
                rowtrail_takeover::fence::retry_pending(&self.archive);
                rowtrail_reader::archive::Archive::open_read_only(&self.archive)
                    .ok()
                    .and_then(|a| crate::daemon::takeover_state(&a))
            } else {
                None
            };
            let now = now_micros();
            let (recovered, interval, fail_over) = ctx.board.update(|s| {
                let mut recovered = false;
                let mut fail_over = false;
                s.failures_to_down = pacing.failures;
                s.primary_probe_ms = Some(probe.elapsed.as_secs_f64() * 1e3);
                match (&probe.verdict, probe.health.clone(), &probe.error) {
                    (Verdict::Up, Some(h), _) => {
                        s.primary_state = Some("up".into());
                        s.primary_detail = None;
                        s.primary_last_seen_us = Some(now);
                        s.source_blocked = None;
                        s.source_blocked_since_us = None;
                        let was_down = !s.source_up;
                        let reinstalled =
                            s.incarnation.as_ref().is_some_and(|i| *i != h.incarnation);
                        s.source_up = true;
                        s.source_failures = 0;
                        s.source_down_since_us = None;
                        s.backlog = h.staged;
                        s.backlog_oldest_age_secs = h.oldest_age_secs;
                        if h.context_committed && !s.context_committed {
                            tracing::warn!(source = %s.source,
                                "a rowtrail_context row is committed: every change is labelled with its login, host and transaction until it is deleted (a writer inserted it outside a transaction, or committed without deleting it)");
                        } else if !h.context_committed && s.context_committed {
                            tracing::info!(source = %s.source, "the committed rowtrail_context row is gone");
                        }
                        s.context_committed = h.context_committed;
                        if reinstalled {
                            tracing::warn!("the source's incarnation changed (capture was reinstalled); reconnecting");
                        }
                        if was_down {
                            tracing::info!(source = %s.source, "source is up again");
                        }
                        s.incarnation = Some(h.incarnation);
                        recovered = was_down || reinstalled;
                    }
                    // A locked source answers: it is blocked, not down.
                    (_, _, Some(e @ ReaderError::SourceLocked { .. })) => {
                        s.primary_state = Some("blocked".into());
                        s.primary_last_seen_us = Some(now);
                        if s.source_blocked.is_none() {
                            tracing::warn!(source = %s.source, error = %e, "source is blocked");
                        }
                        s.source_blocked = Some(e.to_string());
                        s.source_blocked_since_us.get_or_insert(now);
                    }
                    (verdict, _, _) => {
                        let (state, detail) = match verdict {
                            Verdict::Slow { detail, .. } => ("slow", detail.clone()),
                            Verdict::Gone { detail, .. } => ("gone", detail.clone()),
                            Verdict::Up => ("gone", "the probe read no health".to_string()),
                        };
                        s.primary_state = Some(state.into());
                        s.primary_detail = Some(detail.clone());
                        s.source_failures += 1;
                        s.source_down_since_us.get_or_insert(now);
                        if s.source_failures == pacing.failures {
                            tracing::error!(source = %s.source, state, error = %detail,
                                "source is down ({} failed heartbeats in a row)", pacing.failures);
                            s.source_up = false;
                            fail_over = pacing.auto_failover;
                        }
                        s.last_error = Some(detail);
                        s.last_error_us = Some(now);
                    }
                }
                s.archive_free_bytes = free;
                if let Some(t) = takeover {
                    s.takeover = Some(t);
                }
                alerts.evaluate(s, now);
                // Tight while changes flow or something is wrong; relaxed when all is quiet.
                let flowing = s.archived != last_archived || s.backlog > 0;
                last_archived = s.archived;
                let interval = if flowing || s.source_failures > 0 || !s.source_up {
                    pacing.busy
                } else {
                    pacing.idle
                };
                s.heartbeat_interval_ms = interval.as_millis() as u64;
                (recovered, interval, fail_over)
            });
            if recovered {
                ctx.bus.post(Event::SourceRecovered);
            }
            if fail_over {
                tracing::warn!("auto_failover is on: failing over to the most up-to-date replica");
                let last_seen_us = ctx.board.snapshot().primary_last_seen_us;
                ctx.bus.post(Event::Failover(FailoverAsk {
                    order: FailoverOrder {
                        automatic: true,
                        last_seen_us,
                        ..FailoverOrder::default()
                    },
                    reply: None,
                }));
            }
            if !ctx.shutdown.sleep(interval) {
                return Ok(());
            }
        }
    }
}
