//! Comparing a replica with its live source, and repairing it.
//!
//! Each table of the source is read in a snapshot of its own (the source stays open for
//! writes), and compared row by row with the replica: rows missing from the replica, rows it
//! holds that the source does not, and rows whose values differ. The replica stands at a cut
//! and the source has moved on, so a row some change after the replica's position touched
//! (archived since, or still staged) is not a difference but a row *changing*: it is counted
//! and left out. Staged images are read after every snapshot and the archive after that, so an
//! image is seen in one or the other wherever it moved meanwhile.
//!
//! Repair writes the source's row (as read in its snapshot) over each difference, in one
//! replica transaction; the replica's position does not move.

use std::collections::{HashMap, HashSet};

use rowtrail_reader::archive::{Archive, BaselineRow, ChangeQuery};
use rowtrail_reader::source::Source;
use rowtrail_sql::key::encode_key;
use rowtrail_sql::{image, Table, Value};
use sha2::{Digest as _, Sha256};

use crate::replica::Replica;
use crate::StandbyError;

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
    let mut out = Vec::new();
    let mut snapshot_seqs = Vec::new();
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
        // The replica's rows: identity → (count, digest, row).
        let mut held: HashMap<Vec<u8>, (u64, [u8; 32], BaselineRow)> = HashMap::new();
        let mut replica_rows = 0u64;
        read_replica_rows(replica, &def, &mut |row| {
            replica_rows += 1;
            let id = identity(&def, &row.1);
            let d = digest(&row.1);
            held.entry(id)
                .and_modify(|e| e.0 += 1)
                .or_insert((1, d, row));
            Ok(())
        })?;
        let mut cmp = TableComparison {
            table: def.name.to_string(),
            source_rows: 0,
            replica_rows,
            missing: Vec::new(),
            extra: Vec::new(),
            different: Vec::new(),
            changing: 0,
        };
        let keyless = def.key().is_none();
        let pos = source.snapshot_table(&captured, 5_000, &mut |rows| {
            for (rowid, values) in rows {
                cmp.source_rows += 1;
                let id = identity(&def, values);
                match held.get_mut(&id) {
                    Some(e) if e.0 > 0 && (keyless || e.1 == digest(values)) => {
                        e.0 -= 1;
                    }
                    Some(e) if e.0 > 0 => {
                        e.0 -= 1;
                        cmp.different.push((*rowid, values.clone()));
                    }
                    _ => cmp.missing.push((*rowid, values.clone())),
                }
            }
            Ok(())
        })?;
        for (_, (n, _, row)) in held {
            for _ in 0..n {
                cmp.extra.push(row.clone());
            }
        }
        snapshot_seqs.push(pos.seq);
        out.push(cmp);
    }
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

/// Reads the replica's rows of `def` (rowid first for rowid tables).
fn read_replica_rows(
    replica: &Replica,
    def: &Table,
    each: &mut dyn FnMut(BaselineRow) -> Result<(), StandbyError>,
) -> Result<(), StandbyError> {
    let mut cols: Vec<String> = Vec::new();
    if def.rowid {
        cols.push("rowid".into());
    }
    cols.extend(def.columns.iter().map(|c| c.name.sqlite().to_string()));
    let sql = format!("SELECT {} FROM {}", cols.join(", "), def.name.name.sqlite());
    let conn = replica.connection();
    let e = |cause| StandbyError::Database {
        path: conn.path().unwrap_or("").to_string(),
        context: "cannot read the replica".into(),
        cause,
    };
    let mut stmt = conn.prepare(&sql).map_err(e)?;
    let mut q = stmt.query([]).map_err(e)?;
    let skip = usize::from(def.rowid);
    while let Some(r) = q.next().map_err(e)? {
        let rowid = if def.rowid {
            Some(r.get(0).map_err(e)?)
        } else {
            None
        };
        let mut values = Vec::with_capacity(def.columns.len());
        for i in 0..def.columns.len() {
            values.push(rowtrail_reader::sqlite::value_of(
                r.get_ref(i + skip).map_err(e)?,
            ));
        }
        each((rowid, values))?;
    }
    Ok(())
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
