//! The mover job: it owns the source connection and the archive, and runs the trace reader's
//! passes ([`rowtrail_reader::mover`]).
//!
//! A pass runs when a socket `signal` or `flush` arrives (at once), when the engine probe sees a
//! commit (every `probe_interval`), and at least every `poll_interval` whatever else happens. A
//! failed pass is retried with a capped backoff that resets on success; every wait (for an
//! event, the next probe, the retry) also ends at once on shutdown, and a pass in progress stops
//! after the batch in hand.
//!
//! Its counters (`archived`, `images`) move as each batch commits, so a pass that fails after
//! archiving many batches is still counted, and a `flush` answers with everything archived
//! after it arrived, including the rest of a pass that was running then.

use std::time::{Duration, Instant};

use crossbeam_channel::select;
use rowtrail_reader::archive::Archive;
use rowtrail_reader::mover::{self, PassError, PassStats};
use rowtrail_reader::source::Source;
use rowtrail_reader::{now_micros, ReaderError};

use super::{Job, JobContext};
use crate::control::{Event, FailoverAsk, Flush, Totals};
use crate::protocol::{Drained, Response};
use crate::status::{Board, Status};
use crate::{FailoverHandler, SourceFactory, WatcherError};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The same error is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// How the mover paces itself.
pub(crate) struct Pace {
    /// The safety net: a pass at least this often.
    pub poll_interval: Duration,
    /// How often the engine probe looks for new commits.
    pub probe_interval: Duration,
    /// Images per batch.
    pub batch: usize,
}

/// The mover job.
pub(crate) struct Mover {
    open_source: SourceFactory,
    archive: Archive,
    pace: Pace,
    digest: crate::digest::Publisher,
    failover: Option<FailoverHandler>,
}

impl Mover {
    /// A mover that opens its source with `open_source` (again after each source failure) and
    /// writes `archive`.
    pub(crate) fn new(
        open_source: SourceFactory,
        archive: Archive,
        pace: Pace,
        digest: crate::digest::Publisher,
        failover: Option<FailoverHandler>,
    ) -> Self {
        Self {
            open_source,
            archive,
            pace,
            digest,
            failover,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Signal,
    Probe,
    Poll,
}

impl Job for Mover {
    fn name(&self) -> &'static str {
        "mover"
    }

    fn takes(&self) -> fn(&Event) -> bool {
        |e| {
            matches!(
                e,
                Event::Wake | Event::Flush(_) | Event::SourceRecovered | Event::Failover(_)
            )
        }
    }

    fn run(self: Box<Self>, ctx: JobContext) -> Result<(), WatcherError> {
        let Mover {
            mut open_source,
            mut archive,
            pace,
            digest,
            mut failover,
        } = *self;
        let mut state = Loop {
            source: None,
            last_version: None,
            backoff: BACKOFF_START,
            retry_at: None,
            last_logged: None,
            flushes: Vec::new(),
            failovers: Vec::new(),
        };
        let mut next_poll = Instant::now();
        let mut stopping = false;
        while !stopping {
            let now = Instant::now();
            let mut deadline = next_poll.min(now + pace.probe_interval);
            if let Some(r) = state.retry_at {
                deadline = deadline.max(r.min(next_poll));
            }
            let mut wake = None;
            select! {
                recv(ctx.inbox) -> ev => match ev {
                    Ok(ev) => wake = state.take(ev),
                    Err(_) => stopping = true, // the bus is gone: the daemon is stopping
                },
                recv(ctx.shutdown.signal()) -> _ => stopping = true,
                default(deadline.saturating_duration_since(now)) => {
                    wake = state.on_timer(next_poll);
                }
            }
            // Coalesce whatever else is queued into this pass.
            while let Ok(ev) = ctx.inbox.try_recv() {
                if let Some(w) = state.take(ev) {
                    wake = wake.or(Some(w));
                }
            }
            if stopping || ctx.shutdown.is_triggered() {
                break;
            }
            let Some(wake) = wake else { continue };
            // A failover runs here, between passes: this job holds the archive and the source.
            for ask in std::mem::take(&mut state.failovers) {
                if take_over(&mut failover, &mut archive, ask, &ctx) {
                    state.reconnect();
                    ctx.bus.post(Event::Archived);
                }
            }
            let in_backoff = state.retry_at.is_some_and(|r| Instant::now() < r);
            if in_backoff && state.flushes.is_empty() && wake != Wake::Poll {
                continue;
            }
            ctx.board.update(|s| match wake {
                Wake::Signal => s.wakeups.signal += 1,
                Wake::Probe => s.wakeups.probe += 1,
                Wake::Poll => s.wakeups.poll += 1,
            });
            if state.pass(&mut open_source, &mut archive, &pace, &ctx) > 0 {
                digest.publish(&archive);
                ctx.bus.post(Event::Archived);
            }
            next_poll = Instant::now() + pace.poll_interval;
            stopping = ctx.shutdown.is_triggered();
        }
        for flush in state.flushes.drain(..) {
            let _ = flush.reply.send(Response::error("the watcher is stopping"));
        }
        Ok(())
    }
}

struct Loop {
    source: Option<Box<dyn Source>>,
    last_version: Option<i64>,
    backoff: Duration,
    retry_at: Option<Instant>,
    last_logged: Option<(String, Instant)>,
    flushes: Vec<Flush>,
    failovers: Vec<FailoverAsk>,
}

/// Carries out one failover; returns whether the primary changed.
fn take_over(
    handler: &mut Option<FailoverHandler>,
    archive: &mut Archive,
    mut ask: FailoverAsk,
    ctx: &JobContext,
) -> bool {
    let answer = |ask: &FailoverAsk, r: Response| {
        if let Some(reply) = &ask.reply {
            let _ = reply.send(r);
        }
    };
    let Some(handler) = handler.as_mut() else {
        answer(
            &ask,
            Response::error("this watcher was started without failover"),
        );
        return false;
    };
    if ask.order.last_seen_us.is_none() {
        ask.order.last_seen_us = ctx.board.snapshot().primary_last_seen_us;
    }
    tracing::warn!(automatic = ask.order.automatic, to = ?ask.order.to, force = ask.order.force, "failover begins");
    match handler(archive, &ask.order) {
        Ok((location, outcome)) => {
            tracing::warn!(primary = %location, "failover done: the watcher follows the new primary");
            ctx.board.update(|s| {
                s.source = location;
                s.incarnation = None;
                s.source_up = true;
                s.source_failures = 0;
                s.source_down_since_us = None;
                s.last_error = None;
                s.primary_state = None;
                s.primary_detail = None;
                s.takeover = crate::daemon::takeover_state(archive);
            });
            answer(
                &ask,
                Response {
                    ok: true,
                    failover: Some(outcome),
                    ..Response::default()
                },
            );
            true
        }
        Err(msg) => {
            tracing::error!(error = %msg, "failover not done");
            ctx.board.update(|s| {
                let mut t = crate::daemon::takeover_state(archive).unwrap_or_default();
                t.last_error = Some(msg.clone());
                s.takeover = Some(t);
            });
            answer(&ask, Response::error(msg));
            false
        }
    }
}

impl Loop {
    /// Takes one event from the inbox; returns the wake it asks for.
    fn take(&mut self, ev: Event) -> Option<Wake> {
        match ev {
            Event::Wake => Some(Wake::Signal),
            Event::Flush(f) => {
                self.flushes.push(f);
                Some(Wake::Signal)
            }
            Event::SourceRecovered => {
                self.reconnect();
                Some(Wake::Probe)
            }
            Event::Failover(f) => {
                self.failovers.push(f);
                Some(Wake::Signal)
            }
            // Posted by the mover itself, for the replicas job and the publisher.
            Event::Archived => None,
        }
    }

    /// No event came before the deadline: the poll timer, a retry, or the engine probe.
    fn on_timer(&mut self, next_poll: Instant) -> Option<Wake> {
        let now = Instant::now();
        if now >= next_poll {
            return Some(Wake::Poll);
        }
        if let Some(retry) = self.retry_at {
            // Retry after a failure.
            return (now >= retry).then_some(Wake::Probe);
        }
        let Some(source) = self.source.as_mut() else {
            return Some(Wake::Probe);
        };
        match source.probe() {
            Ok(v) if Some(v) != self.last_version => Some(Wake::Probe),
            Ok(_) => None,
            Err(_) => Some(Wake::Probe), // let the pass report it
        }
    }

    /// Drops the source connection so the next pass opens a fresh one, and retries at once.
    fn reconnect(&mut self) {
        self.source = None;
        self.last_version = None;
        self.retry_at = None;
        self.backoff = BACKOFF_START;
    }

    /// One pass; returns how many changes it archived (also when it failed after some).
    fn pass(
        &mut self,
        open_source: &mut SourceFactory,
        archive: &mut Archive,
        pace: &Pace,
        ctx: &JobContext,
    ) -> u64 {
        let started = Instant::now();
        // What this pass has put into the status so far: the counters move batch by batch.
        let mut counted = PassStats::default();
        let result = self.drain(open_source, archive, pace, ctx, &mut counted);
        let done = match &result {
            Ok((stats, _)) => *stats,
            Err(e) => e.done,
        };
        let totals = ctx.board.update(|s| {
            count(s, &mut counted, &done);
            s.pass_seconds_total += started.elapsed().as_secs_f64();
            Totals {
                archived: s.archived,
                images: s.images,
            }
        });
        match result {
            Ok((stats, complete)) => self.succeeded(stats, complete, totals, &ctx.board),
            Err(e) => self.failed(e, totals, &ctx.board),
        }
        done.archived
    }

    fn succeeded(&mut self, stats: PassStats, complete: bool, totals: Totals, board: &Board) {
        board.update(|s| {
            s.passes += 1;
            s.last_pass_us = Some(now_micros());
            s.last_error = None;
            if complete {
                s.backlog = 0;
                s.backlog_oldest_age_secs = None;
            }
            if let Some(source) = &self.source {
                s.incarnation = Some(source.info().incarnation.clone());
            }
        });
        if stats.archived > 0 || stats.duplicates > 0 {
            tracing::debug!(
                archived = stats.archived,
                duplicates = stats.duplicates,
                batches = stats.batches,
                "pass"
            );
        }
        self.backoff = BACKOFF_START;
        self.retry_at = None;
        self.last_logged = None;
        for flush in self.flushes.drain(..) {
            let drained = since(&flush, totals);
            let reply = if complete {
                Response {
                    ok: true,
                    drained: Some(drained),
                    ..Response::default()
                }
            } else {
                Response::error(format!(
                    "the watcher is stopping ({} change(s) were archived since the request)",
                    drained.archived
                ))
            };
            let _ = flush.reply.send(reply);
        }
    }

    fn failed(&mut self, e: PassError, totals: Totals, board: &Board) {
        let source_side = matches!(
            *e.cause,
            ReaderError::Source { .. }
                | ReaderError::NotInstalled { .. }
                | ReaderError::BadStaging { .. }
        );
        if source_side {
            // Reconnect next time; the heartbeat decides whether the source is down.
            self.source = None;
            self.last_version = None;
        }
        let msg = e.to_string();
        board.update(|s| {
            s.last_error = Some(msg.clone());
            s.last_error_us = Some(now_micros());
        });
        let repeat = self
            .last_logged
            .as_ref()
            .is_some_and(|(m, at)| *m == msg && at.elapsed() < LOG_EVERY);
        if !repeat {
            tracing::error!(error = %msg, retry_in_ms = self.backoff.as_millis() as u64, "pass failed");
            self.last_logged = Some((msg.clone(), Instant::now()));
        }
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        for flush in self.flushes.drain(..) {
            let archived = since(&flush, totals).archived;
            let _ = flush.reply.send(Response::error(format!(
                "{msg} ({archived} change(s) were archived since the request)"
            )));
        }
    }

    /// Drains staging; `complete` is false when a shutdown stopped it between batches.
    /// `counted` follows what has been added to the status as batches commit.
    fn drain(
        &mut self,
        open_source: &mut SourceFactory,
        archive: &mut Archive,
        pace: &Pace,
        ctx: &JobContext,
        counted: &mut PassStats,
    ) -> Result<(PassStats, bool), PassError> {
        let failed = |cause| PassError {
            done: PassStats::default(),
            cause: Box::new(cause),
        };
        if self.source.is_none() {
            self.source = Some(open_source().map_err(failed)?);
        }
        let source = self.source.as_mut().expect("just opened").as_mut();
        source.refresh().map_err(failed)?;
        // Taken before reading: a commit after this point changes it, so the next probe looks again.
        let version = source.probe().map_err(failed)?;
        if ctx.shutdown.is_triggered() {
            self.last_version = None;
            return Ok((PassStats::default(), false));
        }
        let (stats, drained) = mover::drain_while(source, archive, pace.batch, &mut |stats| {
            ctx.board.update(|s| count(s, counted, stats));
            !ctx.shutdown.is_triggered()
        })?;
        self.last_version = drained.then_some(version);
        Ok((stats, drained))
    }
}

/// Adds to the status what `now` has done beyond what was `counted` already.
fn count(s: &mut Status, counted: &mut PassStats, now: &PassStats) {
    s.archived += now.archived.saturating_sub(counted.archived);
    s.images += now.images.saturating_sub(counted.images);
    *counted = *now;
}

/// What was archived between a flush's arrival and `totals`.
fn since(flush: &Flush, totals: Totals) -> Drained {
    Drained {
        archived: totals.archived.saturating_sub(flush.since.archived),
        images: totals.images.saturating_sub(flush.since.images),
    }
}
