//! Comparing a replica with its live source, and repairing it.
//!
//! Each table of the source is read in a snapshot of its own (the source stays open for
//! writes), and compared with the replica by key range: both sides checksum a range inside
//! SQLite ([`TableRanges::sum`]); equal ranges are done with, a differing range is cut into
//! [`FANOUT`] parts by key and each part checksummed again, down to ranges of at most
//! [`LEAF_ROWS`] rows, which are read row by row and matched: rows missing from the replica,
//! rows it holds that the source does not, and rows whose values differ. Two equal tables cost
//! one checksum each and no row read. The replica stands at a cut and the source has moved on,
//! so a row some change after the replica's position touched (archived since, or still
//! staged) is not a difference but a row *changing*: it is counted and left out. Staged images
//! are read after every snapshot and the archive after that, so an image is seen in one or the
//! other wherever it moved meanwhile.
//!
//! Repair writes the source's row (as read in its snapshot) over each difference, in one
//! replica transaction; the replica's position does not move.

use std::collections::{HashMap, HashSet};

use rowtrail_reader::archive::{Archive, BaselineRow, ChangeQuery};
use rowtrail_reader::source::{KeyRange, RangeSum, Source, TableRanges};
use rowtrail_reader::sqlite::SqliteRanges;
use rowtrail_reader::ReaderError;
use rowtrail_sql::key::encode_key;
use rowtrail_sql::{image, Table, Value};
use sha2::{Digest as _, Sha256};

use crate::replica::Replica;
use crate::StandbyError;

/// A differing range holding more rows than this (on either side) is cut into parts.
pub const LEAF_ROWS: u64 = 2_000;

/// How many parts a differing range is cut into.
pub const FANOUT: u64 = 16;

/// One table's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct TableComparison {
    /// The table.
    pub table: String,
    /// Rows the source holds.
    pub source_rows: u64,
    /// Rows the replica holds.
    pub replica_rows: u64,
    /// Rows the source holds and the replica lacks (the source's rows).
    pub missing: Vec<BaselineRow>,
    /// Rows the replica holds and the source lacks (the replica's rows).
    pub extra: Vec<BaselineRow>,
    /// Rows both hold with other values (the source's rows).
    pub different: Vec<BaselineRow>,
    /// Rows left out because a change after the replica's position touches them.
    pub changing: u64,
    /// Rows read one by one, both sides together (only those of ranges whose checksums
    /// differ: 0 for equal tables).
    pub rows_read: u64,
    /// Key ranges checksummed, both sides together.
    pub ranges_summed: u64,
}

impl TableComparison {
    /// Whether the table differs.
    pub fn differs(&self) -> bool {
        !(self.missing.is_empty() && self.extra.is_empty() && self.different.is_empty())
    }
}

/// A whole comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Per table, in the replica's order.
    pub tables: Vec<TableComparison>,
}

impl Comparison {
    /// Whether any table differs.
    pub fn differs(&self) -> bool {
        self.tables.iter().any(TableComparison::differs)
    }
}

/// The identity of a row in a comparison: its key's encoding, or, for a table without a key,
/// the encoding of all its values (such rows are compared as a multiset).
fn identity(t: &Table, values: &[Value]) -> Vec<u8> {
    match t.key() {
        Some(k) => {
            let key: Vec<Value> = k.iter().map(|&i| values[i].clone()).collect();
            encode_key(&key)
        }
        None => encode_key(values),
    }
}

fn digest(values: &[Value]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(image::encode(values));
    h.finalize().into()
}

/// Compares `replica` with `source` (the live source it copies), table by table.
pub fn compare(
    replica: &Replica,
    source: &mut dyn Source,
    archive: &Archive,
) -> Result<Comparison, StandbyError> {
    source.refresh()?;
    if source.info().incarnation != replica.incarnation() {
        return Err(StandbyError::Refused(format!(
            "{} is capture incarnation {}, the replica copies {}: compare a replica with the \
             source it was built from",
            source.info().location,
            source.info().incarnation,
            replica.incarnation()
        )));
    }
    let path = std::path::PathBuf::from(replica.connection().path().unwrap_or(""));
    // One snapshot of the replica for the whole comparison (the watcher may apply meanwhile).
    let snapshot = replica
        .connection()
        .unchecked_transaction()
        .map_err(StandbyError::db(&path, "cannot start reading the replica"))?;
    let mut out = Vec::new();
    for rt in replica.tables() {
        let def = rt.definition.clone();
        let Some(captured) = source
            .tables()
            .iter()
            .find(|c| c.table.name == def.name)
            .cloned()
        else {
            return Err(StandbyError::Refused(format!(
                "table {} is not captured on {} any more: the replica cannot be compared with it",
                def.name,
                source.info().location
            )));
        };
        let mut cmp = TableComparison {
            table: def.name.to_string(),
            source_rows: 0,
            replica_rows: 0,
            missing: Vec::new(),
            extra: Vec::new(),
            different: Vec::new(),
            changing: 0,
            rows_read: 0,
            ranges_summed: 0,
        };
        let mut held = SqliteRanges::of_copy(&snapshot, rt.form(), &path)?;
        source.table_ranges(&captured, &mut |src| {
            diff_table(&def, src, &mut held, &mut cmp)
        })?;
        out.push(cmp);
    }
    drop(snapshot);
    // Rows changing: touched by an image staged now (with a seq at or below the snapshot's)…
    let mut changing: HashMap<String, HashSet<Vec<u8>>> = HashMap::new();
    let mut above = None;
    loop {
        let images = source.read_batch(10_000, above)?;
        let n = images.len();
        for i in &images {
            let t = &source.tables()[i.table].table;
            changing
                .entry(t.name.to_string())
                .or_default()
                .insert(identity(t, &i.values));
        }
        above = images.iter().map(|i| i.seq).max().or(above);
        if n < 10_000 {
            break;
        }
    }
    // …or by an archived change after the replica's position.
    let q = ChangeQuery {
        incarnation: Some(replica.incarnation().to_string()),
        seqs: Some((replica.position().seq + 1, i64::MAX)),
        ..ChangeQuery::default()
    };
    for c in archive.stream(&q)? {
        let c = c?;
        let set = changing.entry(c.table.name.to_string()).or_default();
        for v in [&c.before, &c.after].into_iter().flatten() {
            set.insert(identity(&c.table, v));
        }
    }
    for (cmp, rt) in out.iter_mut().zip(replica.tables()) {
        let Some(set) = changing.get(&cmp.table) else {
            continue;
        };
        let def = &rt.definition;
        let before = cmp.missing.len() + cmp.extra.len() + cmp.different.len();
        for list in [&mut cmp.missing, &mut cmp.extra, &mut cmp.different] {
            list.retain(|(_, v)| !set.contains(&identity(def, v)));
        }
        let after = cmp.missing.len() + cmp.extra.len() + cmp.different.len();
        cmp.changing = (before - after) as u64;
    }
    Ok(Comparison { tables: out })
}

/// The wrapping sum of `parts`' checksums and their row count: what their parent range must
/// hold when the parts cut it cleanly.
fn total(parts: &[RangeSum]) -> RangeSum {
    let mut hash = 0u128;
    let mut rows = 0;
    for p in parts {
        hash = hash.wrapping_add(u128::from_le_bytes(p.hash));
        rows += p.rows;
    }
    RangeSum {
        rows,
        hash: hash.to_le_bytes(),
    }
}

/// Compares one table by key range: checksums of both sides, differing ranges cut into parts
/// (by the keys of the side holding more rows) until small enough to read row by row.
fn diff_table(
    def: &Table,
    src: &mut dyn TableRanges,
    rep: &mut dyn TableRanges,
    cmp: &mut TableComparison,
) -> Result<(), ReaderError> {
    let whole = KeyRange::all();
    let (s, r) = (src.sum(&whole)?, rep.sum(&whole)?);
    cmp.ranges_summed += 2;
    cmp.source_rows = s.rows;
    cmp.replica_rows = r.rows;
    // Depth first, lowest keys first: differences come out in key order.
    let mut todo = vec![(whole, s, r)];
    while let Some((range, s, r)) = todo.pop() {
        if s == r {
            continue;
        }
        let larger = s.rows.max(r.rows);
        let mut parts = Vec::new();
        if larger > LEAF_ROWS {
            let every = larger.div_ceil(FANOUT);
            let mut bounds = if s.rows >= r.rows {
                src.split(&range, every)?
            } else {
                rep.split(&range, every)?
            };
            bounds.dedup();
            if range.upto.is_some() && bounds.last() == range.upto.as_ref() {
                bounds.pop();
            }
            let mut after = range.after.clone();
            for b in bounds.into_iter().map(Some).chain([range.upto.clone()]) {
                let part = KeyRange {
                    after: after.clone(),
                    upto: b.clone(),
                };
                let (ps, pr) = (src.sum(&part)?, rep.sum(&part)?);
                parts.push((part, ps, pr));
                after = b;
            }
            cmp.ranges_summed += 2 * parts.len() as u64;
            let sums_s: Vec<RangeSum> = parts.iter().map(|p| p.1).collect();
            let sums_r: Vec<RangeSum> = parts.iter().map(|p| p.2).collect();
            // Parts that do not add up to their range (bounds that do not cut it cleanly), or
            // that do not make it smaller (rows equal in every key column): read it whole.
            let clean = total(&sums_s) == s && total(&sums_r) == r;
            let smaller = parts.iter().all(|p| p.1.rows.max(p.2.rows) < larger);
            if !(clean && smaller) {
                parts.clear();
            }
        }
        if parts.is_empty() {
            let (a, b) = (src.rows(&range)?, rep.rows(&range)?);
            cmp.rows_read += (a.len() + b.len()) as u64;
            match_rows(def, a, b, cmp);
            continue;
        }
        todo.extend(parts.into_iter().rev());
    }
    Ok(())
}

/// Matches the rows of one range: the source's `theirs` against the replica's `ours`.
fn match_rows(
    def: &Table,
    theirs: Vec<BaselineRow>,
    ours: Vec<BaselineRow>,
    cmp: &mut TableComparison,
) {
    let keyless = def.key().is_none();
    // The replica's rows: identity → (count, digest, row).
    let mut held: HashMap<Vec<u8>, (u64, [u8; 32], BaselineRow)> = HashMap::new();
    for row in ours {
        let id = identity(def, &row.1);
        let d = digest(&row.1);
        held.entry(id)
            .and_modify(|e| e.0 += 1)
            .or_insert((1, d, row));
    }
    for (rowid, values) in theirs {
        let id = identity(def, &values);
        match held.get_mut(&id) {
            Some(e) if e.0 > 0 && (keyless || e.1 == digest(&values)) => {
                e.0 -= 1;
            }
            Some(e) if e.0 > 0 => {
                e.0 -= 1;
                cmp.different.push((rowid, values));
            }
            _ => cmp.missing.push((rowid, values)),
        }
    }
    let mut extra: Vec<BaselineRow> = Vec::new();
    for (_, (n, _, row)) in held {
        for _ in 0..n {
            extra.push(row.clone());
        }
    }
    extra.sort_by_cached_key(|r| identity(def, &r.1));
    cmp.extra.extend(extra);
}

/// Makes the replica's differing rows equal the source's, as `comparison` found them, in one
/// replica transaction. Returns how many rows were written or removed.
pub fn repair(replica: &mut Replica, comparison: &Comparison) -> Result<u64, StandbyError> {
    replica.repair_rows(comparison)
}

impl Replica {
    fn repair_rows(&mut self, comparison: &Comparison) -> Result<u64, StandbyError> {
        let defs: Vec<std::sync::Arc<Table>> =
            self.tables().iter().map(|t| t.definition.clone()).collect();
        let path = self.connection().path().unwrap_or("").to_string();
        let e = |cause| StandbyError::Database {
            path: path.clone(),
            context: "cannot repair the replica".into(),
            cause,
        };
        let conn = self.connection_mut();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let mut n = 0u64;
        for (cmp, def) in comparison.tables.iter().zip(&defs) {
            let table = def.name.name.sqlite().to_string();
            let (match_cols, by_all): (Vec<usize>, bool) = match def.key() {
                Some(k) => (k.to_vec(), false),
                None => ((0..def.columns.len()).collect(), true),
            };
            let cond: Vec<String> = match_cols
                .iter()
                .enumerate()
                .map(|(j, &i)| format!("{} IS ?{}", def.columns[i].name.sqlite(), j + 1))
                .collect();
            let delete = format!(
                "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {} LIMIT 1)",
                cond.join(" AND ")
            );
            let delete_keyed = format!("DELETE FROM {table} WHERE {}", cond.join(" AND "));
            let insert = crate::replica::insert_sql(def);
            let key_of =
                |v: &[Value]| -> Vec<Value> { match_cols.iter().map(|&i| v[i].clone()).collect() };
            let remove =
                |tx: &rusqlite::Transaction<'_>, v: &[Value]| -> Result<(), StandbyError> {
                    let k = key_of(v);
                    let params =
                        rusqlite::params_from_iter(k.iter().map(rowtrail_reader::sqlite::Param));
                    if by_all {
                        tx.execute(&delete, params).map_err(e)?;
                    } else {
                        tx.execute(&delete_keyed, params).map_err(e)?;
                    }
                    Ok(())
                };
            let put =
                |tx: &rusqlite::Transaction<'_>, row: &BaselineRow| -> Result<(), StandbyError> {
                    // A row without a key takes a fresh rowid (its source rowid may be another's here).
                    let rowid = match row.0 {
                        Some(r) if !by_all => Value::Integer(r),
                        _ => Value::Null,
                    };
                    let mut bind: Vec<&Value> = Vec::new();
                    if def.rowid {
                        bind.push(&rowid);
                    }
                    bind.extend(row.1.iter());
                    tx.execute(
                        &insert,
                        rusqlite::params_from_iter(
                            bind.into_iter().map(rowtrail_reader::sqlite::Param),
                        ),
                    )
                    .map_err(e)?;
                    Ok(())
                };
            for row in &cmp.extra {
                remove(&tx, &row.1)?;
                n += 1;
            }
            for row in &cmp.different {
                remove(&tx, &row.1)?;
                put(&tx, row)?;
                n += 1;
            }
            for row in &cmp.missing {
                if !by_all && def.rowid {
                    // A row of the same rowid but another key would block the insert.
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE rowid = ?1"),
                        [row.0.unwrap_or(i64::MIN)],
                    )
                    .map_err(e)?;
                }
                put(&tx, row)?;
                n += 1;
            }
        }
        tx.commit().map_err(e)?;
        Ok(n)
    }
}
