//! The SQL Server source: reads staged images in sequence order, deletes exactly the keys it
//! copied, probes the sequence, and checks the incarnation.
//!
//! * **Reading.** One `SELECT TOP (@P1) … WITH (READPAST) ORDER BY [rowtrail_seq]` per staging
//!   table (clustered on the sequence), merged by sequence; with several staging tables their
//!   seqs are read first and each table's rows only up to the batch's last seq
//!   ([`batch_bound`]). `READPAST` skips rows that writers have not committed yet instead of
//!   waiting for them: they are read by a later pass (a trigger writes both images of an update
//!   in its statement, so a pair is visible whole or not at all).
//!   Money and CLR types are read through exact conversions ([`super::convert::select_expr`]).
//! * **Deleting.** In one transaction, `DELETE … WHERE [rowtrail_seq] IN (@P1, …, @Pn)` per
//!   staging table, in chunks of [`DELETE_CHUNK`] parameters: the keys travel as parameters,
//!   never as SQL text, and never as a range (`seq <= max` would delete rows of transactions
//!   that committed after the read with lower numbers). The transaction first checks that the
//!   incarnation is still the one the batch was read under.
//! * **Retrying.** Transient errors (deadlock, lost connection, timeouts) are retried with a
//!   capped backoff that resets on success; a lost connection is opened again.
//! * **Baselines.** Each delete's transaction first takes the baseline's application lock,
//!   shared: while a baseline needs every staged image kept ([`super::baseline`]), deletes wait.
//! * **Cuts.** Each read is preceded by a barrier mark; a drained read of whole transactions
//!   after an earlier mark settled reaches a consistent cut ([`super::cut`]).
//! * **Quarantine.** A row that cannot be decoded even as bytes is kept in staging and the rest
//!   is read ([`super::quarantine`]).
//! * **Probing.** The sequence's current value changes whenever a trigger writes. The probe asks
//!   the server at most once per [`AdaptiveProbe`] interval, which shrinks while the value moves
//!   and grows while it is idle; in between it answers with the last value.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rowtrail_sql::mssql::objects;
use rowtrail_sql::staging;
use rowtrail_sql::{Ident, Value};
use tiberius::{Row, ToSql};

use super::catalog::{self, shared};
use super::client::{with_retry, Backoff, MssqlClient};
use super::convert::value_of;
use super::cut::CutTracker;
use super::probe::AdaptiveProbe;
use super::quarantine;
use super::queries;
use super::settings::Settings;
use super::versions::Layout;
use crate::source::{CapturedTable, Health, Meta, Source, SourceInfo, StagedImage, StagedKey};
use crate::ReaderError;

/// Keys per parameterised DELETE (SQL Server takes at most 2,100 parameters per request).
pub const DELETE_CHUNK: usize = 500;

/// Tries per request for transient errors.
const ATTEMPTS: u32 = 5;

/// A SQL Server database under capture.
pub struct MssqlSource {
    client: MssqlClient,
    info: SourceInfo,
    /// The registry's tables, then every older definition still recorded (see
    /// [`super::versions`]): images index this list.
    tables: Vec<CapturedTable>,
    /// Per registry table: how its staging table is read and its images labelled.
    layouts: Vec<Layout>,
    /// Per registry table: the SELECT over its staging table.
    selects: Vec<String>,
    /// Per table: the same SELECT with every text read as its UTF-16 bytes, for a batch the
    /// driver cannot decode (see [`super::convert::raw_select_expr`]).
    raw_selects: Vec<String>,
    backoff: Backoff,
    probe: AdaptiveProbe,
    /// The consistent cut across reads ([`super::cut`]).
    cuts: CutTracker,
    /// Whether a failure of the cut's bookkeeping was logged.
    cut_warned: bool,
    /// Staged rows left out because they cannot be decoded (staging table, seq), each logged once.
    quarantined: HashSet<(String, i64)>,
}

fn retry_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(2))
}

impl MssqlSource {
    /// Connects and opens a database that has capture installed.
    pub fn open(settings: &Settings) -> Result<Self, ReaderError> {
        let mut client = MssqlClient::connect(settings)?;
        let location = client.location().to_string();
        let incarnation = catalog::incarnation(&mut client)?.ok_or(ReaderError::NotInstalled {
            location: location.clone(),
        })?;
        let mut s = Self {
            client,
            info: SourceInfo {
                incarnation,
                engine: "mssql",
                location,
            },
            tables: Vec::new(),
            layouts: Vec::new(),
            selects: Vec::new(),
            raw_selects: Vec::new(),
            backoff: retry_backoff(),
            probe: AdaptiveProbe::default(),
            cuts: CutTracker::default(),
            cut_warned: false,
            quarantined: HashSet::new(),
        };
        s.refresh()?;
        Ok(s)
    }

    /// A heartbeat on a fresh connection: the installation answers, and how much waits.
    pub fn health(settings: &Settings) -> Result<Health, ReaderError> {
        let mut c = MssqlClient::connect(settings)?;
        let location = c.location().to_string();
        let incarnation =
            catalog::incarnation(&mut c)?.ok_or(ReaderError::NotInstalled { location })?;
        let mut staged = 0u64;
        let mut oldest: Option<f64> = None;
        for t in catalog::registry(&mut c)? {
            let sql = queries::backlog(&t.staging);
            let rows = c.query("cannot measure the backlog", &sql, &[])?;
            if let Some(r) = rows.first() {
                staged += r.get::<i64, _>(0).unwrap_or(0) as u64;
                if let Some(us) = r.get::<i64, _>(1) {
                    let age = us as f64 / 1e6;
                    oldest = Some(oldest.map_or(age, |o: f64| o.max(age)));
                }
            }
        }
        Ok(Health {
            incarnation,
            staged,
            oldest_age_secs: oldest,
            // SQL Server's capture takes who and where from the session, not a context row.
            context_committed: false,
        })
    }

    fn retry<T>(
        &mut self,
        op: impl FnMut(&mut MssqlClient) -> Result<T, ReaderError>,
    ) -> Result<T, ReaderError> {
        with_retry(&mut self.client, &mut self.backoff, ATTEMPTS, op)
    }

    /// The oldest `limit` images of table `i`, every text read as its UTF-16 bytes: valid
    /// text becomes text again, and a cell that is not valid UTF-16 (an `nvarchar` holding an
    /// unpaired surrogate) is archived as exactly its bytes, with a warning naming the staging
    /// table, column and seq (never the value). One such row never stops the reader.
    fn read_raw(
        &mut self,
        i: usize,
        limit: i64,
        bound: Option<i64>,
    ) -> Result<Vec<StagedImage>, ReaderError> {
        let rows = match bound {
            None => {
                let sql = self.raw_selects[i].clone();
                self.retry(|c| c.query("cannot read staging", &sql, &[&limit]))?
            }
            Some(b) => {
                let sql = queries::bounded(&self.raw_selects[i]);
                self.retry(|c| c.query("cannot read staging", &sql, &[&limit, &b]))?
            }
        };
        let captured = &self.layouts[i].read;
        let kinds: Vec<bool> = rowtrail_sql::mssql::Captured::new(&captured.table)?
            .staging_types
            .iter()
            .map(|t| super::convert::text_kind(t).is_some())
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut img = image_of(r, i, captured, &self.info.location)?;
            for (col, v) in img.values.iter_mut().enumerate() {
                if !kinds.get(col).copied().unwrap_or(false) {
                    continue;
                }
                let (value, undecodable) =
                    super::convert::text_from_utf16(std::mem::replace(v, Value::Null));
                if undecodable {
                    tracing::warn!(source = %self.info.location, staging = %captured.staging,
                        column = %captured.table.columns[col].name, seq = img.seq,
                        "a staged text is not valid UTF-16; archived as its exact bytes");
                }
                *v = value;
            }
            out.push(self.layouts[i].label(img));
        }
        Ok(out)
    }

    /// The oldest `limit` images of table `i` read around the rows that cannot be decoded at
    /// all ([`super::quarantine`]): those stay in staging, each logged once (staging table,
    /// seq and why, never a value), and the rest is read.
    fn read_around(&mut self, i: usize, limit: i64) -> Result<Vec<StagedImage>, ReaderError> {
        let location = self.info.location.clone();
        let layout = self.layouts[i].clone();
        let kinds: Vec<bool> = rowtrail_sql::mssql::Captured::new(&layout.read.table)?
            .staging_types
            .iter()
            .map(|t| super::convert::text_kind(t).is_some())
            .collect();
        let (images, failed) =
            quarantine::read_table(&mut self.client, &layout.read, limit, &mut |row| {
                let mut img = image_of(row, i, &layout.read, &location)?;
                for (col, v) in img.values.iter_mut().enumerate() {
                    if kinds.get(col).copied().unwrap_or(false) {
                        *v = super::convert::text_from_utf16(std::mem::replace(v, Value::Null)).0;
                    }
                }
                Ok(layout.label(img))
            })?;
        for (seq, why) in failed {
            if self
                .quarantined
                .insert((layout.read.staging.to_string(), seq))
            {
                tracing::error!(source = %location, staging = %layout.read.staging, seq,
                    reason = %quarantine::reason(&why),
                    "a staged row cannot be decoded: it stays in staging (quarantined) and the \
                     reader goes on; the consistent cut stays below it until it is resolved \
                     (see docs/sqlserver.md, Quarantine)");
            }
        }
        Ok(images)
    }

    /// Rereads the registry when the installation was replaced since the last look.
    fn check_incarnation(&mut self) -> Result<(), ReaderError> {
        let found = self.retry(catalog::incarnation)?;
        match found {
            None => Err(ReaderError::NotInstalled {
                location: self.info.location.clone(),
            }),
            Some(now) if now == self.info.incarnation => Ok(()),
            Some(now) => {
                if now.contains("/fork-") {
                    tracing::error!(source = %self.info.location, old = %self.info.incarnation, new = %now,
                        "the source database was restored (its recovery fork changed): a new incarnation starts; \
                         changes archived under the old one after the restore point no longer exist on the source");
                } else {
                    tracing::warn!(source = %self.info.location, old = %self.info.incarnation, new = %now,
                        "capture was reinstalled: a new incarnation starts");
                }
                self.info.incarnation = now;
                self.cuts = CutTracker::default();
                self.quarantined.clear();
                self.refresh()
            }
        }
    }
}

pub use super::queries::{staging_delete, staging_select};

fn opt_text(v: Value) -> Option<String> {
    match v {
        Value::Text(t) => Some(String::from_utf8_lossy(&t).into_owned()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn nullable(v: Value) -> Option<Value> {
    (v != Value::Null).then_some(v)
}

/// One staging row to an image of table number `table`.
pub fn image_of(
    row: Row,
    table: usize,
    captured: &CapturedTable,
    location: &str,
) -> Result<StagedImage, ReaderError> {
    let variants = super::convert::variant_columns(&captured.table);
    let width = staging::METADATA_COLUMNS.len() + captured.table.columns.len() + variants.len();
    let names: Vec<String> = row.columns().iter().map(|c| c.name().to_string()).collect();
    if names.len() != width {
        return Err(ReaderError::BadStaging {
            staging: captured.staging.to_string(),
            seq: 0,
            reason: format!(
                "it returned {} columns where {width} were expected",
                names.len()
            ),
        });
    }
    let mut values = Vec::with_capacity(width);
    for (i, cell) in row.into_iter().enumerate() {
        values.push(value_of(cell).map_err(|reason| ReaderError::Conversion {
            location: location.to_string(),
            staging: captured.staging.to_string(),
            column: names[i].clone(),
            reason,
        })?);
    }
    let mut it = values.into_iter();
    let mut next = || it.next().unwrap_or(Value::Null);
    let seq = match next() {
        Value::Integer(s) => Some(s),
        _ => None,
    };
    let (seq, op, image) = crate::source::staged_kind(
        &captured.staging,
        seq,
        opt_text(next()).as_deref(),
        opt_text(next()).as_deref(),
    )?;
    let meta = Meta {
        tx: nullable(next()),
        stmt: nullable(next()),
        time: nullable(next()),
        login: opt_text(next()),
        host: opt_text(next()),
        app: opt_text(next()),
        client_ip: opt_text(next()),
    };
    let mut values: Vec<Value> = (0..captured.table.columns.len()).map(|_| next()).collect();
    for i in variants {
        let value = std::mem::replace(&mut values[i], Value::Null);
        values[i] = super::convert::with_base_type(value, next()).map_err(|reason| {
            ReaderError::Conversion {
                location: location.to_string(),
                staging: captured.staging.to_string(),
                column: captured.table.columns[i].name.to_string(),
                reason,
            }
        })?;
    }
    Ok(StagedImage {
        table,
        seq,
        op,
        image,
        meta,
        rowid: None,
        values,
    })
}

/// The last seq a batch of at most `limit` images can hold, given each staging table's oldest
/// seqs (ascending): the `limit`-th lowest of them all, plus one (an update's after-image takes
/// its before-image's seq plus one, and the merge never splits the pair). `None` when every seq
/// seen fits in the batch.
pub fn batch_bound(seqs: &[Vec<i64>], limit: usize) -> Option<i64> {
    let mut all: Vec<i64> = seqs.iter().flatten().copied().collect();
    if all.len() <= limit || limit == 0 {
        return None;
    }
    all.sort_unstable();
    Some(all[limit - 1].saturating_add(1))
}

/// Merges per-table runs (each in sequence order) into one batch of at most `limit` images,
/// never splitting an update's before/after pair (so it may hold `limit + 1`).
pub fn merge(runs: Vec<Vec<StagedImage>>, limit: usize) -> Vec<StagedImage> {
    let streams = runs
        .into_iter()
        .map(|run| run.into_iter().map(Ok::<_, std::convert::Infallible>))
        .collect();
    match crate::source::merge_by_seq(streams, limit) {
        Ok(batch) => batch,
        Err(never) => match never {},
    }
}

impl Source for MssqlSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn tables(&self) -> &[CapturedTable] {
        &self.tables
    }

    fn refresh(&mut self) -> Result<(), ReaderError> {
        let registry = self.retry(catalog::registry)?;
        let recorded = self.retry(catalog::versions)?;
        let (tables, layouts) = super::versions::layouts(&registry, &recorded);
        self.selects = layouts
            .iter()
            .map(|l| staging_select(&l.read))
            .collect::<Result<_, _>>()?;
        self.raw_selects = layouts
            .iter()
            .map(|l| queries::staging_select_raw(&l.read))
            .collect::<Result<_, _>>()?;
        self.tables = tables;
        self.layouts = layouts;
        Ok(())
    }

    fn read_batch(
        &mut self,
        limit: usize,
        above: Option<i64>,
    ) -> Result<Vec<StagedImage>, ReaderError> {
        // Seqs may commit out of order here, so reading above a seq could miss an image. This
        // source gives no deleter, so the mover never asks; reading from the first staged
        // image anyway is safe (an image read twice is archived once).
        let _ = above;
        self.check_incarnation()?;
        // The cut's bookkeeping never stops the reader: without it, this read reaches no cut.
        let before = match self.cuts.before_read(&mut self.client) {
            Ok(b) => b,
            Err(e) => {
                if !std::mem::replace(&mut self.cut_warned, true) {
                    tracing::warn!(source = %self.info.location, error = %e,
                        "cannot take the consistent cut's mark; reads establish no cut while \
                         this lasts (said once)");
                }
                super::cut::BeforeRead::default()
            }
        };
        let per_table = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        // With several staging tables, their seqs first: only rows up to the batch's last seq
        // are fetched whole.
        let (bound, lowest) = if self.layouts.len() > 1 {
            let mut seqs = Vec::with_capacity(self.layouts.len());
            for l in &self.layouts {
                let sql = quarantine::seqs_select(&l.read.staging);
                let rows = with_retry(&mut self.client, &mut self.backoff, ATTEMPTS, |c| {
                    c.query("cannot read staging", &sql, &[&per_table])
                })?;
                seqs.push(
                    rows.iter()
                        .filter_map(|r| r.get::<i64, _>(0))
                        .collect::<Vec<i64>>(),
                );
            }
            let lowest: Vec<Option<i64>> = seqs.iter().map(|s| s.first().copied()).collect();
            (batch_bound(&seqs, limit), lowest)
        } else {
            (None, Vec::new())
        };
        let mut runs = Vec::with_capacity(self.layouts.len());
        for i in 0..self.layouts.len() {
            let location = self.info.location.clone();
            if let (Some(b), Some(low)) = (bound, lowest.get(i)) {
                // Nothing of this table's within the batch (or nothing staged at the look).
                if low.is_none_or(|l| l > b) {
                    runs.push(Vec::new());
                    continue;
                }
            }
            let (sql, bounded) = match bound {
                Some(b) => (queries::bounded(&self.selects[i]), Some(b)),
                None => (self.selects[i].clone(), None),
            };
            let read = self.retry(|c| match bounded {
                Some(b) => c.query("cannot read staging", &sql, &[&per_table, &b]),
                None => c.query("cannot read staging", &sql, &[&per_table]),
            });
            let first = match read {
                Ok(rows) => rows
                    .into_iter()
                    .map(|r| image_of(r, i, &self.layouts[i].read, &location))
                    .map(|img| img.map(|img| self.layouts[i].label(img)))
                    .collect::<Result<Vec<_>, _>>(),
                Err(e) => Err(e),
            };
            let run = match first {
                Ok(run) => run,
                Err(e) if e.is_undecodable() => {
                    tracing::warn!(source = %location, staging = %self.layouts[i].read.staging,
                        "staged text the driver cannot decode; reading its bytes");
                    match self.read_raw(i, per_table, bound) {
                        Ok(run) => run,
                        Err(e) if quarantine::is_undecodable_row(&e) => {
                            self.read_around(i, per_table)?
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) if quarantine::is_undecodable_row(&e) => self.read_around(i, per_table)?,
                Err(e) => return Err(e),
            };
            runs.push(run);
        }
        let batch = merge(runs, limit);
        let stagings: Vec<&Ident> = self.layouts.iter().map(|l| &l.read.staging).collect();
        if let Err(e) = self.cuts.after_read(
            &mut self.client,
            &before,
            &batch,
            // A bound means more was staged than one batch holds.
            batch.len() < limit && bound.is_none(),
            &stagings,
        ) {
            if !std::mem::replace(&mut self.cut_warned, true) {
                tracing::warn!(source = %self.info.location, error = %e,
                    "cannot confirm the consistent cut; reads establish none while this lasts \
                     (said once)");
            }
        }
        Ok(batch)
    }

    fn delete_staged(&mut self, keys: &[StagedKey]) -> Result<(), ReaderError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut per_table: Vec<Vec<i64>> = vec![Vec::new(); self.tables.len()];
        for &(t, seq) in keys {
            per_table
                .get_mut(t)
                .ok_or_else(|| ReaderError::BadStaging {
                    staging: format!("table #{t}"),
                    seq,
                    reason: "the key names a table the registry does not hold".into(),
                })?
                .push(seq);
        }
        let expected = self.info.incarnation.clone();
        let location = self.info.location.clone();
        let stagings: Vec<Ident> = self.tables.iter().map(|t| t.staging.clone()).collect();
        self.retry(|c| {
            let mut tx = c.transaction()?;
            // A baseline being taken needs every staged image kept: wait for it.
            tx.client().batch(
                "cannot wait for a baseline",
                &queries::staging_delete_gate(),
            )?;
            let rows = tx.client().query(
                "cannot read the incarnation",
                &queries::incarnation_locked(),
                &[],
            )?;
            let found = rows
                .first()
                .and_then(|r| {
                    catalog::effective_incarnation(
                        r.get::<&str, _>(0)?,
                        r.get::<&str, _>(1),
                        r.get::<&str, _>(2),
                    )
                })
                .unwrap_or_default();
            if found != expected {
                return Err(ReaderError::IncarnationChanged {
                    location: location.clone(),
                    expected: expected.clone(),
                    found,
                });
            }
            for (t, seqs) in per_table.iter().enumerate() {
                for chunk in seqs.chunks(DELETE_CHUNK) {
                    let sql = staging_delete(&stagings[t], chunk.len());
                    let params: Vec<&dyn ToSql> = chunk.iter().map(|s| s as &dyn ToSql).collect();
                    tx.client()
                        .execute("cannot delete from staging", &sql, &params)?;
                }
            }
            tx.commit()
        })
    }

    fn probe(&mut self) -> Result<i64, ReaderError> {
        if let Some(v) = self.probe.cached(Instant::now()) {
            return Ok(v);
        }
        let sql = queries::PROBE;
        let name = shared(objects::SEQUENCE);
        let rows = self.retry(|c| c.query("probe failed", sql, &[&name]))?;
        let value = rows.first().and_then(|r| r.get::<i64, _>(0)).unwrap_or(0);
        Ok(self.probe.observe(Instant::now(), value))
    }

    fn cut(&self) -> Option<i64> {
        self.cuts.reached()
    }

    fn snapshot_table(
        &mut self,
        table: &CapturedTable,
        page: usize,
        each: &mut dyn FnMut(&[crate::archive::BaselineRow]) -> Result<(), ReaderError>,
    ) -> Result<crate::source::SnapshotPosition, ReaderError> {
        super::baseline::snapshot(&mut self.client, table, page, each)
    }

    fn staged_count(&mut self) -> Result<u64, ReaderError> {
        let mut total = 0u64;
        let staging: Vec<Ident> = self
            .layouts
            .iter()
            .map(|l| l.read.staging.clone())
            .collect();
        for t in staging {
            let sql = queries::count(&t);
            let rows = self.retry(|c| c.query("cannot count staged images", &sql, &[]))?;
            total += rows.first().and_then(|r| r.get::<i64, _>(0)).unwrap_or(0) as u64;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ImageKind;
    use rowtrail_sql::staging::Op;
    use rowtrail_sql::{Column, Table, TableName};

    fn img(seq: i64, op: Op, image: ImageKind) -> StagedImage {
        StagedImage {
            table: 0,
            seq,
            op,
            image,
            meta: Meta::default(),
            rowid: None,
            values: vec![],
        }
    }

    #[test]
    fn merge_orders_by_seq_and_never_splits_a_pair() {
        let a = vec![
            img(2, Op::Insert, ImageKind::After),
            img(6, Op::Update, ImageKind::Before),
            img(7, Op::Update, ImageKind::After),
        ];
        let b = vec![
            img(4, Op::Delete, ImageKind::Before),
            img(10, Op::Insert, ImageKind::After),
        ];
        let seqs = |v: Vec<StagedImage>| v.iter().map(|i| i.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(merge(vec![a.clone(), b.clone()], 10)),
            [2, 4, 6, 7, 10]
        );
        assert_eq!(
            seqs(merge(vec![a.clone(), b.clone()], 3)),
            [2, 4, 6, 7],
            "the pair stays whole"
        );
        assert_eq!(seqs(merge(vec![a, b], 2)), [2, 4]);
    }

    #[test]
    fn a_batch_over_several_tables_fetches_rows_only_up_to_its_last_seq() {
        let seqs = vec![vec![2, 4, 10, 12], vec![6, 7, 20], vec![]];
        assert_eq!(
            batch_bound(&seqs, 3),
            Some(7),
            "2, 4, 6: then 6's after-image 7"
        );
        assert_eq!(batch_bound(&seqs, 4), Some(8), "2, 4, 6, 7");
        assert_eq!(batch_bound(&seqs, 7), None, "everything fits");
        assert_eq!(batch_bound(&[], 3), None);
        let sql =
            queries::bounded("SELECT TOP (@P1) a FROM t WITH (READPAST) ORDER BY [rowtrail_seq]");
        assert_eq!(
            sql,
            "SELECT TOP (@P1) a FROM t WITH (READPAST) WHERE [rowtrail_seq] <= @P2 ORDER BY [rowtrail_seq]"
        );
    }

    #[test]
    fn deletes_bind_every_key_as_a_parameter() {
        let s = Ident::new("rowtrail_s_x]y_0123456789").unwrap();
        let sql = staging_delete(&s, 3);
        assert_eq!(sql, "DELETE FROM [rowtrail].[rowtrail_s_x]]y_0123456789] WHERE [rowtrail_seq] IN (@P1, @P2, @P3)");
        assert!(!staging_delete(&s, DELETE_CHUNK).contains(&format!("@P{}", DELETE_CHUNK + 1)));
        const { assert!(DELETE_CHUNK < 2100) };
    }

    #[test]
    fn the_staging_select_reads_metadata_then_exact_columns() {
        let mut t = Table {
            name: TableName {
                schema: Some(Ident::new("Sales").unwrap()),
                name: Ident::new("Order").unwrap(),
            },
            columns: vec![
                Column::new(Ident::new("Id").unwrap(), "int", false),
                Column::new(Ident::new("Total").unwrap(), "money", true),
                Column::new(Ident::new("Ver").unwrap(), "rowversion", true),
            ],
            primary_key: vec![0],
            unique_keys: vec![],
            rowid: false,
        };
        t.columns[2].rowversion = true;
        let staging = rowtrail_sql::staging::derived_name(&t.name, "s");
        let sql = staging_select(&CapturedTable { table: t, staging }).unwrap();
        assert!(
            sql.starts_with(
                "SELECT TOP (@P1) [rowtrail_seq], [rowtrail_op], [rowtrail_image], [rowtrail_tx]"
            ),
            "{sql}"
        );
        assert!(sql.contains("[Id], CONVERT(decimal(19,4), [Total]) AS [Total], [Ver] FROM [rowtrail].[rowtrail_s_Order_"), "{sql}");
        assert!(
            sql.ends_with("WITH (READPAST) ORDER BY [rowtrail_seq]"),
            "{sql}"
        );
    }
}
