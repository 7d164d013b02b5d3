//! The schema log: what the reader learnt of source tables' schemas changing, each entry at its
//! point of the change stream. A rename links a table's old name to its new one, so a table's
//! history reads across it ([`Archive::former_names`]).

use rowtrail_sql::TableName;
use rusqlite::params;

use super::Archive;
use crate::source::SourceInfo;
use crate::{now_micros, ReaderError};

/// What happened to a table's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaEventKind {
    /// Its columns or keys changed, and capture was upgraded to them.
    Upgraded,
    /// It was renamed (to [`SchemaEvent::renamed_to`]); capture follows the new name.
    Renamed,
    /// It was dropped; its rows went without a record of each.
    Dropped,
    /// It was found uncaptured and capture was installed for it.
    Captured,
}

impl SchemaEventKind {
    /// The word the archive stores.
    pub fn word(self) -> &'static str {
        match self {
            SchemaEventKind::Upgraded => "upgraded",
            SchemaEventKind::Renamed => "renamed",
            SchemaEventKind::Dropped => "dropped",
            SchemaEventKind::Captured => "captured",
        }
    }

    fn from_word(w: &str) -> Option<Self> {
        Some(match w {
            "upgraded" => SchemaEventKind::Upgraded,
            "renamed" => SchemaEventKind::Renamed,
            "dropped" => SchemaEventKind::Dropped,
            "captured" => SchemaEventKind::Captured,
            _ => return None,
        })
    }
}

/// A schema change to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchemaEvent {
    /// The table, by the name it had before.
    pub table: TableName,
    /// What happened.
    pub kind: SchemaEventKind,
    /// For a rename, the new name.
    pub renamed_to: Option<String>,
    /// What changed, in words (names and counts, never row values).
    pub detail: String,
    /// Every change of the table with a seq at or below this was captured before capture was
    /// changed; every later one after.
    pub after_seq: i64,
    /// The first seq that may have been captured after the schema change but before capture
    /// followed it (so without a new column's value, or under an old name); `None` when capture
    /// changed with the schema, in one transaction.
    pub unsure_from_seq: Option<i64>,
}

/// A recorded schema change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaEvent {
    /// Its id in the log.
    pub id: i64,
    /// The source's incarnation.
    pub incarnation: String,
    /// The table, by the name it had before.
    pub table: String,
    /// What happened.
    pub kind: SchemaEventKind,
    /// For a rename, the new name.
    pub renamed_to: Option<String>,
    /// What changed, in words.
    pub detail: String,
    /// See [`NewSchemaEvent::after_seq`].
    pub after_seq: i64,
    /// The archive ids of the first and last change of the table captured after the schema
    /// change but before capture followed it, and how many there are (0: none).
    pub unsure: Option<(i64, i64)>,
    /// How many such changes there are.
    pub unsure_count: i64,
    /// When it was recorded (µs since the epoch).
    pub recorded_us: i64,
}

impl SchemaEvent {
    /// One line for people: what happened, and which changes may lack what.
    pub fn summary(&self) -> String {
        let mut s = format!("{:?}: {}", self.table, self.detail);
        if let Some((first, last)) = self.unsure {
            s.push_str(&format!(
                "; {} change(s) archived as ids {first}–{last} were captured after the schema change and before capture followed it, so they may lack what changed",
                self.unsure_count
            ));
        }
        s
    }
}

impl Archive {
    /// Records `e` for `source` (idempotent: the same event twice is recorded once) and returns
    /// it as recorded.
    pub fn record_schema_event(
        &mut self,
        source: &SourceInfo,
        e: &NewSchemaEvent,
    ) -> Result<SchemaEvent, ReaderError> {
        let path = self.path.clone();
        let fail = |cause| ReaderError::archive(&path, "cannot record a schema change", cause);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        let mut ids = super::append::IdCache::default();
        let source_id = super::append::source_id(&tx, &mut ids, source).map_err(fail)?;
        let schema = e.table.schema.as_ref().map_or("", |s| s.as_str());
        let name = e.table.name.as_str();
        let unsure: (Option<i64>, Option<i64>, i64) = match e.unsure_from_seq {
            None => (None, None, 0),
            Some(from) => tx
                .query_row(
                    "SELECT min(c.id), max(c.id), count(*) FROM changes c JOIN tables t \
                     ON t.id = c.table_id WHERE c.source_id = ?1 AND t.schema_name = ?2 \
                     AND t.table_name = ?3 AND c.seq BETWEEN ?4 AND ?5",
                    params![source_id, schema, name, from, e.after_seq],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(fail)?,
        };
        tx.execute(
            "INSERT INTO schema_events (source_id, schema_name, table_name, kind, renamed_to, \
             detail, after_seq, unsure_first_id, unsure_last_id, unsure_count, recorded_us) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING",
            params![
                source_id,
                schema,
                name,
                e.kind.word(),
                e.renamed_to,
                e.detail,
                e.after_seq,
                unsure.0,
                unsure.1,
                unsure.2,
                now_micros()
            ],
        )
        .map_err(fail)?;
        let id: i64 = tx
            .query_row(
                "SELECT id FROM schema_events WHERE source_id = ?1 AND schema_name = ?2 \
                 AND table_name = ?3 AND kind = ?4 AND after_seq = ?5",
                params![source_id, schema, name, e.kind.word(), e.after_seq],
                |r| r.get(0),
            )
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(self
            .schema_events(None, id - 1)?
            .into_iter()
            .next()
            .expect("just recorded"))
    }

    /// The schema changes recorded after log id `after_id`, oldest first (of one source
    /// incarnation, or of all).
    pub fn schema_events(
        &self,
        incarnation: Option<&str>,
        after_id: i64,
    ) -> Result<Vec<SchemaEvent>, ReaderError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.id, s.incarnation, e.schema_name, e.table_name, e.kind, e.renamed_to, \
                 e.detail, e.after_seq, e.unsure_first_id, e.unsure_last_id, e.unsure_count, \
                 e.recorded_us FROM schema_events e JOIN sources s ON s.id = e.source_id \
                 WHERE e.id > ?1 AND (?2 IS NULL OR s.incarnation = ?2) ORDER BY e.id",
            )
            .map_err(self.err("cannot read the schema log"))?;
        let rows = stmt
            .query_map(params![after_id, incarnation], |r| {
                let schema: String = r.get(2)?;
                let name: String = r.get(3)?;
                let kind: String = r.get(4)?;
                let first: Option<i64> = r.get(8)?;
                let last: Option<i64> = r.get(9)?;
                Ok((
                    SchemaEvent {
                        id: r.get(0)?,
                        incarnation: r.get(1)?,
                        table: if schema.is_empty() {
                            name
                        } else {
                            format!("{schema}.{name}")
                        },
                        kind: SchemaEventKind::Upgraded,
                        renamed_to: r.get(5)?,
                        detail: r.get(6)?,
                        after_seq: r.get(7)?,
                        unsure: first.zip(last),
                        unsure_count: r.get(10)?,
                        recorded_us: r.get(11)?,
                    },
                    kind,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.err("cannot read the schema log"))?;
        rows.into_iter()
            .map(|(mut e, kind)| {
                e.kind = SchemaEventKind::from_word(&kind).ok_or_else(|| {
                    self.damaged(&format!("schema log entry {} is damaged", e.id))
                })?;
                Ok(e)
            })
            .collect()
    }

    /// The id of the newest schema log entry (0 when there is none).
    pub fn last_schema_event_id(&self) -> Result<i64, ReaderError> {
        self.conn
            .query_row("SELECT coalesce(max(id), 0) FROM schema_events", [], |r| {
                r.get(0)
            })
            .map_err(self.err("cannot read the schema log"))
    }

    /// The tables `table` was known as before it was renamed (as often as it was), each as an
    /// archive table id with the last seq it held that name under: the changes a history of
    /// `table` reads besides its own.
    pub(super) fn former_names(&self, table: &TableName) -> Result<Vec<(i64, i64)>, ReaderError> {
        let schema = table.schema.as_ref().map_or("", |s| s.as_str());
        let mut out = Vec::new();
        // (source, name, the last seq under that name); walked back one rename at a time.
        let mut work: Vec<(Option<i64>, String, i64)> =
            vec![(None, table.name.as_str().to_string(), i64::MAX)];
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.source_id, e.table_name, e.after_seq, t.id FROM schema_events e \
                 LEFT JOIN tables t ON t.source_id = e.source_id AND t.schema_name = e.schema_name \
                 AND t.table_name = e.table_name \
                 WHERE e.kind = 'renamed' AND e.schema_name = ?1 AND e.renamed_to = ?2 \
                 AND (?3 IS NULL OR e.source_id = ?3) AND e.after_seq <= ?4",
            )
            .map_err(self.err("cannot read the schema log"))?;
        let mut steps = 0;
        while let Some((source, name, below)) = work.pop() {
            steps += 1;
            if steps > 1000 {
                break; // renamed back and forth: enough
            }
            let found: Vec<(i64, String, i64, Option<i64>)> = stmt
                .query_map(params![schema, name, source, below], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .and_then(|rows| rows.collect())
                .map_err(self.err("cannot read the schema log"))?;
            for (source_id, old, after_seq, table_id) in found {
                if let Some(id) = table_id {
                    if !out.contains(&(id, after_seq)) {
                        out.push((id, after_seq));
                    }
                }
                work.push((Some(source_id), old, after_seq));
            }
        }
        Ok(out)
    }
}
