//! The publisher job: the archive's changes, in archive order, to the change stream (NATS
//! JetStream, [`rowtrail_stream`]), exactly once.
//!
//! It has its own handle on the archive ([`Archive::open_beside`]): it reads the changes after
//! the published position with the archive's query ([`ChangeQuery`]), publishes them in
//! pipelined windows, and records the position in the archive only after the server
//! acknowledged every change up to it. It is woken after each mover pass that archived
//! something ([`Event::Archived`]) and at least every poll interval.
//!
//! Exactly once, in order, across crashes and restarts: every message's id is
//! `<incarnation>:<seq>` and names the one before it (see [`rowtrail_stream::connection`]).
//! When the publisher (re)connects it asks the stream for its last message and goes on after
//! it, so a watcher killed between the server's acknowledgement and the position's write sends
//! nothing twice, even past the server's duplicate window; a server that lost its last
//! messages gets them again. Every failure is retried with a capped backoff that resets on
//! success, logged at most every 30 s per distinct error, and shown in the status; every wait
//! also ends at once on shutdown.

use std::time::{Duration, Instant};

use crossbeam_channel::select;
use rowtrail_reader::archive::{Archive, ChangeQuery};
use rowtrail_reader::now_micros;
use rowtrail_stream::envelope::{envelope_bytes, message_id, SourceInfo};
use rowtrail_stream::{Connection, Outgoing, PendingWindow, Settings, StreamError};

use super::{Job, JobContext};
use crate::control::Event;
use crate::status::{Board, StreamStatus};
use crate::WatcherError;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The same error is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// What the publisher job needs.
#[derive(Debug, Clone)]
pub struct StreamJob {
    /// The server, the subjects and the stream.
    pub settings: Settings,
    /// What the envelopes say of the source.
    pub source: SourceInfo,
    /// The safety net: a look at the archive at least this often.
    pub poll_interval: Duration,
    /// Changes read from the archive per round of windows.
    pub batch: usize,
}

/// The publisher job.
pub(crate) struct Publisher {
    job: StreamJob,
    archive: std::path::PathBuf,
}

impl Publisher {
    /// A publisher of the archive at `archive` (opened once the job starts).
    pub(crate) fn new(job: StreamJob, archive: std::path::PathBuf) -> Self {
        Self { job, archive }
    }
}

/// The job's state between rounds.
struct Loop {
    job: StreamJob,
    archive: Archive,
    key: String,
    /// The archive's id, the value of the cut header.
    archive_id: String,
    /// The last change the stream holds, as far as this job knows.
    position: i64,
    /// The id of the stream's last message of this source (what the next one names).
    last_id: Option<String>,
    conn: Option<Connection>,
    backoff: Duration,
    retry_at: Option<Instant>,
    last_logged: Option<(String, Instant)>,
}

impl Job for Publisher {
    fn name(&self) -> &'static str {
        "publisher"
    }

    fn takes(&self) -> fn(&Event) -> bool {
        |e| matches!(e, Event::Archived)
    }

    fn run(self: Box<Self>, ctx: JobContext) -> Result<(), WatcherError> {
        let archive = Archive::open_beside(&self.archive)?;
        let key = self.job.settings.position_key();
        let archive_id = archive.id()?;
        let position = archive.published_position(&key)?.unwrap_or(0);
        let s = &self.job.settings;
        ctx.board.update(|st| {
            st.stream = Some(StreamStatus {
                url: s.url.clone(),
                stream: s.stream.clone(),
                subjects: s.subjects.all(),
                published_id: position,
                ..StreamStatus::default()
            })
        });
        let mut state = Loop {
            job: self.job,
            archive,
            key,
            archive_id,
            position,
            last_id: None,
            conn: None,
            backoff: BACKOFF_START,
            retry_at: None,
            last_logged: None,
        };
        let mut next_poll = Instant::now();
        loop {
            if ctx.shutdown.is_triggered() {
                break;
            }
            let due = state.retry_at.is_none_or(|r| Instant::now() >= r);
            if due {
                match state.round(&ctx) {
                    Ok(()) => state.succeeded(&ctx.board),
                    Err(e) => state.failed(e, &ctx.board),
                }
                next_poll = Instant::now() + state.job.poll_interval;
            }
            state.measure(&ctx.board);
            let wake_at = state.retry_at.map_or(next_poll, |r| r.min(next_poll));
            select! {
                recv(ctx.inbox) -> ev => if ev.is_err() { break },
                recv(ctx.shutdown.signal()) -> _ => break,
                default(wake_at.saturating_duration_since(Instant::now())) => {}
            }
            // Coalesce: one round serves every wake queued meanwhile.
            while ctx.inbox.try_recv().is_ok() {}
        }
        if let Some(c) = state.conn.take() {
            c.close();
        }
        Ok(())
    }
}

impl Loop {
    /// Connects when needed, then publishes until the archive has nothing after the position
    /// (or the watcher stops). The next batch is read and encoded while the one before it is
    /// being published; a batch is sent only after the one before it was acknowledged whole.
    fn round(&mut self, ctx: &JobContext) -> Result<(), StreamError> {
        if self.conn.is_none() {
            let conn = Connection::open(&self.job.settings)?;
            ctx.board.update(|s| stream_of(s).connected = true);
            self.conn = Some(conn);
            self.find_place()?;
        }
        let mut read_to = self.position;
        let mut pending: Option<(PendingWindow, Vec<(i64, String)>)> = None;
        loop {
            let next = if ctx.shutdown.is_triggered() {
                Ok(None)
            } else {
                self.prepare(read_to).map(Some)
            };
            if let Some((window, sent)) = pending.take() {
                self.settle(window, &sent, ctx)?;
            }
            let Some((msgs, sent)) = next? else {
                return Ok(());
            };
            let Some((last, _)) = sent.last() else {
                return Ok(());
            };
            read_to = *last;
            let conn = self.conn.as_ref().expect("connected above");
            pending = Some((conn.start_publish(msgs, self.last_id.clone()), sent));
        }
    }

    /// The messages of the changes after `after`, and each one's change id and message id.
    ///
    /// On a SQLite source, whose transactions are whole and in order in the archive, a message
    /// that ends a transaction carries the cut header: the change after it is of another
    /// transaction, or it is the newest change and a cut of the archive covers it. At the
    /// archive's tip the changes after the last such message wait for the next round (for the
    /// rest of their transaction, or the cut that says it is whole), so a consumer that
    /// applies whole transactions is never left waiting on the stream's last message.
    #[allow(clippy::type_complexity)]
    fn prepare(&self, after: i64) -> Result<(Vec<Outgoing>, Vec<(i64, String)>), StreamError> {
        let batch = self.job.batch.max(1);
        let q = ChangeQuery {
            after_id: Some(after),
            limit: Some(batch as u64 + 1),
            ..ChangeQuery::default()
        };
        let mut changes = self
            .archive
            .stream_pages(&q, batch as u64 + 1)?
            .collect::<Result<Vec<_>, _>>()?;
        let lookahead = (changes.len() > batch).then(|| changes.pop()).flatten();
        let marks_cuts = self.job.source.engine == "sqlite";
        let mut ends = vec![false; changes.len()];
        if marks_cuts {
            for (i, c) in changes.iter().enumerate() {
                ends[i] = match changes.get(i + 1).or(lookahead.as_ref()) {
                    Some(n) => c.tx.is_none() || n.incarnation != c.incarnation || n.tx != c.tx,
                    None => {
                        c.tx.is_none()
                            || self
                                .archive
                                .cut(&c.incarnation, None)?
                                .is_some_and(|cut| cut.change_id >= c.id)
                    }
                };
            }
        }
        let keep = if marks_cuts && lookahead.is_none() {
            ends.iter().rposition(|&e| e).map_or(0, |i| i + 1)
        } else {
            changes.len()
        };
        let subjects = &self.job.settings.subjects;
        let mut msgs = Vec::with_capacity(keep);
        let mut sent = Vec::with_capacity(keep);
        for (c, end) in changes.iter().zip(ends).take(keep) {
            let id = message_id(c);
            sent.push((c.id, id.clone()));
            msgs.push(Outgoing {
                subject: subjects.of_table(
                    c.table.name.schema.as_ref().map(|s| s.as_str()),
                    c.table.name.name.as_str(),
                ),
                id,
                payload: envelope_bytes(c, &self.job.source).into(),
                cut: end.then(|| self.archive_id.clone()),
            });
        }
        Ok((msgs, sent))
    }

    /// Waits for a window, records how far the stream acknowledged it, and returns its error.
    fn settle(
        &mut self,
        window: PendingWindow,
        sent: &[(i64, String)],
        ctx: &JobContext,
    ) -> Result<(), StreamError> {
        let out = window.wait(self.conn.as_ref().expect("connected"));
        if out.acked > 0 {
            let (change, id) = &sent[out.acked - 1];
            self.position = *change;
            self.last_id = Some(id.clone());
            self.archive.record_published(
                &self.key,
                &self.job.settings.subjects.all(),
                self.position,
            )?;
            let (acked, dups) = (out.acked as u64, out.duplicates as u64);
            let position = self.position;
            ctx.board.update(|s| {
                let st = stream_of(s);
                st.published_id = position;
                // Archive ids have no gaps: until the next measure, the lag is the distance
                // to the last tip seen.
                st.lag_changes = (st.archive_tip - position).max(0) as u64;
                st.published += acked - dups;
                st.duplicates += dups;
                st.last_publish_us = Some(now_micros());
            });
        }
        match out.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Asks the stream for this source's last message and takes the position from it: ahead of
    /// the archive's record after a crash between acknowledgement and record, behind it when
    /// the server lost messages (they are sent again).
    fn find_place(&mut self) -> Result<(), StreamError> {
        let conn = self.conn.as_ref().expect("connected");
        let last = conn.last_message_id()?;
        let Some(id) = last.clone() else {
            // Nothing of this source in the stream (new, or everything aged out): go on from
            // the recorded position.
            self.last_id = None;
            return Ok(());
        };
        let found = id
            .rsplit_once(':')
            .and_then(|(inc, seq)| Some((inc, seq.parse::<i64>().ok()?)));
        let change = match found {
            Some((inc, seq)) => self.archive.change_id_of(inc, seq)?,
            None => None,
        };
        let Some(change) = change else {
            return Err(StreamError::StreamSettings {
                url: self.job.settings.url.clone(),
                stream: self.job.settings.stream.clone(),
                detail: format!(
                    "its last message on {} has the id {id:?}, which is no change of this \
                     archive: another archive publishes to these subjects; give this source \
                     another stream.source or stream.subject",
                    self.job.settings.subjects.all()
                ),
            });
        };
        if change != self.position {
            tracing::info!(stream = %self.job.settings.stream, recorded = self.position,
                stream_holds = change, "published position taken from the stream's last message");
        }
        if change > self.position {
            self.archive
                .record_published(&self.key, &self.job.settings.subjects.all(), change)?;
        }
        self.position = change;
        self.last_id = last;
        Ok(())
    }

    fn succeeded(&mut self, board: &Board) {
        if self.retry_at.is_some() || self.last_logged.is_some() {
            tracing::info!(stream = %self.job.settings.stream, "publishing again");
        }
        self.backoff = BACKOFF_START;
        self.retry_at = None;
        self.last_logged = None;
        board.update(|s| stream_of(s).last_error = None);
    }

    fn failed(&mut self, e: StreamError, board: &Board) {
        let out_of_step = matches!(
            e,
            StreamError::Publish {
                out_of_step: true,
                ..
            }
        );
        if out_of_step {
            // The stream is not where this job thought: find the place again on this connection.
            if let Err(again) = self.find_place() {
                return self.failed(again, board);
            }
        } else if !matches!(e, StreamError::Archive(_)) {
            // Start again on a fresh connection after the stream's last message.
            if let Some(c) = self.conn.take() {
                drop(c);
            }
        }
        let msg = e.to_string();
        let connected = self.conn.is_some();
        board.update(|s| {
            let st = stream_of(s);
            st.connected = connected;
            st.last_error = Some(msg.clone());
            st.last_error_us = Some(now_micros());
        });
        let repeat = self
            .last_logged
            .as_ref()
            .is_some_and(|(m, at)| *m == msg && at.elapsed() < LOG_EVERY);
        if !repeat {
            tracing::error!(error = %msg, retry_in_ms = self.backoff.as_millis() as u64,
                "publishing to the stream failed");
            self.last_logged = Some((msg, Instant::now()));
        }
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Puts the lag behind the archive into the status.
    fn measure(&mut self, board: &Board) {
        match self.archive.lag_after(self.position) {
            Ok(lag) => {
                let secs = lag
                    .oldest_archived_us
                    .map_or(0.0, |us| ((now_micros() - us).max(0)) as f64 / 1e6);
                let position = self.position;
                board.update(|s| {
                    let st = stream_of(s);
                    st.published_id = position;
                    st.archive_tip = lag.archive_tip;
                    st.lag_changes = lag.changes;
                    st.lag_seconds = secs;
                });
            }
            Err(e) => tracing::debug!(error = %e, "cannot measure the stream's lag"),
        }
    }
}

/// The stream part of the status (set when the job starts).
fn stream_of(s: &mut crate::status::Status) -> &mut StreamStatus {
    s.stream.get_or_insert_with(StreamStatus::default)
}
