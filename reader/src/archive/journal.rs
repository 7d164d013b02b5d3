//! The undo journal: which undo and redo runs were applied, to which changes, with what outcome.
//!
//! A run moves through `applying` → `applied` (or `abandoned` when its source transaction never
//! committed); an applied undo run becomes `redone` when a redo run re-applies it. The run's
//! state is the only value in the archive that is ever updated in place; its items are written
//! once, before the source transaction commits.
//!
//! Every write a run makes to the source carries the run's `tx_tag` (`undo:<id>` or
//! `redo:<id>`) as its transaction, so the captured changes are linked to the run, and a run
//! interrupted between the source commit and its `applied` mark can be settled from those
//! changes alone ([`Archive::settle_run`]).
//!
//! Where the capture cannot carry the tag (SQL Server triggers record the writer's transaction
//! id and nothing a session can set), the run records its own source transaction's id instead
//! ([`Archive::link_run`]), once, while that transaction is open and before any write; its
//! writes are then the changes of its source carrying that id.

use rowtrail_sql::Value;
use rusqlite::{params, OptionalExtension};

use super::Archive;
use crate::sqlite::Param;
use crate::{now_micros, ReaderError};

/// How far the source's clock (which stamps each change) and the clock of the host that ran an
/// undo (which stamps the run) may disagree: a run's writes are the changes carrying its link
/// stamped between its start and its end, widened by this on both sides.
///
/// The link alone is not enough on SQL Server: `CURRENT_TRANSACTION_ID()` numbers transactions
/// anew when the instance restarts (and differently after a failover), so a later transaction
/// of the same incarnation can carry a run's number.
pub const CLOCK_MARGIN_US: i64 = 15 * 60 * 1_000_000;

/// The earliest source time (µs since the epoch) a write of a run begun at `created_us` can
/// carry.
pub fn window_start(created_us: i64) -> i64 {
    created_us - CLOCK_MARGIN_US
}

/// `c.at` (ISO-8601 text, the source's UTC clock) as a Julian day, for comparisons with a run's
/// microsecond stamps: `(µs / 86400e6) + 2440587.5`.
const JULIAN_EPOCH: &str = "2440587.5";

/// The SQL condition (over `changes c`) that leaves out what undo must never select: changes
/// written by an undo or redo run (labelled with its tag, or on SQL Server written in the source
/// transaction the journal links to a run that did not end abandoned, at a time within the run's
/// window: [`CLOCK_MARGIN_US`]), and changes an applied undo run undid. `?S` stands for the
/// source id's parameter. (The uncorrelated `NOT IN` answers most changes, whose transaction no
/// run ever carried, without looking at the window.)
pub(super) const NOT_UNDO_WRITES: &str = "(c.tx IS NULL OR (c.tx NOT IN (SELECT tx_tag FROM \
     undo_runs WHERE source_id = ?S) AND c.tx NOT IN (SELECT source_tx FROM undo_runs \
     WHERE source_id = ?S AND source_tx IS NOT NULL AND state <> 'abandoned')) \
     OR NOT EXISTS (SELECT 1 FROM undo_runs r WHERE r.source_id = ?S \
     AND (r.tx_tag = c.tx OR (r.source_tx = c.tx AND r.state <> 'abandoned')) \
     AND (julianday(c.at) IS NULL OR julianday(c.at) BETWEEN \
     (r.created_us - 900000000) / 86400000000.0 + 2440587.5 AND \
     coalesce((r.finished_us + 900000000) / 86400000000.0 + 2440587.5, 1e9)))) \
     AND c.id NOT IN (SELECT i.change_id FROM undo_items i JOIN undo_runs r ON r.id = i.run_id \
     WHERE r.kind = 'undo' AND r.state = 'applied' AND i.outcome <> 'skipped')";

/// Undo or redo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Inverses of archived changes, newest first.
    Undo,
    /// An undone run's changes re-applied, oldest first.
    Redo,
}

impl RunKind {
    /// The word stored in the journal and used in the run's tag.
    pub fn word(self) -> &'static str {
        match self {
            RunKind::Undo => "undo",
            RunKind::Redo => "redo",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "undo" => Some(RunKind::Undo),
            "redo" => Some(RunKind::Redo),
            _ => None,
        }
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Recorded; its source transaction may or may not have committed.
    Applying,
    /// Its source transaction committed.
    Applied,
    /// Its source transaction never committed (refused, failed or interrupted).
    Abandoned,
    /// An applied undo run whose changes a redo run re-applied.
    Redone,
}

impl RunState {
    /// The word stored in the journal.
    pub fn word(self) -> &'static str {
        match self {
            RunState::Applying => "applying",
            RunState::Applied => "applied",
            RunState::Abandoned => "abandoned",
            RunState::Redone => "redone",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "applying" => Some(RunState::Applying),
            "applied" => Some(RunState::Applied),
            "abandoned" => Some(RunState::Abandoned),
            "redone" => Some(RunState::Redone),
            _ => None,
        }
    }
}

/// One undo or redo run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoRun {
    /// The run's id.
    pub id: i64,
    /// When it was recorded (µs since the epoch).
    pub created_us: i64,
    /// Undo or redo.
    pub kind: RunKind,
    /// The conflict mode (`refuse`, `cascade`, `skip`, `force`).
    pub mode: String,
    /// The scope as asked, as JSON.
    pub scope: String,
    /// The source incarnation it applies to.
    pub incarnation: String,
    /// The transaction label its source writes carry.
    pub tx_tag: String,
    /// For a redo: the undo run it re-applies.
    pub redo_of: Option<i64>,
    /// Where it stands.
    pub state: RunState,
    /// When it reached its state (µs since the epoch).
    pub finished_us: Option<i64>,
    /// The source transaction it wrote in, where the capture records transaction ids (SQL
    /// Server); recorded before its first write.
    pub source_tx: Option<i64>,
}

/// One change a run acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoItem {
    /// Position in the run's order of application.
    pub ordinal: i64,
    /// The archived change.
    pub change_id: i64,
    /// The statement applied: `insert`, `update` or `delete`.
    pub action: String,
    /// `applied` (guard held), `forced` (guard overridden) or `skipped` (conflict, left alone).
    pub outcome: String,
}

const RUN_COLUMNS: &str = "r.id, r.created_us, r.kind, r.mode, r.scope, s.incarnation, r.tx_tag, \
     r.redo_of, r.state, r.finished_us, r.source_tx FROM undo_runs r \
     JOIN sources s ON s.id = r.source_id";

fn run_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<UndoRun> {
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what}").into(),
        )
    };
    let kind: String = r.get(2)?;
    let state: String = r.get(8)?;
    Ok(UndoRun {
        id: r.get(0)?,
        created_us: r.get(1)?,
        kind: RunKind::parse(&kind).ok_or_else(|| bad(2, "run kind"))?,
        mode: r.get(3)?,
        scope: r.get(4)?,
        incarnation: r.get(5)?,
        tx_tag: r.get(6)?,
        redo_of: r.get(7)?,
        state: RunState::parse(&state).ok_or_else(|| bad(8, "run state"))?,
        finished_us: r.get(9)?,
        source_tx: r.get(10)?,
    })
}

impl Archive {
    /// A write transaction that takes the write lock at once (waiting for the reader's batches),
    /// so a read inside it can never be invalidated by another writer's commit.
    fn immediate(&self) -> rusqlite::Result<rusqlite::Transaction<'_>> {
        rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)
    }

    /// Records a new run in state `applying` and returns it (with its id and tag).
    pub fn begin_run(
        &self,
        kind: RunKind,
        mode: &str,
        scope: &str,
        incarnation: &str,
        redo_of: Option<i64>,
    ) -> Result<UndoRun, ReaderError> {
        let e = self.err("cannot record the undo run");
        let tx = self
            .immediate()
            .map_err(self.err("cannot record the undo run"))?;
        let run = (|| {
            let source_id: i64 = tx.query_row(
                "SELECT id FROM sources WHERE incarnation = ?1",
                [incarnation],
                |r| r.get(0),
            )?;
            let next: i64 =
                tx.query_row("SELECT coalesce(max(id), 0) + 1 FROM undo_runs", [], |r| {
                    r.get(0)
                })?;
            let tag = format!("{}:{next}", kind.word());
            tx.execute(
                "INSERT INTO undo_runs (id, created_us, kind, mode, scope, source_id, tx_tag, \
                 redo_of, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'applying')",
                params![
                    next,
                    now_micros(),
                    kind.word(),
                    mode,
                    scope,
                    source_id,
                    tag,
                    redo_of
                ],
            )?;
            super::ledger::record_run(&tx, "run", next)?;
            tx.query_row(
                &format!("SELECT {RUN_COLUMNS} WHERE r.id = ?1"),
                [next],
                run_of,
            )
        })()
        .map_err(e)?;
        tx.commit()
            .map_err(self.err("cannot record the undo run"))?;
        Ok(run)
    }

    /// Records what a run did to each change, in its order; written once, before the source
    /// transaction commits.
    pub fn record_items(&self, run: i64, items: &[UndoItem]) -> Result<(), ReaderError> {
        let tx = self
            .immediate()
            .map_err(self.err("cannot record the undo items"))?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO undo_items (run_id, ordinal, change_id, action, outcome) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(self.err("cannot record the undo items"))?;
            for i in items {
                stmt.execute(params![run, i.ordinal, i.change_id, i.action, i.outcome])
                    .map_err(self.err("cannot record an undo item"))?;
            }
        }
        super::ledger::record_run(&tx, "run", run)
            .map_err(self.err("cannot record the undo items in the ledger"))?;
        tx.commit()
            .map_err(self.err("cannot record the undo items"))
    }

    /// Moves a run out of `applying`: to `applied` (a redo also marks the run it re-applied
    /// `redone`) or to `abandoned`. Does nothing to a run already settled.
    pub fn settle_run(&self, run: i64, committed: bool) -> Result<(), ReaderError> {
        let tx = self
            .immediate()
            .map_err(self.err("cannot settle the undo run"))?;
        let state = if committed {
            RunState::Applied
        } else {
            RunState::Abandoned
        };
        let n = tx
            .execute(
                "UPDATE undo_runs SET state = ?2, finished_us = ?3 WHERE id = ?1 AND state = 'applying'",
                params![run, state.word(), now_micros()],
            )
            .map_err(self.err("cannot settle the undo run"))?;
        if n == 1 {
            super::ledger::record_run(&tx, "run", run)
                .map_err(self.err("cannot record the settled run in the ledger"))?;
        }
        if n == 1 && committed {
            let redone: Option<i64> = tx
                .query_row(
                    "UPDATE undo_runs SET state = 'redone', finished_us = ?2 WHERE state = 'applied' \
                     AND id = (SELECT redo_of FROM undo_runs WHERE id = ?1 AND kind = 'redo') \
                     RETURNING id",
                    params![run, now_micros()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.err("cannot mark the redone run"))?;
            if let Some(redone) = redone {
                super::ledger::record_run(&tx, "run", redone)
                    .map_err(self.err("cannot record the redone run in the ledger"))?;
            }
        }
        tx.commit().map_err(self.err("cannot settle the undo run"))
    }

    /// The journal's runs, newest first (only `state` when given).
    pub fn runs(&self, state: Option<RunState>) -> Result<Vec<UndoRun>, ReaderError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} WHERE ?1 IS NULL OR r.state = ?1 ORDER BY r.id DESC"
            ))
            .map_err(self.err("cannot read the undo journal"))?;
        let rows = stmt
            .query_map([state.map(RunState::word)], run_of)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.err("cannot read the undo journal"))?;
        Ok(rows)
    }

    /// One run, if it exists.
    pub fn run(&self, id: i64) -> Result<Option<UndoRun>, ReaderError> {
        self.conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} WHERE r.id = ?1"),
                [id],
                run_of,
            )
            .optional()
            .map_err(self.err("cannot read the undo journal"))
    }

    /// A run's items, in order.
    pub fn run_items(&self, run: i64) -> Result<Vec<UndoItem>, ReaderError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT ordinal, change_id, action, outcome FROM undo_items WHERE run_id = ?1 \
                 ORDER BY ordinal",
            )
            .map_err(self.err("cannot read the undo journal"))?;
        let rows = stmt
            .query_map([run], |r| {
                Ok(UndoItem {
                    ordinal: r.get(0)?,
                    change_id: r.get(1)?,
                    action: r.get(2)?,
                    outcome: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.err("cannot read the undo journal"))?;
        Ok(rows)
    }

    /// Records that run `run` writes in source transaction `tx`. Written once, while the run is
    /// `applying` and before its source transaction makes any write.
    pub fn link_run(&self, run: i64, tx: i64) -> Result<(), ReaderError> {
        let e = || self.err("cannot link the undo run to its source transaction");
        let t = self.immediate().map_err(e())?;
        let n = t
            .execute(
                "UPDATE undo_runs SET source_tx = ?2 WHERE id = ?1 AND state = 'applying' \
                 AND source_tx IS NULL",
                [run, tx],
            )
            .map_err(e())?;
        if n != 1 {
            return Err(ReaderError::BadRequest(format!(
                "undo run {run} cannot be linked to source transaction {tx}: it is not a pending \
                 run without a link (was it settled by another process?)"
            )));
        }
        super::ledger::record_run(&t, "run", run).map_err(e())?;
        t.commit().map_err(e())
    }

    /// Whether the archive holds a change of `incarnation` whose transaction is `tx` (a run's
    /// tag, or a source transaction id) stamped at or after `since_us` (µs since the epoch, the
    /// source's clock; [`window_start`] of the run), or stamped with no readable time.
    pub fn has_changes_in_tx(
        &self,
        incarnation: &str,
        tx: &Value,
        since_us: i64,
    ) -> Result<bool, ReaderError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM changes c JOIN sources s ON s.id = c.source_id \
                     WHERE s.incarnation = ?1 AND c.tx = ?2 AND (julianday(c.at) IS NULL \
                     OR julianday(c.at) >= ?3 / 86400000000.0 + {JULIAN_EPOCH}))"
                ),
                params![incarnation, Param(tx), since_us],
                |r| r.get(0),
            )
            .map_err(self.err("cannot read changes"))
    }
}

/// Journal consistency problems, for [`Archive::verify`].
pub(super) fn check(archive: &Archive) -> Result<Vec<String>, rusqlite::Error> {
    let conn = &archive.conn;
    let mut problems = Vec::new();
    let mut list =
        |sql: &str, describe: &dyn Fn(&rusqlite::Row<'_>) -> rusqlite::Result<String>| {
            let mut stmt = conn.prepare(sql)?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                problems.push(describe(r)?);
            }
            Ok::<(), rusqlite::Error>(())
        };
    list(
        "SELECT id, tx_tag FROM undo_runs WHERE tx_tag IS NOT kind || ':' || id",
        &|r| {
            Ok(format!(
                "undo journal: run {} carries the tag {:?}, not its own",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?
            ))
        },
    )?;
    list(
        "SELECT r.id FROM undo_runs r WHERE (r.kind = 'redo') IS NOT (r.redo_of IS NOT NULL) \
         OR (r.kind = 'redo' AND NOT EXISTS (SELECT 1 FROM undo_runs u WHERE u.id = r.redo_of \
         AND u.kind = 'undo' AND u.source_id = r.source_id))",
        &|r| {
            Ok(format!(
                "undo journal: run {} names no valid undo run to redo (or names one it must not)",
                r.get::<_, i64>(0)?
            ))
        },
    )?;
    list(
        "SELECT u.id FROM undo_runs u WHERE u.kind = 'undo' AND (u.state = 'redone') IS NOT \
         (EXISTS (SELECT 1 FROM undo_runs r WHERE r.redo_of = u.id AND r.state = 'applied'))",
        &|r| {
            Ok(format!(
                "undo journal: run {}'s state disagrees with the redo runs that name it",
                r.get::<_, i64>(0)?
            ))
        },
    )?;
    list(
        "SELECT i.run_id, i.change_id FROM undo_items i JOIN undo_runs r ON r.id = i.run_id \
         LEFT JOIN changes c ON c.id = i.change_id \
         WHERE c.id IS NULL OR c.source_id IS NOT r.source_id",
        &|r| {
            Ok(format!(
                "undo journal: run {} names change {}, which its source's archive does not hold",
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?
            ))
        },
    )?;
    list(
        "SELECT i.change_id, group_concat(r.id, ', ') FROM undo_items i \
         JOIN undo_runs r ON r.id = i.run_id \
         WHERE r.kind = 'undo' AND r.state = 'applied' AND i.outcome <> 'skipped' \
         GROUP BY i.change_id HAVING count(*) > 1",
        &|r| {
            Ok(format!(
                "undo journal: change {} is undone by more than one applied run ({})",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?
            ))
        },
    )?;
    list(
        "SELECT c.id, c.tx FROM changes c WHERE (c.tx LIKE 'undo:%' OR c.tx LIKE 'redo:%') \
         AND NOT EXISTS (SELECT 1 FROM undo_runs r WHERE r.tx_tag = c.tx \
         AND r.source_id = c.source_id AND r.state <> 'abandoned')",
        &|r| {
            Ok(format!(
                "undo journal: change {} is labelled {:?}, but the journal holds no such run that \
                 committed (a forged label, or a journal that lost a run)",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?
            ))
        },
    )?;
    Ok(problems)
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn the_exclusion_widens_a_run_by_the_clock_margin() {
        assert_eq!(
            NOT_UNDO_WRITES
                .matches(&CLOCK_MARGIN_US.to_string())
                .count(),
            2,
            "{NOT_UNDO_WRITES}"
        );
        assert!(NOT_UNDO_WRITES.contains(JULIAN_EPOCH));
        assert_eq!(window_start(CLOCK_MARGIN_US), 0);
    }
}
