//! Published positions: how far a change stream has acknowledged the archive's changes.
//!
//! The stream publisher (the watcher's `publisher` job) sends changes in archive order and
//! records here, after the stream's server acknowledged them, the id of the last change it
//! holds. A position only moves forward. The archive stays the source of truth: the stream is
//! a copy that can be rebuilt from it, and a position is derived state outside the hash chain.

use rusqlite::OptionalExtension;

use super::Archive;
use crate::ReaderError;

/// How far one stream is behind the archive.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamLag {
    /// Archived changes after the published position.
    pub changes: u64,
    /// When the oldest of them was archived (µs since the epoch), if there is one.
    pub oldest_archived_us: Option<i64>,
    /// The archive's last change id (0 when it is empty).
    pub archive_tip: i64,
}

impl Archive {
    /// The published position of `stream` (the id of the last change it acknowledged), if it
    /// has one.
    pub fn published_position(&self, stream: &str) -> Result<Option<i64>, ReaderError> {
        self.conn
            .prepare_cached("SELECT published_id FROM stream_positions WHERE stream = ?1")
            .and_then(|mut s| s.query_row([stream], |r| r.get(0)).optional())
            .map_err(self.err("cannot read a published position"))
    }

    /// Records that `stream` (publishing `subjects`) holds every change up to `id`. Never moves a
    /// position back: a lower `id` leaves it as it is. Committed (and synced) on return.
    pub fn record_published(
        &self,
        stream: &str,
        subjects: &str,
        id: i64,
    ) -> Result<(), ReaderError> {
        self.conn
            .prepare_cached(
                "INSERT INTO stream_positions (stream, subjects, published_id, published_us) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (stream) DO UPDATE SET \
                   subjects = excluded.subjects, \
                   published_us = excluded.published_us, \
                   published_id = max(published_id, excluded.published_id)",
            )
            .and_then(|mut s| {
                s.execute(rusqlite::params![stream, subjects, id, crate::now_micros()])
            })
            .map(drop)
            .map_err(self.err("cannot record a published position"))
    }

    /// How far a stream at `position` is behind the archive.
    pub fn lag_after(&self, position: i64) -> Result<StreamLag, ReaderError> {
        let e = || self.err("cannot measure the stream's lag");
        let (changes, tip): (i64, Option<i64>) = self
            .conn
            .prepare_cached("SELECT count(*), max(id) FROM changes WHERE id > ?1")
            .and_then(|mut s| s.query_row([position], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(e())?;
        let oldest: Option<i64> = self
            .conn
            .prepare_cached("SELECT archived_us FROM changes WHERE id > ?1 ORDER BY id LIMIT 1")
            .and_then(|mut s| s.query_row([position], |r| r.get(0)).optional())
            .map_err(e())?;
        let tip = match tip {
            Some(t) => t,
            None => self
                .conn
                .prepare_cached("SELECT coalesce(max(id), 0) FROM changes")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(e())?,
        };
        Ok(StreamLag {
            changes: changes as u64,
            oldest_archived_us: oldest,
            archive_tip: tip,
        })
    }

    /// The archive id of the change `seq` of `incarnation`, if the archive holds it.
    pub fn change_id_of(&self, incarnation: &str, seq: i64) -> Result<Option<i64>, ReaderError> {
        self.conn
            .prepare_cached(
                "SELECT c.id FROM changes c JOIN sources s ON s.id = c.source_id \
                 WHERE s.incarnation = ?1 AND c.seq = ?2",
            )
            .and_then(|mut s| {
                s.query_row(rusqlite::params![incarnation, seq], |r| r.get(0))
                    .optional()
            })
            .map_err(self.err("cannot find a change by its sequence number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::ArchiveOptions;

    #[test]
    fn a_position_only_moves_forward_and_lag_counts_what_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archive::open(&dir.path().join("a.db"), &ArchiveOptions::default()).unwrap();
        assert_eq!(a.published_position("s").unwrap(), None);
        a.record_published("s", "x.y.>", 5).unwrap();
        a.record_published("s", "x.y.>", 3).unwrap();
        assert_eq!(a.published_position("s").unwrap(), Some(5));
        a.record_published("s", "x.y.>", 9).unwrap();
        assert_eq!(a.published_position("s").unwrap(), Some(9));
        assert_eq!(a.published_position("other").unwrap(), None);
        let lag = a.lag_after(0).unwrap();
        assert_eq!(lag, StreamLag::default(), "an empty archive has no lag");
        assert_eq!(a.change_id_of("nope", 1).unwrap(), None);
    }
}
