//! The heartbeat job: every interval, a fresh look at the source (is it there, is capture
//! installed, how much waits in staging and since when) and at the archive's disk; then the
//! alert rules.
//!
//! It has its own connection, so it keeps judging while a pass is stuck (a locked or full
//! archive), and it notices a source file that was moved, replaced or deleted, which the mover's
//! open connection would not. When the source comes back (or was reinstalled) it tells the mover
//! to reconnect.

use std::path::PathBuf;
use std::time::Duration;

use rowtrail_reader::source::Health;
use rowtrail_reader::{now_micros, ReaderError};

use super::{Job, JobContext};
use crate::alerts::{AlertRules, Alerts};
use crate::control::Event;
use crate::WatcherError;

/// One heartbeat against the source.
pub type HealthCheck = Box<dyn FnMut() -> Result<Health, ReaderError> + Send>;

/// Failed heartbeats in a row before the source counts as down.
pub const DOWN_AFTER: u32 = 3;

/// The heartbeat job.
pub(crate) struct Heartbeat {
    check: HealthCheck,
    interval: Duration,
    rules: AlertRules,
    archive: PathBuf,
}

impl Heartbeat {
    /// A heartbeat running `check` every `interval`, judging `rules`; `archive` is the file
    /// whose disk is watched.
    pub(crate) fn new(
        check: HealthCheck,
        interval: Duration,
        rules: AlertRules,
        archive: PathBuf,
    ) -> Self {
        Self {
            check,
            interval,
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
        loop {
            let result = (self.check)();
            let free = fs4::available_space(&self.archive).ok();
            let now = now_micros();
            let recovered = ctx.board.update(|s| {
                let mut recovered = false;
                match result {
                    Ok(h) => {
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
                    Err(e @ ReaderError::SourceLocked { .. }) => {
                        if s.source_blocked.is_none() {
                            tracing::warn!(source = %s.source, error = %e, "source is blocked");
                        }
                        s.source_blocked = Some(e.to_string());
                        s.source_blocked_since_us.get_or_insert(now);
                    }
                    Err(e) => {
                        s.source_failures += 1;
                        s.source_down_since_us.get_or_insert(now);
                        if s.source_failures == DOWN_AFTER {
                            tracing::error!(source = %s.source, error = %e, "source is down ({DOWN_AFTER} failed heartbeats in a row)");
                            s.source_up = false;
                        }
                        s.last_error = Some(e.to_string());
                        s.last_error_us = Some(now);
                    }
                }
                s.archive_free_bytes = free;
                alerts.evaluate(s, now);
                recovered
            });
            if recovered {
                ctx.bus.post(Event::SourceRecovered);
            }
            if !ctx.shutdown.sleep(self.interval) {
                return Ok(());
            }
        }
    }
}
