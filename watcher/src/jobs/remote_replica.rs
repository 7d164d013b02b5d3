//! The remote replica job: one replica, on a host without the archive, kept current from the
//! change stream ([`rowtrail_stream::remote`]) — the watcher's side of `rowtrail replica apply
//! --from-stream --follow`.
//!
//! It steps for the watcher's whole life: each step fetches what the stream has (waiting a
//! moment for it), applies the whole source transactions in hand in one replica transaction
//! and acknowledges them after the commit. Its lag (the consumer's pending messages, and the
//! age in the archive of the oldest of them) is measured at least every poll interval. A
//! failure (the server down, a refused message, a damaged replica) is retried with a capped
//! backoff that resets on success, shown in the status and logged at most every 30 s; the
//! next attempt starts again from the replica's recorded position, so nothing is lost or
//! applied twice. Every wait ends at once on shutdown (a fetch waits at most half a second).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::select;
use rowtrail_reader::now_micros;
use rowtrail_stream::remote::{RemoteReplica, RemoteSettings};
use rowtrail_stream::StreamError;

use super::{Job, JobContext};
use crate::status::{Board, RemoteReplicaState};
use crate::WatcherError;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The same error is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(30);
/// How long a fetch waits for messages.
const FETCH_WAIT: Duration = Duration::from_millis(500);

/// One remote replica the watcher keeps current (`[[remote_replica]]`).
#[derive(Debug, Clone)]
pub struct RemoteReplicaSettings {
    /// The replica file (built from a baseline with `rowtrail replica create`, carried here).
    pub path: PathBuf,
    /// The stream it is fed from.
    pub remote: RemoteSettings,
}

/// The job of one remote replica.
pub(crate) struct RemoteReplicaJob {
    settings: RemoteReplicaSettings,
    /// Its place in [`crate::status::Status::remote_replicas`].
    index: usize,
    interval: Duration,
}

impl RemoteReplicaJob {
    /// The job of the `index`-th remote replica, measuring its lag at least every `interval`.
    pub(crate) fn new(settings: RemoteReplicaSettings, index: usize, interval: Duration) -> Self {
        Self {
            settings,
            index,
            interval,
        }
    }
}

/// The remote replica's part of the status.
fn state(board: &Board, i: usize, change: impl FnOnce(&mut RemoteReplicaState)) {
    board.update(|s| {
        if let Some(r) = s.remote_replicas.get_mut(i) {
            change(r)
        }
    });
}

impl Job for RemoteReplicaJob {
    fn name(&self) -> &'static str {
        "remote-replica"
    }

    fn run(self: Box<Self>, ctx: JobContext) -> Result<(), WatcherError> {
        let s = &self.settings;
        let i = self.index;
        let mut remote: Option<RemoteReplica> = None;
        let mut backoff = BACKOFF_START;
        let mut last_logged: Option<(String, Instant)> = None;
        let mut next_measure = Instant::now();
        while !ctx.shutdown.is_triggered() {
            let result = (|| -> Result<bool, StreamError> {
                if remote.is_none() {
                    let r = RemoteReplica::open(&s.path, &s.remote)?;
                    let (stream, subjects, consumer) = (
                        r.stream().to_string(),
                        r.subjects().all(),
                        r.consumer_name().to_string(),
                    );
                    state(&ctx.board, i, |st| {
                        st.subjects = subjects;
                        st.stream = stream;
                        st.consumer = consumer;
                    });
                    remote = Some(r);
                }
                let r = remote.as_mut().expect("opened above");
                let step = r.step(FETCH_WAIT)?;
                let p = step.position.clone();
                let (stream, connected) = (r.stream().to_string(), r.connected());
                state(&ctx.board, i, |st| {
                    st.stream = stream;
                    st.connected = connected;
                    st.position = p.change_id;
                    st.position_seq = p.seq;
                    st.consistent = p.consistent;
                    st.waiting = step.waiting as u64;
                    st.applied += step.applied;
                    if step.applied > 0 {
                        st.last_apply_us = Some(now_micros());
                    }
                });
                if step.applied > 0 || Instant::now() >= next_measure {
                    let lag = r.lag()?;
                    state(&ctx.board, i, |st| {
                        st.pending = lag.pending;
                        st.lag_secs = lag.seconds;
                    });
                    next_measure = Instant::now() + self.interval;
                }
                Ok(step.applied > 0)
            })();
            match result {
                Ok(applied) => {
                    if last_logged.take().is_some() {
                        tracing::info!(replica = %s.path.display(), "remote replica applying again");
                    }
                    if applied {
                        tracing::debug!(replica = %s.path.display(), "remote replica applied");
                    }
                    backoff = BACKOFF_START;
                    state(&ctx.board, i, |st| st.last_error = None);
                }
                Err(e) => {
                    let msg = e.to_string();
                    if !e.is_transient() {
                        // Opened afresh next time: the file may have been replaced or repaired.
                        remote = None;
                    }
                    let connected = remote.as_ref().is_some_and(RemoteReplica::connected);
                    state(&ctx.board, i, |st| {
                        st.connected = connected;
                        st.last_error = Some(msg.clone());
                        st.last_error_us = Some(now_micros());
                    });
                    let repeat = last_logged
                        .as_ref()
                        .is_some_and(|(m, at)| *m == msg && at.elapsed() < LOG_EVERY);
                    if !repeat {
                        tracing::error!(replica = %s.path.display(), error = %msg,
                            retry_in_ms = backoff.as_millis() as u64, "remote replica not applied");
                        last_logged = Some((msg, Instant::now()));
                    }
                    select! {
                        recv(ctx.shutdown.signal()) -> _ => break,
                        default(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        Ok(())
    }
}
