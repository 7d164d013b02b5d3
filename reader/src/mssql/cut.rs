//! The consistent cut of a SQL Server source: a seq at or below which every transaction is in
//! the archive, established by the reader (SQL Server has no such value of its own for a
//! sequence; `MIN_ACTIVE_ROWVERSION()` is the same idea for `rowversion`).
//!
//! Each read of staging is preceded by a barrier mark ([`super::barrier`]): the sequence's value
//! `V`, then the transactions open in the database. A read **reaches** a cut when:
//!
//! 1. **Settled before it.** An earlier read's mark (the *candidate*) has none of its
//!    transactions open any more when this read starts: every seq at or below `C = V + 1` of
//!    that mark is committed, or never will be.
//! 2. **It drained staging.** It came back short, so it holds every image visible to it.
//! 3. **It saw whole transactions only.** Every image it read carries a transaction id that was
//!    not open at this read's own mark, and a seq at or below that mark's `V + 1`: its
//!    transaction took its seqs before the mark and was over by the mark's listing, so it
//!    committed before the read began, and the read saw all of it. (An image of a transaction
//!    that was open at the mark may belong to one committing during the read, which a read that
//!    skips locked rows can see half of.) Images without a transaction id (SQL Server 2012 and
//!    2014 targets without `VIEW SERVER STATE`) never pass.
//! 4. **Nothing settled was skipped.** The images at or below `C` it read are as many as a read
//!    that waits on locks counts in staging (`READCOMMITTEDLOCK`): a commit still finishing, or
//!    an image kept in staging because it cannot be decoded ([`super::quarantine`]), holds the
//!    cut back.
//!
//! Then every transaction with a seq at or below `C` is archived (1, 2, 4), and every archived
//! transaction is whole (3 for this read; a transaction an earlier read saw part of had
//! committed before this read began, which saw the rest), so the archive up to the newest change
//! holds whole transactions, as the replica and rebuilds need.
//!
//! Without the permission the marks need ([`barrier::NEEDS`]) no cut is established, and that
//! is said once in the log.

use super::barrier::{self, Mark};
use super::client::MssqlClient;
use super::queries;
use crate::source::StagedImage;
use crate::ReaderError;
use rowtrail_sql::{Ident, Value};

/// What a read may establish, decided before it runs.
#[derive(Debug, Clone, Default)]
pub struct BeforeRead {
    /// The seq settled before the read (a candidate mark waited out), if any.
    pub settled: Option<i64>,
    /// The mark taken just before the read.
    pub mark: Option<Mark>,
}

/// The cut kept across reads of one incarnation.
#[derive(Debug, Default)]
pub struct CutTracker {
    candidate: Option<Mark>,
    reached: Option<i64>,
    denied: bool,
    warned: bool,
}

impl CutTracker {
    /// The cut the last read reached, if it reached one.
    pub fn reached(&self) -> Option<i64> {
        self.reached
    }

    /// Before a read: checks whether the candidate mark is settled, and takes this read's mark
    /// (which becomes the candidate when the old one is settled or there is none).
    pub fn before_read(&mut self, c: &mut MssqlClient) -> Result<BeforeRead, ReaderError> {
        self.reached = None;
        if self.denied {
            return Ok(BeforeRead::default());
        }
        let settled = match &self.candidate {
            Some(m) if m.open.len() <= barrier::MOST_WATCHED * 4 => {
                (barrier::still_open(c, &m.open)? == 0).then(|| m.settles())
            }
            // Too many to watch: a fresh candidate is taken below.
            Some(_) => {
                self.candidate = None;
                None
            }
            None => None,
        };
        let mark = barrier::mark(c)?;
        let Some(mark) = mark else {
            self.denied = true;
            if !self.warned {
                self.warned = true;
                tracing::warn!(source = %c.location(), "no consistent cut can be established: {}", barrier::NEEDS);
            }
            return Ok(BeforeRead::default());
        };
        if settled.is_some() || self.candidate.is_none() {
            self.candidate = Some(mark.clone());
        }
        Ok(BeforeRead {
            settled,
            mark: Some(mark),
        })
    }

    /// After a read of `images` (`drained`: it came back short): records the cut it reached,
    /// if it reached one (see the module's documentation).
    pub fn after_read(
        &mut self,
        c: &mut MssqlClient,
        before: &BeforeRead,
        images: &[StagedImage],
        drained: bool,
        stagings: &[&Ident],
    ) -> Result<(), ReaderError> {
        let Some((bound, read_below)) = candidate_cut(before, images, drained) else {
            return Ok(());
        };
        let Some(sql) = queries::settled_count(stagings) else {
            return Ok(());
        };
        let rows = c.query("cannot count settled images", &sql, &[&bound])?;
        let staged = rows.first().and_then(|r| r.get::<i64, _>(0)).unwrap_or(0) as u64;
        if staged == read_below {
            self.reached = Some(bound);
        } else {
            tracing::debug!(source = %c.location(), bound, staged, read_below,
                "images at or below the settled seq were not all read; no cut this pass");
        }
        Ok(())
    }
}

/// The cut a read would reach, before the lock-waiting count confirms it: the settled seq and
/// how many of the read's images lie at or below it. `None` when the read cannot reach one
/// (conditions 1–3 of the module's documentation).
pub fn candidate_cut(
    before: &BeforeRead,
    images: &[StagedImage],
    drained: bool,
) -> Option<(i64, u64)> {
    let bound = before.settled?;
    let mark = before.mark.as_ref()?;
    if !drained {
        return None;
    }
    let whole = images.iter().all(|img| match &img.meta.tx {
        Some(Value::Integer(tx)) => !mark.open.contains(tx) && img.seq <= mark.settles(),
        _ => false,
    });
    if !whole {
        return None;
    }
    let below = images.iter().filter(|i| i.seq <= bound).count() as u64;
    Some((bound, below))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{ImageKind, Meta};
    use rowtrail_sql::staging::Op;

    fn img(seq: i64, tx: Option<i64>) -> StagedImage {
        StagedImage {
            table: 0,
            seq,
            op: Op::Insert,
            image: ImageKind::After,
            meta: Meta {
                tx: tx.map(Value::Integer),
                ..Meta::default()
            },
            rowid: None,
            values: vec![],
        }
    }

    fn before(settled: Option<i64>, value: i64, open: &[i64]) -> BeforeRead {
        BeforeRead {
            settled,
            mark: Some(Mark {
                value,
                open: open.to_vec(),
            }),
        }
    }

    #[test]
    fn a_drained_read_of_whole_transactions_reaches_the_settled_seq() {
        let b = before(Some(11), 20, &[900]);
        let images = [img(4, Some(1)), img(12, Some(2)), img(20, Some(3))];
        assert_eq!(candidate_cut(&b, &images, true), Some((11, 1)));
    }

    #[test]
    fn nothing_settled_or_not_drained_reaches_no_cut() {
        let images = [img(4, Some(1))];
        assert_eq!(candidate_cut(&before(None, 20, &[]), &images, true), None);
        assert_eq!(
            candidate_cut(&before(Some(11), 20, &[]), &images, false),
            None,
            "a full batch may have left images staged"
        );
        assert_eq!(
            candidate_cut(&BeforeRead::default(), &images, true),
            None,
            "without the permission there is no mark"
        );
    }

    #[test]
    fn an_image_of_a_transaction_open_at_the_mark_holds_the_cut_back() {
        // Transaction 7 was open when the read began: it may have committed during the read,
        // which then saw only part of it.
        let b = before(Some(11), 20, &[7]);
        let images = [img(4, Some(1)), img(14, Some(7))];
        assert_eq!(candidate_cut(&b, &images, true), None);
    }

    #[test]
    fn an_image_above_the_mark_or_without_a_transaction_holds_the_cut_back() {
        let b = before(Some(11), 20, &[]);
        // Seq 22 was taken after the mark: its transaction may be committing during the read.
        assert_eq!(candidate_cut(&b, &[img(22, Some(5))], true), None);
        // The after-image of the pair whose before-image took the mark's value is still fine.
        assert_eq!(candidate_cut(&b, &[img(21, Some(5))], true), Some((11, 0)));
        // No transaction id (a SQL Server 2012 target without VIEW SERVER STATE).
        assert_eq!(candidate_cut(&b, &[img(4, None)], true), None);
    }

    #[test]
    fn an_empty_drained_read_reaches_the_settled_seq() {
        assert_eq!(
            candidate_cut(&before(Some(11), 20, &[3]), &[], true),
            Some((11, 0))
        );
    }
}
