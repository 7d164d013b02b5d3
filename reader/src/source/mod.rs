//! Captured databases, seen through one trait so the mover serves every engine alike, and the
//! [`SourceSpec`] that opens one.

mod ranges;
mod spec;

pub use ranges::{KeyRange, RangeSum, TableRanges};
pub use spec::{HealthProbe, SourceOpener, SourceSpec};

/// What a heartbeat learns about a source: that it answers, and how much waits in staging.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// The incarnation installed now (a change means capture was reinstalled).
    pub incarnation: String,
    /// Images waiting in staging.
    pub staged: u64,
    /// Age in seconds of the oldest staged image (by its server time): the changes at risk if
    /// the source were lost now. `None` when staging is empty.
    pub oldest_age_secs: Option<f64>,
    /// SQLite: a `rowtrail_context` row is committed. A writer is meant to insert it inside its
    /// transaction and delete it before committing; committed (inserted outside a transaction,
    /// say), it labels every later change by anyone with its login, host and transaction.
    pub context_committed: bool,
}

use rowtrail_sql::staging::Op;
use rowtrail_sql::{Ident, Table, Value};

/// Which incarnation of which source this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The installation's incarnation id (a UUID stored on the source).
    pub incarnation: String,
    /// `sqlite` or `mssql`.
    pub engine: &'static str,
    /// Where it is: a file path, or a server and database (never with a password).
    pub location: String,
}

/// One table under capture, as the source's registry records it.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedTable {
    /// The table's definition when capture was installed.
    pub table: Table,
    /// Its staging table.
    pub staging: Ident,
}

/// The point of the change stream a table snapshot reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPosition {
    /// Every change of the table with a seq at or below it is in the snapshot; none above.
    pub seq: i64,
    /// The source's UTC time when the snapshot was taken (the archive's text form).
    pub taken_at: String,
    /// How many rows it read.
    pub rows: u64,
}

/// Who, when, where and in which transaction: the metadata of one image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta {
    /// Transaction id, or NULL when the engine cannot tell.
    pub tx: Option<Value>,
    /// Statement id, or NULL when the engine cannot tell.
    pub stmt: Option<Value>,
    /// Server UTC time of the statement, as the engine gave it.
    pub time: Option<Value>,
    /// Original login.
    pub login: Option<String>,
    /// Client host (client-supplied).
    pub host: Option<String>,
    /// Client application (client-supplied).
    pub app: Option<String>,
    /// Client network address.
    pub client_ip: Option<String>,
}

/// Before- or after-image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// The row as it was.
    Before,
    /// The row as it became.
    After,
}

/// One staged row image.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedImage {
    /// Index of the table in [`Source::tables`].
    pub table: usize,
    /// Global sequence number (the staging key).
    pub seq: i64,
    /// The kind of change.
    pub op: Op,
    /// Before or after.
    pub image: ImageKind,
    /// Who, when, where.
    pub meta: Meta,
    /// SQLite rowid of the source row, for rowid tables.
    pub rowid: Option<i64>,
    /// Column values, in the table's column order.
    pub values: Vec<Value>,
}

/// The key of one staged image: which table, which seq. Deletes name exactly these.
pub type StagedKey = (usize, i64);

/// A captured database the reader drains.
pub trait Source: Send {
    /// Incarnation, engine, location.
    fn info(&self) -> &SourceInfo;
    /// The captured tables, in registry order.
    fn tables(&self) -> &[CapturedTable];
    /// Re-reads the registry (tables may have been added or upgraded).
    fn refresh(&mut self) -> Result<(), crate::ReaderError>;
    /// Up to `limit` staged images in sequence order across all staging tables, never splitting
    /// an update's before/after pair (so it may return `limit + 1`).
    ///
    /// With `above`, only images with a greater seq: the ones at or below it were read by the
    /// batch before, whose delete may not have committed yet. Only the mover's delete-behind
    /// pass sets it, and only on a source that gave it a [`StagingDeleter`]. A reinstall seen
    /// by this read starts the new incarnation from its first image whatever `above` says. A
    /// source without a deleter may ignore `above`: reading from the first staged image is
    /// always safe, as an image read twice is archived once.
    fn read_batch(
        &mut self,
        limit: usize,
        above: Option<i64>,
    ) -> Result<Vec<StagedImage>, crate::ReaderError>;
    /// Deletes exactly these staged images, in one transaction.
    fn delete_staged(&mut self, keys: &[StagedKey]) -> Result<(), crate::ReaderError>;
    /// A second handle that deletes archived batches on its own connection while this one
    /// reads on, or `None` to read, archive and delete in turn.
    ///
    /// A source may give one only if no image can commit later with a seq below one already
    /// read: then a read above the last batch's highest seq cannot miss anything, whether
    /// that batch's delete has committed or not. SQLite qualifies (one writer at a time, seqs
    /// taken under the write lock); SQL Server does not (a transaction holding a lower seq
    /// may commit after a higher one was read), so it keeps the default.
    fn delete_behind(&mut self) -> Result<Option<Box<dyn StagingDeleter>>, crate::ReaderError> {
        Ok(None)
    }
    /// A cheap value that changes when other connections commit (SQLite `data_version`,
    /// SQL Server the sequence's current value).
    fn probe(&mut self) -> Result<i64, crate::ReaderError>;
    /// Brings capture in line with the source's schema where it changed since the last look
    /// (SQLite: columns added or renamed, the table renamed, dropped or rebuilt, tables created
    /// after the install where configured), archiving first what was staged under the old
    /// capture, and records each change in the archive's schema log; returns what it recorded.
    /// The mover calls it after every pass that drained staging. By default nothing: SQL
    /// Server drift is reported by `rowtrail sql check`.
    fn follow_schema(
        &mut self,
        _archive: &mut crate::archive::Archive,
    ) -> Result<Vec<crate::archive::SchemaEvent>, crate::ReaderError> {
        Ok(Vec::new())
    }
    /// How many images are staged now (for status and uninstall checks).
    fn staged_count(&mut self) -> Result<u64, crate::ReaderError>;
    /// The cut the last [`Source::read_batch`] reached, if it reached one: a seq at or below
    /// which every transaction's images are in that batch or earlier ones, and above which none
    /// committed before it. `None` when the read stopped at its limit, or where the engine cannot
    /// tell (it commits out of seq order and has no cut of its own yet).
    fn cut(&self) -> Option<i64> {
        None
    }
    /// Reads `table` for a baseline in one consistent snapshot, handing `each` its rows in key
    /// order, `page` at a time, and says which point of the change stream the snapshot
    /// reflects. Engines without an exact snapshot method refuse.
    fn snapshot_table(
        &mut self,
        table: &CapturedTable,
        _page: usize,
        _each: &mut dyn FnMut(&[crate::archive::BaselineRow]) -> Result<(), crate::ReaderError>,
    ) -> Result<SnapshotPosition, crate::ReaderError> {
        Err(crate::ReaderError::BadRequest(format!(
            "baselines are taken on SQLite sources only for now: {} cannot be snapshot at an \
             exact point of its change stream yet",
            table.table.name
        )))
    }
    /// Opens one consistent snapshot of `table` and hands `visit` its rows by key range (a
    /// comparison's checksums, bisected down to rows where they differ), and says which point
    /// of the change stream the snapshot reflects (its `rows`: the rows handed out one by one).
    /// Engines without an exact snapshot method refuse.
    fn table_ranges(
        &mut self,
        table: &CapturedTable,
        _visit: &mut dyn FnMut(&mut dyn TableRanges) -> Result<(), crate::ReaderError>,
    ) -> Result<SnapshotPosition, crate::ReaderError> {
        Err(crate::ReaderError::BadRequest(format!(
            "comparisons read SQLite sources only for now: {} cannot be read at an exact point \
             of its change stream yet",
            table.table.name
        )))
    }
    /// The id of the archive this incarnation's changes are being archived into, as the source
    /// recorded it (`None` before a reader took any, or where the engine keeps no such record).
    fn archive_home(&mut self) -> Result<Option<String>, crate::ReaderError> {
        Ok(None)
    }
    /// Records `archive` as the archive this incarnation's changes go to (written once, when it
    /// changes; a source that keeps no record ignores it).
    fn set_archive_home(&mut self, _archive: &str) -> Result<(), crate::ReaderError> {
        Ok(())
    }
}

/// Deletes archived batches from a source's staging on a connection of its own, so the next
/// batch is read and archived meanwhile (see [`Source::delete_behind`]).
pub trait StagingDeleter: Send {
    /// Deletes exactly these staged images, in one transaction, provided the source's
    /// incarnation is still `incarnation` (the one they were read under); `tables` is the
    /// registry the keys index, as the batch was read.
    fn delete(
        &mut self,
        incarnation: &str,
        tables: &[CapturedTable],
        keys: &[StagedKey],
    ) -> Result<(), crate::ReaderError>;
}

/// Merges per-table streams of staged images (each in sequence order) into one batch of at most
/// `limit` images in sequence order, never splitting an update's before/after pair (so the batch
/// may hold `limit + 1`). Every engine's `read_batch` ends here.
pub fn merge_by_seq<E, I>(mut streams: Vec<I>, limit: usize) -> Result<Vec<StagedImage>, E>
where
    I: Iterator<Item = Result<StagedImage, E>>,
{
    let mut heads = Vec::with_capacity(streams.len());
    for s in streams.iter_mut() {
        heads.push(s.next().transpose()?);
    }
    let mut out = Vec::with_capacity(limit.min(1 << 16) + 1);
    loop {
        let pick = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h: &StagedImage| (h.seq, i)))
            .min();
        let Some((_, i)) = pick else { break };
        let pair_open = matches!(
            out.last(),
            Some(StagedImage {
                op: Op::Update,
                image: ImageKind::Before,
                ..
            })
        );
        if out.len() >= limit && !pair_open {
            break;
        }
        let img = heads[i].take().expect("picked a present head");
        heads[i] = streams[i].next().transpose()?;
        out.push(img);
    }
    Ok(out)
}

/// The sequence number, op and image kind of one staged row, checked against the staging
/// contract. Codes may carry SQL Server's `char(1)` padding.
pub fn staged_kind(
    staging: &Ident,
    seq: Option<i64>,
    op: Option<&str>,
    image: Option<&str>,
) -> Result<(i64, Op, ImageKind), crate::ReaderError> {
    let bad = |seq: i64, reason: &str| crate::ReaderError::BadStaging {
        staging: staging.to_string(),
        seq,
        reason: reason.into(),
    };
    let seq = seq.ok_or_else(|| bad(0, "its sequence number is not an integer"))?;
    let op = op
        .and_then(|c| Op::from_code(c.trim()))
        .ok_or_else(|| bad(seq, "unknown op code"))?;
    let image = match image.map(str::trim) {
        Some("B") => ImageKind::Before,
        Some("A") => ImageKind::After,
        _ => return Err(bad(seq, "unknown image code")),
    };
    Ok((seq, op, image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_codes_follow_the_contract() {
        let s = Ident::new("rowtrail_s_t").unwrap();
        let ok = staged_kind(&s, Some(7), Some("U "), Some("B")).unwrap();
        assert_eq!(
            ok,
            (7, Op::Update, ImageKind::Before),
            "char(1) padding is accepted"
        );
        for (seq, op, image, says) in [
            (None, Some("I"), Some("A"), "sequence number"),
            (Some(7), Some("X"), Some("A"), "unknown op code"),
            (Some(7), Some("I"), Some("Z"), "unknown image code"),
            (Some(7), None, Some("A"), "unknown op code"),
        ] {
            let e = staged_kind(&s, seq, op, image).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("rowtrail_s_t"), "{e}");
        }
    }
}
