//! Appending changes: one transaction per batch, idempotent on (incarnation, seq), chained.

use std::collections::HashMap;

use rowtrail_sql::key::encode_key;
use rowtrail_sql::staging::Op;
use rowtrail_sql::{image, Value};
use rusqlite::{params, OptionalExtension, Transaction};

use super::chain::{self, ChainFields};
use super::Archive;
use crate::source::{CapturedTable, Meta, SourceInfo};
use crate::sqlite::Param;
use crate::{now_micros, ReaderError};

/// One row-level change, ready for the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChange {
    /// Index of the table in the source's captured tables.
    pub table: usize,
    /// The sequence number of the change's first image.
    pub seq: i64,
    /// What happened.
    pub op: Op,
    /// Who, when, where.
    pub meta: Meta,
    /// SQLite rowid of the row, for rowid tables.
    pub rowid: Option<i64>,
    /// The row before (update, delete, key change).
    pub before: Option<Vec<Value>>,
    /// The row after (insert, update, key change).
    pub after: Option<Vec<Value>>,
}

/// What one append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Changes newly archived.
    pub inserted: u64,
    /// Changes that were already archived (a batch copied again after a crash).
    pub duplicates: u64,
}

/// Ids of sources, tables and table versions already seen by this connection.
#[derive(Default)]
pub(super) struct IdCache {
    sources: HashMap<String, i64>,
    versions: HashMap<(i64, String, String, String), (i64, i64)>,
}

fn text(v: &Option<String>) -> Value {
    v.as_deref().map_or(Value::Null, Value::text)
}

/// A metadata value as the archive stores it: integers, reals and blobs natively, anything
/// else as UTF-8 text. The chain hashes this stored form, so verification can recompute it
/// (and [`Param`] binds it as it is).
fn stored(v: &Option<Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(v @ (Value::Integer(_) | Value::Real(_) | Value::Blob(_))) => v.clone(),
        Some(Value::Text(t)) => Value::text(&String::from_utf8_lossy(t)),
        Some(other) => Value::text(&other.to_string()),
    }
}

fn meta_values(meta: &Meta, rowid: Option<i64>) -> [Value; 8] {
    [
        stored(&meta.tx),
        stored(&meta.stmt),
        stored(&meta.time),
        text(&meta.login),
        text(&meta.host),
        text(&meta.app),
        text(&meta.client_ip),
        rowid.map_or(Value::Null, Value::Integer),
    ]
}

/// The key that finds a row's history: primary key values, else the rowid, else the whole row.
pub(crate) fn row_key(
    table: &rowtrail_sql::Table,
    values: &[Value],
    rowid: Option<i64>,
) -> Vec<u8> {
    match (table.key(), rowid) {
        (Some(key), _) => encode_key(&key.iter().map(|&i| values[i].clone()).collect::<Vec<_>>()),
        (None, Some(r)) => encode_key(&[Value::Integer(r)]),
        (None, None) => encode_key(values),
    }
}

impl Archive {
    /// Archives `changes` of `source` in one durable transaction, in the order given.
    pub fn append(
        &mut self,
        source: &SourceInfo,
        tables: &[CapturedTable],
        changes: &[NewChange],
    ) -> Result<AppendStats, ReaderError> {
        let result = self.append_batch(source, tables, changes);
        if result.is_err() {
            // Ids learnt inside a rolled-back transaction may not exist.
            self.ids = IdCache::default();
        }
        result
    }

    fn append_batch(
        &mut self,
        source: &SourceInfo,
        tables: &[CapturedTable],
        changes: &[NewChange],
    ) -> Result<AppendStats, ReaderError> {
        let path = self.path.clone();
        let path = &path;
        let e = |context: &'static str| move |cause| ReaderError::archive(path, context, cause);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e("cannot start the archive transaction"))?;
        let source_id =
            source_id(&tx, &mut self.ids, source).map_err(e("cannot record the source"))?;
        let (mut last_id, mut prev) = tx
            .query_row(
                "SELECT id, hash FROM changes ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()
            .map_err(e("cannot read the chain tip"))?
            .map(|(id, h)| (id, h.try_into().unwrap_or([0u8; 32])))
            .unwrap_or((0, chain::GENESIS));
        let mut stats = AppendStats::default();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO changes (id, source_id, seq, table_id, version_id, op, tx, stmt, at, \
                     login, host, app, client_ip, row_key, prev_key, src_rowid, before, after, \
                     archived_us, hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
                     ?17, ?18, ?19, ?20) ON CONFLICT (source_id, seq) DO NOTHING",
                )
                .map_err(e("cannot prepare the archive insert"))?;
            let archived_us = now_micros();
            let definitions: Vec<String> = tables.iter().map(|c| c.table.to_json()).collect();
            let digests: Vec<[u8; 32]> = definitions
                .iter()
                .map(|d| chain::definition_digest(d))
                .collect();
            let mut resolved: Vec<Option<(i64, i64)>> = vec![None; tables.len()];
            let mut before_buf = Vec::new();
            let mut after_buf = Vec::new();
            for c in changes {
                let captured = &tables[c.table];
                let t = &captured.table;
                let definition = &definitions[c.table];
                let (table_id, version_id) = match resolved[c.table] {
                    Some(ids) => ids,
                    None => {
                        let ids = version_id(&tx, &mut self.ids, source_id, t, definition)
                            .map_err(e("cannot record the table version"))?;
                        resolved[c.table] = Some(ids);
                        ids
                    }
                };
                before_buf.clear();
                after_buf.clear();
                if let Some(b) = &c.before {
                    image::encode_into(b, &mut before_buf);
                }
                if let Some(a) = &c.after {
                    image::encode_into(a, &mut after_buf);
                }
                let main_image = c
                    .after
                    .as_ref()
                    .or(c.before.as_ref())
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let key = row_key(t, main_image, c.rowid);
                let prev_key = match (&c.before, &c.after) {
                    (Some(b), Some(_)) => Some(row_key(t, b, c.rowid)).filter(|k| *k != key),
                    _ => None,
                };
                let meta = meta_values(&c.meta, c.rowid);
                let id = last_id + 1;
                let fields = ChainFields {
                    id,
                    incarnation: &source.incarnation,
                    seq: c.seq,
                    schema: t.name.schema.as_ref().map_or("", |s| s.as_str()),
                    table: t.name.name.as_str(),
                    definition: &digests[c.table],
                    op: c.op.word(),
                    meta: &meta,
                    before: c.before.as_ref().map(|_| before_buf.as_slice()),
                    after: c.after.as_ref().map(|_| after_buf.as_slice()),
                    archived_us,
                };
                let hash = chain::link(&prev, &fields);
                let n = insert
                    .execute(params![
                        id,
                        source_id,
                        c.seq,
                        table_id,
                        version_id,
                        c.op.word(),
                        Param(&meta[0]),
                        Param(&meta[1]),
                        Param(&meta[2]),
                        c.meta.login,
                        c.meta.host,
                        c.meta.app,
                        c.meta.client_ip,
                        key,
                        prev_key,
                        c.rowid,
                        c.before.as_ref().map(|_| &before_buf),
                        c.after.as_ref().map(|_| &after_buf),
                        archived_us,
                        hash.as_slice(),
                    ])
                    .map_err(e("cannot archive a change"))?;
                if n == 1 {
                    stats.inserted += 1;
                    last_id = id;
                    prev = hash;
                } else {
                    // A batch copied again after a crash holds exactly what was archived, who,
                    // when and in which transaction included; an image with other contents or
                    // metadata under a seq already taken is not a copy (a restored source
                    // replaying the same change later, say) and must stay staged.
                    let same: bool = tx
                        .prepare_cached(
                            "SELECT table_id = ?3 AND op = ?4 AND before IS ?5 AND after IS ?6 \
                             AND tx IS ?7 AND stmt IS ?8 AND at IS ?9 AND login IS ?10 \
                             AND host IS ?11 AND app IS ?12 AND client_ip IS ?13 \
                             FROM changes WHERE source_id = ?1 AND seq = ?2",
                        )
                        .and_then(|mut s| {
                            s.query_row(
                                params![
                                    source_id,
                                    c.seq,
                                    table_id,
                                    c.op.word(),
                                    c.before.as_ref().map(|_| &before_buf),
                                    c.after.as_ref().map(|_| &after_buf),
                                    Param(&meta[0]),
                                    Param(&meta[1]),
                                    Param(&meta[2]),
                                    c.meta.login,
                                    c.meta.host,
                                    c.meta.app,
                                    c.meta.client_ip,
                                ],
                                |r| r.get(0),
                            )
                        })
                        .map_err(e("cannot compare a change archived before"))?;
                    if !same {
                        return Err(ReaderError::SeqReused {
                            location: source.location.clone(),
                            incarnation: source.incarnation.clone(),
                            seq: c.seq,
                        });
                    }
                    stats.duplicates += 1;
                }
            }
        }
        tx.commit()
            .map_err(e("cannot commit the archive transaction"))?;
        Ok(stats)
    }
}

pub(super) fn source_id(
    tx: &Transaction<'_>,
    ids: &mut IdCache,
    s: &SourceInfo,
) -> rusqlite::Result<i64> {
    if let Some(id) = ids.sources.get(&s.incarnation) {
        return Ok(*id);
    }
    let first_seen_us = now_micros();
    let added = tx.execute(
        "INSERT INTO sources (incarnation, engine, location, first_seen_us) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (incarnation) DO NOTHING",
        params![s.incarnation, s.engine, s.location, first_seen_us],
    )?;
    let id = tx.query_row(
        "SELECT id FROM sources WHERE incarnation = ?1",
        [&s.incarnation],
        |r| r.get(0),
    )?;
    if added == 1 {
        super::ledger::record(
            tx,
            "source",
            id,
            &super::ledger::source_body(&s.incarnation, s.engine, &s.location, first_seen_us),
        )?;
    }
    ids.sources.insert(s.incarnation.clone(), id);
    Ok(id)
}

pub(super) fn version_id(
    tx: &Transaction<'_>,
    ids: &mut IdCache,
    source_id: i64,
    t: &rowtrail_sql::Table,
    definition: &str,
) -> rusqlite::Result<(i64, i64)> {
    let schema = t
        .name
        .schema
        .as_ref()
        .map_or("", |s| s.as_str())
        .to_string();
    let name = t.name.name.as_str().to_string();
    let key = (source_id, schema, name, definition.to_string());
    if let Some(ids) = ids.versions.get(&key) {
        return Ok(*ids);
    }
    tx.execute(
        "INSERT INTO tables (source_id, schema_name, table_name) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO NOTHING",
        params![source_id, key.1, key.2],
    )?;
    let table_id: i64 = tx.query_row(
        "SELECT id FROM tables WHERE source_id = ?1 AND schema_name = ?2 AND table_name = ?3",
        params![source_id, key.1, key.2],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO table_versions (table_id, definition, first_seen_us) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO NOTHING",
        params![table_id, definition, now_micros()],
    )?;
    let version: i64 = tx.query_row(
        "SELECT id FROM table_versions WHERE table_id = ?1 AND definition = ?2",
        params![table_id, definition],
        |r| r.get(0),
    )?;
    ids.versions.insert(key, (table_id, version));
    Ok((table_id, version))
}
