//! Takeovers: the record of every failover and handback, step by step.
//!
//! A takeover row is written when one begins and updated after each labelled step, so a run
//! cut short (a kill, a crash) is found and finished by the next one, and each state is a
//! ledger entry: the hash chain covers who was primary when, and `verify` finds a row edited
//! outside rowtrail. The newest *finished* takeover names the current primary; before any, the
//! configured source is.
//!
//! A finished takeover also links two incarnations: every change of `from_incarnation` up to
//! `last_change_id` came before the copy took over, and `to_incarnation` (capture installed on
//! the copy) follows from there. Replicas cross that link as if it were one stream.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Archive;
use crate::{now_micros, ReaderError};

/// What kind of takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeoverKind {
    /// A replica took over from a primary that failed.
    Failover,
    /// The repaired primary took its role back.
    Handback,
}

impl TakeoverKind {
    /// `failover` or `handback`, as the archive stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            TakeoverKind::Failover => "failover",
            TakeoverKind::Handback => "handback",
        }
    }

    fn parse(text: &str) -> Self {
        if text == "handback" {
            TakeoverKind::Handback
        } else {
            TakeoverKind::Failover
        }
    }
}

/// One takeover, as the archive holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeover {
    /// Its id.
    pub id: i64,
    /// Failover or handback.
    pub kind: TakeoverKind,
    /// The last step it finished (`begun`, then the steps of its kind, then `done`).
    pub step: String,
    /// The incarnation of the primary it took over from.
    pub from_incarnation: String,
    /// That primary's engine (`sqlite`, `mssql`).
    pub from_engine: String,
    /// Where that primary is (a file, or a server and database; never credentials).
    pub from_location: String,
    /// The engine of the copy that takes over.
    pub to_engine: String,
    /// Where that copy is.
    pub to_location: String,
    /// The incarnation capture was installed as on the copy, once it is.
    pub to_incarnation: Option<String>,
    /// Where the old primary's stream ends: the archive change id of the cut at its last
    /// change (every change of it the copy holds is at or below it). A successor follows from
    /// here.
    pub last_change_id: Option<i64>,
    /// Its seq.
    pub last_seq: Option<i64>,
    /// Its source time (UTC, the archive's text form): the newest committed write known.
    pub last_at: Option<String>,
    /// When the old primary last answered a heartbeat (µs since the epoch), if known.
    pub primary_last_seen_us: Option<i64>,
    /// What fencing did to the old primary: `fenced`, or `pending` (it could not be reached;
    /// it is fenced the moment it is reachable again).
    pub fence: Option<String>,
    /// Whether the operator forced it past a primary that still answered.
    pub forced: bool,
    /// Whether the watcher started it on its own (`auto_failover`).
    pub automatic: bool,
    /// Who ran it (the operating-system user).
    pub by_user: String,
    /// On which host.
    pub by_host: String,
    /// When it began (µs since the epoch).
    pub started_us: i64,
    /// When it finished, once it has.
    pub finished_us: Option<i64>,
    /// What it did beyond the positions, as JSON (a handback: changes applied, conflicts,
    /// orphans), once known.
    pub detail: Option<String>,
}

/// The primary the archive names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPrimary {
    /// Its engine.
    pub engine: String,
    /// Where it is.
    pub location: String,
    /// Its capture incarnation.
    pub incarnation: Option<String>,
    /// The takeover that made it primary.
    pub takeover: i64,
}

const COLUMNS: &str = "id, kind, step, from_incarnation, from_engine, from_location, to_engine, \
    to_location, to_incarnation, last_change_id, last_seq, last_at, primary_last_seen_us, fence, \
    forced, automatic, by_user, by_host, started_us, finished_us, detail";

fn read(r: &Row<'_>) -> rusqlite::Result<Takeover> {
    Ok(Takeover {
        id: r.get(0)?,
        kind: TakeoverKind::parse(&r.get::<_, String>(1)?),
        step: r.get(2)?,
        from_incarnation: r.get(3)?,
        from_engine: r.get(4)?,
        from_location: r.get(5)?,
        to_engine: r.get(6)?,
        to_location: r.get(7)?,
        to_incarnation: r.get(8)?,
        last_change_id: r.get(9)?,
        last_seq: r.get(10)?,
        last_at: r.get(11)?,
        primary_last_seen_us: r.get(12)?,
        fence: r.get(13)?,
        forced: r.get::<_, i64>(14)? != 0,
        automatic: r.get::<_, i64>(15)? != 0,
        by_user: r.get(16)?,
        by_host: r.get(17)?,
        started_us: r.get(18)?,
        finished_us: r.get(19)?,
        detail: r.get(20)?,
    })
}

/// The ledger body of a takeover state.
pub(super) fn body(t: &Takeover) -> serde_json::Value {
    json!({ "takeover": t })
}

impl Archive {
    /// Records a takeover that begins now (step `begun`); returns it with its id.
    pub fn begin_takeover(&mut self, mut t: Takeover) -> Result<Takeover, ReaderError> {
        let path = self.path.clone();
        let e = |cause| ReaderError::archive(&path, "cannot record a takeover", cause);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        t.step = "begun".into();
        t.started_us = now_micros();
        t.finished_us = None;
        tx.execute(
            "INSERT INTO takeovers (kind, step, from_incarnation, from_engine, from_location, \
             to_engine, to_location, to_incarnation, last_change_id, last_seq, last_at, \
             primary_last_seen_us, fence, forced, automatic, by_user, by_host, started_us) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            params![
                t.kind.as_str(),
                t.step,
                t.from_incarnation,
                t.from_engine,
                t.from_location,
                t.to_engine,
                t.to_location,
                t.to_incarnation,
                t.last_change_id,
                t.last_seq,
                t.last_at,
                t.primary_last_seen_us,
                t.fence,
                t.forced as i64,
                t.automatic as i64,
                t.by_user,
                t.by_host,
                t.started_us,
            ],
        )
        .map_err(e)?;
        t.id = tx.last_insert_rowid();
        super::ledger::record(&tx, "takeover", t.id, &body(&t)).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(t)
    }

    /// Records that takeover `t.id` reached `t.step`, with the fields it holds now; `done`
    /// finishes it (and makes its copy the current primary, for a failover or handback alike).
    pub fn advance_takeover(&mut self, t: &mut Takeover) -> Result<(), ReaderError> {
        let path = self.path.clone();
        let e = |cause| ReaderError::archive(&path, "cannot record a takeover step", cause);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        if t.step == "done" && t.finished_us.is_none() {
            t.finished_us = Some(now_micros());
        }
        let n = tx
            .execute(
                "UPDATE takeovers SET step = ?2, to_incarnation = ?3, last_change_id = ?4, \
                 last_seq = ?5, last_at = ?6, primary_last_seen_us = ?7, fence = ?8, \
                 finished_us = ?9, detail = ?10 WHERE id = ?1 AND finished_us IS NULL",
                params![
                    t.id,
                    t.step,
                    t.to_incarnation,
                    t.last_change_id,
                    t.last_seq,
                    t.last_at,
                    t.primary_last_seen_us,
                    t.fence,
                    t.finished_us,
                    t.detail,
                ],
            )
            .map_err(e)?;
        if n != 1 {
            return Err(ReaderError::BadRequest(format!(
                "takeover {} is finished or unknown: it cannot move to step {}",
                t.id, t.step
            )));
        }
        super::ledger::record(&tx, "takeover", t.id, &body(t)).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// Records what takeover `id` did after it finished (a handback's demotion of the copy).
    pub fn set_takeover_detail(&mut self, id: i64, detail: &str) -> Result<(), ReaderError> {
        self.update_finished(id, "detail", detail)
    }

    fn update_finished(&mut self, id: i64, column: &str, value: &str) -> Result<(), ReaderError> {
        let path = self.path.clone();
        let e = |cause| ReaderError::archive(&path, "cannot record a takeover", cause);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        tx.execute(
            &format!("UPDATE takeovers SET {column} = ?2 WHERE id = ?1"),
            params![id, value],
        )
        .map_err(e)?;
        let t = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM takeovers WHERE id = ?1"),
                [id],
                read,
            )
            .map_err(e)?;
        super::ledger::record(&tx, "takeover", id, &body(&t)).map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(())
    }

    /// Records that the old primary of takeover `id` is fenced now (`fenced`), after it
    /// could not be reached when the takeover ran; finished takeovers too.
    pub fn set_takeover_fence(&mut self, id: i64, fence: &str) -> Result<(), ReaderError> {
        self.update_finished(id, "fence", fence)
    }

    /// Every takeover, oldest first.
    pub fn takeovers(&self) -> Result<Vec<Takeover>, ReaderError> {
        self.conn
            .prepare(&format!("SELECT {COLUMNS} FROM takeovers ORDER BY id"))
            .and_then(|mut s| s.query_map([], read)?.collect())
            .map_err(self.err("cannot read the takeovers"))
    }

    /// The takeover begun and not finished, if one is (at most one is, by construction).
    pub fn unfinished_takeover(&self) -> Result<Option<Takeover>, ReaderError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM takeovers WHERE finished_us IS NULL \
                     ORDER BY id DESC LIMIT 1"
                ),
                [],
                read,
            )
            .optional()
            .map_err(self.err("cannot read the takeovers"))
    }

    /// The primary the newest finished takeover made (`None`: there was none, and the
    /// configured source is the primary).
    pub fn recorded_primary(&self) -> Result<Option<RecordedPrimary>, ReaderError> {
        self.conn
            .query_row(
                "SELECT to_engine, to_location, to_incarnation, id FROM takeovers \
                 WHERE finished_us IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(RecordedPrimary {
                        engine: r.get(0)?,
                        location: r.get(1)?,
                        incarnation: r.get(2)?,
                        takeover: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(self.err("cannot read the takeovers"))
    }

    /// The incarnation that took over from `incarnation`, and the archive change id where the
    /// stream of `incarnation` ended: a consumer that has applied `incarnation` up to there
    /// goes on with the successor (and never applies what `incarnation` archived later: a
    /// handback's orphans).
    pub fn successor(&self, incarnation: &str) -> Result<Option<(String, i64)>, ReaderError> {
        self.conn
            .query_row(
                "SELECT to_incarnation, coalesce(last_change_id, 0) FROM takeovers \
                 WHERE from_incarnation = ?1 AND finished_us IS NOT NULL \
                   AND to_incarnation IS NOT NULL \
                   AND coalesce(json_extract(detail, '$.diverged'), 0) = 0 \
                 ORDER BY id LIMIT 1",
                [incarnation],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err("cannot read the takeovers"))
    }
}

/// Checks the takeovers table against the ledger's newest entry for each: a row edited,
/// forged or removed outside rowtrail is a problem.
pub(super) fn check(
    conn: &rusqlite::Connection,
    recorded: std::collections::BTreeMap<i64, serde_json::Value>,
    problems: &mut Vec<String>,
) -> rusqlite::Result<()> {
    let mut recorded = recorded;
    let rows: Vec<Takeover> = conn
        .prepare(&format!("SELECT {COLUMNS} FROM takeovers ORDER BY id"))?
        .query_map([], read)?
        .collect::<Result<_, _>>()?;
    for t in rows {
        match recorded.remove(&t.id) {
            None => problems.push(format!(
                "takeovers: takeover {} has no ledger record: it was added outside rowtrail",
                t.id
            )),
            Some(r) if r != body(&t) => problems.push(format!(
                "takeovers: takeover {} differs from its ledger record (its primary, positions \
                 or state were edited outside rowtrail)",
                t.id
            )),
            Some(_) => {}
        }
    }
    for id in recorded.keys() {
        problems.push(format!("takeovers: takeover {id} was removed"));
    }
    Ok(())
}
