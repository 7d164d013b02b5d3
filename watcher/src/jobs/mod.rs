//! The watcher's jobs: each does one kind of work for the watcher's whole life, on a thread of
//! its own.
//!
//! | job | file | does | takes from the bus | writes into the status |
//! |---|---|---|---|---|
//! | `mover` | [`mover`] | staging → archive passes, woken by signals, the engine probe and the poll timer (posts `Archived` after a pass that archived something); failovers and handbacks, between passes (it holds the archive and the source) | `Wake`, `Flush`, `SourceRecovered`, `Failover` | passes, archived, images, wakeups, last pass, last error, the newest takeover |
//! | `heartbeat` | [`heartbeat`] | the primary's probe (connect, login, query; slow told from gone; an adaptive interval) and the archive's disk; alerts | — (posts `SourceRecovered`, and `Failover` with `auto_failover`) | source up/down, heartbeat state, backlog, disk free, alerts |
//! | `replicas` | [`replicas`] | the replicas the config names, kept current from the archive (a promoted one is left alone) | `Archived` | each replica's position, changes behind, lag, last error |
//! | `verify` | [`verify`] | scheduled checks (`verify_every`): the archive's hash chain, each replica against the source; the `verify_failed` alert | — | `checks`: each check's last run, result and next run |
//! | `publisher` | [`publisher`] | archived changes to the change stream (NATS JetStream), when `[stream]` is configured | `Archived` | `stream`: published position, lag, connected, last error |
//! | `remote-replica` | [`remote_replica`] | one replica fed from the change stream (`[[remote_replica]]`), one job each; the only jobs of a watcher without a source | — | `remote_replicas`: position, consumer lag, connected, last error |
//!
//! Every job shares the daemon's [`Shutdown`], its [`Bus`] and its status [`Board`]; none owns
//! another's state. A job returns when the shutdown is triggered, after finishing what it has in
//! hand; every wait inside it (for its inbox, a timer, a retry backoff) selects on the shutdown
//! too. A job that returns for any other reason, or panics, stops the watcher (the daemon
//! triggers the shutdown and reports it): a watcher doing only part of its work should fail
//! loudly and be restarted by its service manager, not limp on.
//!
//! A new job is one more file here implementing [`Job`], one more line in `daemon::run_jobs`, its fields in
//! [`Status`](crate::status::Status) (and its lines in `metrics::render`), and, if it is woken
//! by events, a variant of [`Event`] and a [`Job::takes`] that accepts it.

pub(crate) mod heartbeat;
pub(crate) mod mover;
pub(crate) mod publisher;
pub(crate) mod remote_replica;
pub(crate) mod replicas;
pub(crate) mod verify;

use crate::control::{Bus, Event, Inbox, Shutdown};
use crate::status::Board;
use crate::WatcherError;

/// What the daemon hands every job.
pub(crate) struct JobContext {
    /// The watcher's one stop mechanism.
    pub shutdown: Shutdown,
    /// Where the job posts events for other jobs.
    pub bus: Bus,
    /// The events the bus delivered to this job (see [`Job::takes`]).
    pub inbox: Inbox,
    /// The shared status, which the job keeps current for its part.
    pub board: Board,
}

/// One kind of work the watcher does for its whole life.
pub(crate) trait Job: Send {
    /// A short name: the thread is `rowtrail-<name>`, and errors name it.
    fn name(&self) -> &'static str;

    /// Which bus events this job takes (none by default).
    fn takes(&self) -> fn(&Event) -> bool {
        |_| false
    }

    /// Does the work until `ctx.shutdown` is triggered.
    fn run(self: Box<Self>, ctx: JobContext) -> Result<(), WatcherError>;
}
