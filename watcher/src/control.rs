//! The watcher's control plane: the one shutdown and the bus that carries events to jobs.
//!
//! Everything else depends on this module and it depends on nothing of the watcher but the
//! protocol's reply type: the socket endpoint and the jobs post [`Event`]s on the [`Bus`], the
//! daemon delivers each to the jobs that take it, and every thread that waits (a job between
//! passes, a retry backoff, the heartbeat's interval) waits on its inbox *and* the
//! [`Shutdown`], so a stop request ends every wait at once.
//!
//! There is one way to stop the watcher: [`Shutdown::trigger`], called by the OS signal handler
//! (SIGINT, SIGTERM), by the socket's `shutdown` request, and by the daemon when a job ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::protocol::Response;

/// Nothing is ever sent on the shutdown channel: it is closed, and a closed channel wakes every
/// receiver at once.
pub(crate) enum Never {}

/// The watcher's one stop mechanism. Clones share it; triggering any clone stops them all.
#[derive(Clone)]
pub(crate) struct Shutdown {
    trigger: Arc<Mutex<Option<Sender<Never>>>>,
    stopped: Receiver<Never>,
}

impl Shutdown {
    /// A shutdown not yet triggered.
    pub(crate) fn new() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Self {
            trigger: Arc::new(Mutex::new(Some(tx))),
            stopped: rx,
        }
    }

    /// Stops the watcher: every job finishes what it has in hand and returns. Idempotent.
    pub(crate) fn trigger(&self) {
        // Dropping the only sender closes the channel: every waiter wakes.
        drop(self.trigger.lock().map(|mut t| t.take()));
    }

    /// Whether the watcher is stopping.
    pub(crate) fn is_triggered(&self) -> bool {
        matches!(self.stopped.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Sleeps for `d`, or less if the watcher stops meanwhile; returns `false` when it stops.
    pub(crate) fn sleep(&self, d: Duration) -> bool {
        match self.stopped.recv_timeout(d) {
            Ok(never) => match never {},
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// A receiver that becomes ready (disconnected) when the watcher stops, for `select!`.
    pub(crate) fn signal(&self) -> &Receiver<Never> {
        &self.stopped
    }
}

/// The totals a flush is measured against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Changes archived since the watcher started.
    pub archived: u64,
    /// Staged images archived since the watcher started.
    pub images: u64,
}

/// A `flush` request: drain staging, then answer with what was archived since `since`.
#[derive(Debug, Clone)]
pub(crate) struct Flush {
    /// Where the answer goes (the socket client waiting for it).
    pub reply: tokio::sync::mpsc::UnboundedSender<Response>,
    /// The totals when the request arrived: the answer counts everything archived after them,
    /// including the rest of a pass that was running then.
    pub since: Totals,
}

/// What a failover is asked to do (a socket `failover`, or the heartbeat's `auto_failover`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailoverOrder {
    /// The replica to promote (default: the most up to date configured one).
    pub to: Option<std::path::PathBuf>,
    /// Take over even though the primary still answers.
    pub force: bool,
    /// Started by the watcher on its own.
    pub automatic: bool,
    /// When the primary last answered a heartbeat (µs since the epoch), if it ever did.
    pub last_seen_us: Option<i64>,
    /// A handback instead: the repaired primary that takes its role back.
    pub handback_to: Option<std::path::PathBuf>,
    /// For a handback: what to do with conflicts (`keep`, `take-promoted`; none: refuse).
    pub conflicts: Option<String>,
}

/// A failover to carry out, and who waits for its answer.
#[derive(Debug, Clone)]
pub(crate) struct FailoverAsk {
    /// What to do.
    pub order: FailoverOrder,
    /// Where the answer goes (a socket client waiting), if anyone waits.
    pub reply: Option<tokio::sync::mpsc::UnboundedSender<Response>>,
}

/// What travels on the bus.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// Changes were committed: look now (a socket `signal`). Taken by the mover.
    Wake,
    /// Drain now and answer (a socket `flush`). Taken by the mover.
    Flush(Flush),
    /// The heartbeat found the source again (or a new incarnation): reconnect and look. Taken
    /// by the mover.
    SourceRecovered,
    /// A pass archived changes (posted by the mover). Taken by the replicas job and the
    /// stream publisher.
    Archived,
    /// Fail over now. Taken by the mover, which holds the archive and the source.
    Failover(FailoverAsk),
}

/// One job's inbox: the events the bus delivers to it.
pub(crate) type Inbox = Receiver<Event>;

/// Which events a job takes.
pub(crate) type Takes = fn(&Event) -> bool;

/// Delivers events to the jobs that take them. Cheap to clone; built once, before the jobs start.
#[derive(Clone)]
pub(crate) struct Bus {
    subscribers: Arc<[(Takes, Sender<Event>)]>,
}

impl Bus {
    /// A bus with one inbox per entry of `takes`, returned in the same order.
    pub(crate) fn new(takes: &[Takes]) -> (Self, Vec<Inbox>) {
        let (subscribers, inboxes): (Vec<_>, Vec<_>) = takes
            .iter()
            .map(|t| {
                let (tx, rx) = crossbeam_channel::unbounded();
                ((*t, tx), rx)
            })
            .unzip();
        (
            Self {
                subscribers: subscribers.into(),
            },
            inboxes,
        )
    }

    /// Hands `event` to every job that takes it and still runs; returns how many got it.
    pub(crate) fn post(&self, event: Event) -> usize {
        self.subscribers
            .iter()
            .filter(|(takes, _)| takes(&event))
            .filter(|(_, tx)| tx.send(event.clone()).is_ok())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_trigger_ends_every_wait_at_once_and_stays_triggered() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_triggered());
        assert!(
            shutdown.sleep(Duration::from_millis(1)),
            "a plain sleep runs out"
        );
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let s = shutdown.clone();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    let slept_out = s.sleep(Duration::from_secs(60));
                    (slept_out, started.elapsed())
                })
            })
            .collect();
        shutdown.trigger();
        shutdown.trigger();
        for w in waiters {
            let (slept_out, took) = w.join().unwrap();
            assert!(!slept_out);
            assert!(took < Duration::from_secs(10), "{took:?}");
        }
        assert!(shutdown.is_triggered());
        assert!(!shutdown.sleep(Duration::from_secs(60)));
    }

    #[test]
    fn the_bus_delivers_only_to_jobs_that_take_the_event() {
        let (bus, inboxes) = Bus::new(&[
            |e| matches!(e, Event::Wake),
            |e| matches!(e, Event::Wake | Event::SourceRecovered),
        ]);
        assert_eq!(bus.post(Event::Wake), 2);
        assert_eq!(bus.post(Event::SourceRecovered), 1);
        assert!(matches!(inboxes[0].try_recv(), Ok(Event::Wake)));
        assert!(inboxes[0].try_recv().is_err());
        assert!(matches!(inboxes[1].try_recv(), Ok(Event::Wake)));
        assert!(matches!(inboxes[1].try_recv(), Ok(Event::SourceRecovered)));
        let (reply, _) = tokio::sync::mpsc::unbounded_channel();
        let flush = Event::Flush(Flush {
            reply,
            since: Totals::default(),
        });
        assert_eq!(bus.post(flush), 0, "nobody takes a flush here");
        drop(inboxes);
        assert_eq!(bus.post(Event::Wake), 0, "a stopped job gets nothing");
    }
}
