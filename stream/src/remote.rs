//! A remote replica: a replica ([`rowtrail_standby::replica`]) on a host without the archive,
//! kept current from the change stream.
//!
//! The replica is built from a baseline on the backup host (`rowtrail replica create`, from
//! the archive or a copy of it) and carried to the remote host; from its position on, it reads
//! its source's messages with a durable pull consumer ([`crate::consumer`]), decodes each back
//! into the change the archive holds ([`crate::decode`]), and applies whole source
//! transactions through the replica's own apply path ([`Replica::apply_changes`]): one replica
//! transaction per step, the rows, the position and the stream position together. Messages
//! are acknowledged only after that transaction commits.
//!
//! Whole transactions: a message that ends a transaction carries the cut header
//! ([`crate::connection::CUT_HEADER`], the archive's id); changes after the last such message
//! wait in memory for the rest of their transaction.
//!
//! Exactly once, across kills: the stream's order is the archive's, whose change ids have no
//! gaps; a change at or below the replica's position is passed over (a redelivery, or the
//! replica's own baseline), the next one must be the one after the position (anything else is
//! a gap: messages aged out or the stream emptied, and the replica refuses to go on), and a
//! change of another source incarnation, or of another archive, is refused.
//!
//! Crash points for tests ([`rowtrail_reader::failpoint`]): `remote-apply-before-commit` (a
//! step's rows and position written, not committed) and `remote-apply-after-commit` (committed,
//! not yet acknowledged).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rowtrail_reader::archive::ArchivedChange;
use rowtrail_reader::failpoint;
use rowtrail_sql::Table;
use rowtrail_standby::replica::{Position, Replica};
use sha2::{Digest, Sha256};

use crate::consumer::{stream_holding, Consumer, Delivered};
use crate::decode::{decode, Incoming};
use crate::settings::{Credentials, Settings, Storage, DEFAULT_DUPLICATE_WINDOW};
use crate::subject::Subjects;
use crate::StreamError;

/// Messages fetched per step.
pub const FETCH: usize = 2_000;

/// The replica's records of its stream (in [`Replica::record`]).
const SUBJECTS: &str = "stream.subjects";
const STREAM: &str = "stream.stream";
const CONSUMER: &str = "stream.consumer";
const STREAM_SEQ: &str = "stream.seq";

/// Where a remote replica reads the stream.
#[derive(Debug, Clone)]
pub struct RemoteSettings {
    /// The server (`nats://…` or `tls://…`), without credentials.
    pub url: String,
    /// The source's subjects (`<prefix>.<source>`); `None`: those the replica recorded on its
    /// first run.
    pub subjects: Option<Subjects>,
    /// The JetStream stream; `None`: the one recorded, else the one holding the subjects.
    pub stream: Option<String>,
    /// A request's deadline.
    pub timeout: Duration,
    /// Extra certificate authorities, for `tls://`.
    pub ca_file: Option<PathBuf>,
    /// Who the consumer is (from the environment only).
    pub credentials: Credentials,
}

/// What one [`RemoteReplica::step`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Messages delivered.
    pub fetched: usize,
    /// Changes written to the replica.
    pub applied: u64,
    /// Changes passed over: at or below the position, or in a table's baseline.
    pub skipped: u64,
    /// Changes held for the rest of their transaction.
    pub waiting: usize,
    /// The replica's position afterwards.
    pub position: Position,
}

/// How far a remote replica is behind the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RemoteLag {
    /// Messages of its source the replica has not applied (delivered or not).
    pub pending: u64,
    /// How long the oldest of them has been in the archive, in seconds (0 when none waits).
    pub seconds: f64,
}

/// What a replica records of the stream it is fed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The source's subjects (`<prefix>.<source>.>`).
    pub subjects: String,
    /// The stream, once known.
    pub stream: Option<String>,
    /// The durable consumer's name.
    pub consumer: Option<String>,
}

/// What `replica` records of the stream it is fed from; `None` when it never was.
pub fn recorded(replica: &Replica) -> Result<Option<Recorded>, StreamError> {
    let Some(subjects) = replica.record(SUBJECTS)? else {
        return Ok(None);
    };
    Ok(Some(Recorded {
        subjects,
        stream: replica.record(STREAM)?,
        consumer: replica.record(CONSUMER)?,
    }))
}

/// A change received and not yet applied.
struct Held {
    change: ArchivedChange,
    cut: bool,
    delivered: Delivered,
}

/// A replica kept current from the stream.
pub struct RemoteReplica {
    replica: Replica,
    path: PathBuf,
    settings: Settings,
    consumer_name: String,
    consumer: Option<Consumer>,
    tables: HashMap<(Option<String>, String), Arc<Table>>,
    held: BTreeMap<i64, Held>,
    /// The stream position up to which every message is applied or passed over.
    stream_seq: u64,
}

impl RemoteReplica {
    /// Opens the replica at `path` to be fed from the stream `remote` names. The subjects and
    /// the stream are recorded in the replica on its first run and must stay the same after
    /// (a replica belongs to one source). Does not connect yet.
    pub fn open(path: &Path, remote: &RemoteSettings) -> Result<Self, StreamError> {
        let mut replica = Replica::open(path)?;
        let recorded = replica.record(SUBJECTS)?;
        let subjects = match (&remote.subjects, recorded) {
            (Some(s), Some(r)) if s.all() != r => {
                return Err(StreamError::Refused(format!(
                    "{} is fed from the subjects {r}, not {}: a replica belongs to one source \
                     (build another replica for that one)",
                    path.display(),
                    s.all()
                )))
            }
            (Some(s), _) => s.clone(),
            (None, Some(r)) => Subjects::from_filter(&r)?,
            (None, None) => {
                return Err(StreamError::Config(format!(
                    "name the source's subjects the first time {} is fed from the stream \
                     (--subject rowtrail.<source>, as the publisher's [stream] subject and \
                     source make them)",
                    path.display()
                )))
            }
        };
        let stream = match (&remote.stream, replica.record(STREAM)?) {
            (Some(s), _) => Some(s.clone()),
            (None, r) => r,
        };
        let consumer_name = match replica.record(CONSUMER)? {
            Some(n) => n,
            None => consumer_name(&replica, path),
        };
        let stream_seq = replica
            .record(STREAM_SEQ)?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let tables = replica
            .tables()
            .iter()
            .map(|t| {
                let n = &t.definition.name;
                (
                    (
                        n.schema.as_ref().map(|s| s.as_str().to_string()),
                        n.name.as_str().to_string(),
                    ),
                    t.definition.clone(),
                )
            })
            .collect();
        if replica.record(SUBJECTS)?.is_none() {
            replica.set_record(SUBJECTS, &subjects.all())?;
            replica.set_record(CONSUMER, &consumer_name)?;
        }
        Settings::check_url(&remote.url)?;
        Ok(Self {
            settings: Settings {
                url: remote.url.clone(),
                stream: stream.unwrap_or_default(),
                subjects,
                max_age: None,
                replicas: 1,
                storage: Storage::File,
                duplicate_window: DEFAULT_DUPLICATE_WINDOW,
                window: FETCH,
                timeout: remote.timeout,
                ca_file: remote.ca_file.clone(),
                credentials: remote.credentials.clone(),
            },
            replica,
            path: path.to_path_buf(),
            consumer_name,
            consumer: None,
            tables,
            held: BTreeMap::new(),
            stream_seq,
        })
    }

    /// The replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The subjects it reads.
    pub fn subjects(&self) -> &Subjects {
        &self.settings.subjects
    }

    /// The stream it reads (empty until it is known).
    pub fn stream(&self) -> &str {
        &self.settings.stream
    }

    /// The durable consumer's name.
    pub fn consumer_name(&self) -> &str {
        &self.consumer_name
    }

    /// Whether it holds a consumer now.
    pub fn connected(&self) -> bool {
        self.consumer.is_some()
    }

    /// Connects and makes the consumer again from the replica's stream position.
    fn connect(&mut self) -> Result<(), StreamError> {
        if self.settings.stream.is_empty() {
            self.settings.stream =
                stream_holding(&self.settings)?.ok_or_else(|| StreamError::StreamSettings {
                    url: self.settings.url.clone(),
                    stream: "(none)".into(),
                    detail: format!(
                        "no stream holds the subjects {}: set [stream] in the rowtrail.toml of \
                         the watcher that holds the source's archive (its subject and source \
                         make these subjects), or name the stream (--stream)",
                        self.settings.subjects.all()
                    ),
                })?;
        }
        let consumer = Consumer::open(&self.settings, &self.consumer_name, self.stream_seq)?;
        if self.replica.record(STREAM)?.as_deref() != Some(self.settings.stream.as_str()) {
            self.replica.set_record(STREAM, &self.settings.stream)?;
        }
        self.held.clear();
        self.consumer = Some(consumer);
        Ok(())
    }

    /// Fetches what the stream has (waiting at most `wait` for it), applies every whole
    /// transaction in hand in one replica transaction, and acknowledges the messages after it
    /// commits. On an error nothing more is applied, and the next step starts again from the
    /// replica's position on a fresh consumer.
    pub fn step(&mut self, wait: Duration) -> Result<StepReport, StreamError> {
        let result = self.step_inner(wait);
        if result.is_err() {
            self.consumer = None;
            self.held.clear();
        }
        result
    }

    fn step_inner(&mut self, wait: Duration) -> Result<StepReport, StreamError> {
        if self.replica.paused() {
            // Paused: it stays where it is (`replica resume` lets it go on).
            std::thread::sleep(wait);
            return Ok(StepReport {
                fetched: 0,
                applied: 0,
                skipped: 0,
                waiting: 0,
                position: self.replica.position().clone(),
            });
        }
        if self.consumer.is_none() {
            self.connect()?;
        }
        let consumer = self.consumer.as_ref().expect("connected above");
        let delivered = consumer.fetch(FETCH, wait)?;
        let fetched = delivered.len();
        let mut skipped = 0u64;
        let mut passed: Option<Delivered> = None;
        for d in delivered {
            let change = self.receive(&d)?;
            match change {
                None => {
                    skipped += 1;
                    if self.held.is_empty() {
                        self.stream_seq = self.stream_seq.max(d.stream_seq);
                        passed = Some(d);
                    }
                }
                Some((change, cut)) => {
                    self.held.insert(
                        change.id,
                        Held {
                            change,
                            cut,
                            delivered: d,
                        },
                    );
                }
            }
        }
        let mut report = StepReport {
            fetched,
            applied: 0,
            skipped,
            waiting: 0,
            position: self.replica.position().clone(),
        };
        // The whole transactions in hand: up to the last change that ends one.
        let through = self
            .held
            .iter()
            .filter(|(_, h)| h.cut)
            .map(|(&id, _)| id)
            .next_back();
        if let Some(through) = through {
            let rest = self.held.split_off(&(through + 1));
            let batch = std::mem::replace(&mut self.held, rest);
            let last = batch.values().next_back().expect("not empty");
            let position = Position {
                change_id: last.change.id,
                seq: last.change.seq,
                source_at: last
                    .change
                    .at
                    .clone()
                    .or_else(|| self.replica.position().source_at.clone()),
                consistent: true,
            };
            let stream_seq = last.delivered.stream_seq;
            let changes: Vec<ArchivedChange> = batch.values().map(|h| h.change.clone()).collect();
            let r = self.replica.apply_changes(
                &changes,
                position,
                &[(STREAM_SEQ, stream_seq.to_string())],
                || failpoint::hit("remote-apply-before-commit"),
            )?;
            failpoint::hit("remote-apply-after-commit");
            self.stream_seq = stream_seq;
            report.applied = r.applied;
            report.skipped += r.skipped;
            report.position = r.position;
            let last = batch.into_values().next_back().expect("not empty");
            passed = Some(last.delivered);
        }
        if let Some(d) = passed {
            self.consumer.as_ref().expect("connected").ack_through(&d)?;
        }
        report.waiting = self.held.len();
        Ok(report)
    }

    /// Checks one delivered message; `None` when it is at or below what the replica holds.
    fn receive(&self, d: &Delivered) -> Result<Option<(ArchivedChange, bool)>, StreamError> {
        let at = |what: String| {
            StreamError::Refused(format!(
                "{} cannot take the stream's message {} ({}): {what}; nothing after the \
                 replica's position (change {}) was applied",
                self.path.display(),
                d.stream_seq,
                d.id.as_deref().unwrap_or("no message id"),
                self.replica.position().change_id
            ))
        };
        if let Some(archive) = &d.cut {
            if archive != self.replica.archive_id() {
                return Err(at(format!(
                    "it comes from the archive {archive}, and the replica was built from the \
                     archive {}: build the replica from (a copy of) the archive that publishes \
                     to this stream",
                    self.replica.archive_id()
                )));
            }
        }
        let inc: Incoming = decode(&d.payload).map_err(at)?;
        let position = self.replica.position().change_id;
        let newest = self.held.keys().next_back().copied().unwrap_or(position);
        if inc.id <= newest {
            return Ok(None);
        }
        if inc.incarnation != self.replica.incarnation() {
            return Err(at(format!(
                "it is a change of source incarnation {} (source {:?}), and the replica follows \
                 source incarnation {}: a replica belongs to one source (was the source \
                 installed again? then build a new replica from a new baseline)",
                inc.incarnation,
                inc.source,
                self.replica.incarnation()
            )));
        }
        if inc.id != newest + 1 {
            return Err(at(format!(
                "it is change {}, and the stream lacks the changes from {} (they aged out of \
                 the stream, or it was emptied or made again): build the replica again from a \
                 baseline and go on from there",
                inc.id,
                newest + 1
            )));
        }
        let key = (inc.schema.clone(), inc.table.clone());
        let Some(table) = self.tables.get(&key).cloned() else {
            return Err(at(format!(
                "change {} is of table {}, which the replica does not hold (captured after its \
                 baseline): take a baseline of it and build a new replica",
                inc.id, inc.table
            )));
        };
        let cut = d.cut.is_some();
        let change = inc.into_change(table).map_err(at)?;
        Ok(Some((change, cut)))
    }

    /// Steps until a step fetches nothing (waiting `wait` each time for more): the replica then
    /// holds every whole transaction the stream had. Returns the steps' totals.
    pub fn drain(&mut self, wait: Duration) -> Result<StepReport, StreamError> {
        let mut total: Option<StepReport> = None;
        loop {
            let r = self.step(wait)?;
            let t = total.get_or_insert_with(|| StepReport {
                fetched: 0,
                applied: 0,
                skipped: 0,
                waiting: 0,
                position: r.position.clone(),
            });
            t.fetched += r.fetched;
            t.applied += r.applied;
            t.skipped += r.skipped;
            t.waiting = r.waiting;
            t.position = r.position.clone();
            if r.fetched == 0 {
                return Ok(total.expect("set above"));
            }
        }
    }

    /// How far the replica is behind the stream (connecting first when needed).
    pub fn lag(&mut self) -> Result<RemoteLag, StreamError> {
        if self.consumer.is_none() {
            self.connect()?;
        }
        let consumer = self.consumer.as_ref().expect("connected above");
        let lag = consumer.lag()?;
        if lag.pending == 0 {
            return Ok(RemoteLag::default());
        }
        let oldest = match self.held.values().next() {
            Some(h) => Some(h.change.archived_us),
            None => consumer
                .message_at(self.stream_seq + 1)?
                .and_then(|p| decode(&p).ok())
                .map(|i| i.archived_us),
        };
        let seconds = oldest.map_or(0.0, |us| {
            ((rowtrail_reader::now_micros() - us).max(0)) as f64 / 1e6
        });
        Ok(RemoteLag {
            pending: lag.pending,
            seconds,
        })
    }
}

/// A consumer name for a replica: derived from its archive, source and file, so replicas of
/// one stream never share one.
fn consumer_name(replica: &Replica, path: &Path) -> String {
    let mut h = Sha256::new();
    h.update(replica.archive_id().as_bytes());
    h.update([0]);
    h.update(replica.incarnation().as_bytes());
    h.update([0]);
    let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    h.update(full.to_string_lossy().as_bytes());
    h.update([0]);
    h.update(rowtrail_reader::now_micros().to_le_bytes());
    let d = h.finalize();
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("rowtrail_replica_{hex}")
}
