//! Cuts: points of a source's change stream below which every transaction is complete in the
//! archive. Consumers (a replica, a rebuild as of a time, the stream) apply changes up to a cut,
//! never up to "the highest seq seen": on an engine that commits seqs out of order, a lower seq
//! may still commit after a higher one was archived.
//!
//! The reader records a cut after a pass that drained staging, from the source's own word
//! ([`crate::source::Source::cut`]): on SQLite the sequence's value in the snapshot of the last
//! read. Outside the hash chain: a cut is the reader's word about the source, not a change;
//! `verify` does not cover it (docs/archive.md).

use rusqlite::{params, OptionalExtension};

use super::Archive;
use crate::source::SourceInfo;
use crate::{now_micros, ReaderError};

/// A point of a source's stream below which every transaction is complete in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The source's seq at the cut.
    pub seq: i64,
    /// The archive change id it is placed at (every change of the source with a seq at or
    /// below `seq` has an id at or below it).
    pub change_id: i64,
    /// The source's UTC time of its newest change at or below the cut, if any.
    pub source_at: Option<String>,
    /// When the archive recorded it (µs since the epoch).
    pub archived_us: i64,
}

impl Archive {
    /// Records that every transaction of `source` up to `seq` is archived, unless the newest
    /// cut already says as much. Returns the cut now newest.
    pub fn record_cut(
        &mut self,
        source: &SourceInfo,
        seq: i64,
    ) -> Result<Option<Cut>, ReaderError> {
        if let Some(last) = self.cut(&source.incarnation, None)? {
            if last.seq >= seq {
                return Ok(Some(last));
            }
        }
        let path = self.path.clone();
        let e = |cause| ReaderError::archive(&path, "cannot record a cut", cause);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let source_id = super::append::source_id(&tx, &mut self.ids, source).map_err(e)?;
        let change_id: i64 = tx
            .query_row("SELECT coalesce(max(id), 0) FROM changes", [], |r| r.get(0))
            .map_err(e)?;
        let source_at: Option<String> = tx
            .query_row(
                "SELECT at FROM changes WHERE source_id = ?1 ORDER BY id DESC LIMIT 1",
                [source_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?
            .flatten();
        let now = now_micros();
        tx.execute(
            "INSERT INTO cuts (source_id, seq, change_id, source_at, archived_us) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![source_id, seq, change_id, source_at, now],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(Some(Cut {
            seq,
            change_id,
            source_at,
            archived_us: now,
        }))
    }

    /// The newest cut of `incarnation` at or below archive change `at_most` (any, when `None`):
    /// every transaction of the source up to it is complete in the archive.
    pub fn cut(&self, incarnation: &str, at_most: Option<i64>) -> Result<Option<Cut>, ReaderError> {
        self.conn
            .prepare_cached(
                "SELECT c.seq, c.change_id, c.source_at, c.archived_us FROM cuts c \
                 JOIN sources s ON s.id = c.source_id \
                 WHERE s.incarnation = ?1 AND c.change_id <= ?2 \
                 ORDER BY c.change_id DESC, c.id DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![incarnation, at_most.unwrap_or(i64::MAX)], |r| {
                    Ok(Cut {
                        seq: r.get(0)?,
                        change_id: r.get(1)?,
                        source_at: r.get(2)?,
                        archived_us: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(self.err("cannot read the cuts"))
    }

    /// The newest cut of `incarnation` recorded when every change archived up to it was made
    /// before `time` and the next one was not: the state of the source as of `time`. `None`
    /// when the archive holds no such cut.
    pub fn cut_as_of(&self, incarnation: &str, time: &str) -> Result<Option<Cut>, ReaderError> {
        let Some(id) = self.source_id(incarnation)? else {
            return Ok(None);
        };
        let first_later: Option<i64> = self
            .conn
            .query_row(
                "SELECT min(id) FROM changes WHERE +source_id = ?1 AND at > ?2",
                params![id, time],
                |r| r.get(0),
            )
            .map_err(self.err("cannot read changes"))?;
        match first_later {
            // Every change up to the newest is older than `time`: the newest cut.
            None => self.cut(incarnation, None),
            Some(first) => {
                // The changes between the newest cut below `first` and `first` are complete
                // transactions older than `time` only if a cut lies exactly there; else the
                // nearest cut below is the last exact state known.
                self.cut(incarnation, Some(first - 1))
            }
        }
    }

    /// The point of `incarnation`'s stream just after seq `seq`: every change with a seq at or
    /// below it, none above, as a [`Cut`] placed at the newest such change. Refused beyond the
    /// newest cut (transactions up to there are not known complete), inside a transaction (the
    /// point would hold part of it), and where changes around it were archived out of seq
    /// order (no prefix of the archive is that state; a time is then the way to name one).
    pub fn cut_at_seq(&self, incarnation: &str, seq: i64) -> Result<Cut, ReaderError> {
        let refuse = |m: String| Err(ReaderError::BadRequest(m));
        let Some(newest) = self.cut(incarnation, None)? else {
            return refuse(format!(
                "the archive holds no complete state of source {incarnation} yet (no cut is \
                 recorded): run `rowtrail read` first"
            ));
        };
        if seq > newest.seq {
            return refuse(format!(
                "seq {seq} is beyond the archive: the newest complete state of source \
                 {incarnation} it holds is seq {}",
                newest.seq
            ));
        }
        let Some(id) = self.source_id(incarnation)? else {
            return refuse(format!(
                "the archive holds no change of source {incarnation}"
            ));
        };
        type Around = (i64, rusqlite::types::Value, Option<String>);
        let around = |sql: &str| -> Result<Option<Around>, ReaderError> {
            self.conn
                .prepare_cached(sql)
                .and_then(|mut s| {
                    s.query_row(params![id, seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .optional()
                })
                .map_err(self.err("cannot read changes"))
        };
        let last = around(
            "SELECT id, tx, at FROM changes WHERE source_id = ?1 AND seq <= ?2 \
             ORDER BY seq DESC LIMIT 1",
        )?;
        let next = around(
            "SELECT id, tx, at FROM changes WHERE source_id = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT 1",
        )?;
        let null = rusqlite::types::Value::Null;
        if let (Some(l), Some(n)) = (&last, &next) {
            if l.1 != null && l.1 == n.1 {
                return refuse(format!(
                    "seq {seq} lies inside a transaction (its changes go on above it): name the \
                     state before the transaction (`before-tx:ID`) or a seq where one ends"
                ));
            }
        }
        let change_id = last.as_ref().map_or(0, |l| l.0);
        let later_below: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM changes WHERE source_id = ?1 AND seq > ?2 AND id < ?3 LIMIT 1",
                params![id, seq, change_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err("cannot read changes"))?;
        if later_below.is_some() {
            return refuse(format!(
                "the changes of source {incarnation} around seq {seq} were archived out of seq \
                 order, so no point of the archive is the state at seq {seq}: name a time instead"
            ));
        }
        Ok(Cut {
            seq,
            change_id,
            source_at: last.and_then(|l| l.2),
            archived_us: newest.archived_us,
        })
    }
}
