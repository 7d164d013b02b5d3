//! Following schema changes on a SQLite source: when the catalog no longer matches what capture
//! was made for ([`super::drift`]), the reader archives what is staged, then upgrades capture
//! to the tables as they are, in one transaction on the source that holds its write lock.
//!
//! Images staged under the old capture are archived under the old definition (what they were
//! captured with), so the staging tables can be made again for the new one. Each change
//! followed is noted in the source's `rowtrail_meta` (keys `schema-event:…`) in that same
//! transaction, and moved from there into the archive's schema log: `rowtrail sql alter`, which
//! has no archive, leaves its notes the same way. A crash anywhere leaves the old capture with
//! its images staged (archived again, once), or the new one with its notes waiting.

use rowtrail_sql::sqlite::{objects, upgrade};
use rowtrail_sql::{Ident, TableName};
use rusqlite::{params, Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::catalog::{incarnation, registry, schema_version};
use super::connection::err;
use super::delete::delete_copied;
use super::drift::{observe, Drift};
use super::staging::{read_staged, sequence_value, widen_for, StagingQuery};
use super::SqliteSource;
use crate::archive::{Archive, NewSchemaEvent, SchemaEvent, SchemaEventKind};
use crate::source::Source;
use crate::ReaderError;

/// The key prefix of a schema-change note in `rowtrail_meta`.
const NOTE_PREFIX: &str = "schema-event:";

/// A schema change noted on the source, waiting to be moved into the archive's schema log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// The table, by the name it had before.
    pub table: String,
    /// `upgraded`, `renamed`, `dropped` or `captured`.
    pub kind: String,
    /// For a rename, the new name.
    pub renamed_to: Option<String>,
    /// What changed, in words.
    pub detail: String,
    /// Every image of the table with a seq at or below it was captured before the change.
    pub after_seq: i64,
    /// The first seq that may have been captured after the schema change but before capture
    /// followed it (`None`: capture changed with the schema, in one transaction).
    pub unsure_from_seq: Option<i64>,
}

impl Note {
    /// The note a drift followed at `after_seq` leaves (`None` for a drift nothing follows).
    pub fn of(drift: &Drift, after_seq: i64, unsure_from_seq: Option<i64>) -> Option<Self> {
        let (kind, renamed_to) = match drift {
            Drift::Columns { .. } | Drift::TriggersMissing { .. } => ("upgraded", None),
            Drift::Renamed { live, .. } => ("renamed", Some(live.name.name.to_string())),
            Drift::Dropped { .. } => ("dropped", None),
            Drift::NotCaptured { table: Some(_), .. } => ("captured", None),
            _ => return None,
        };
        let detail = match drift {
            Drift::Dropped { .. } => {
                "the table was dropped, its rows with it (they were not recorded one by one); its capture was removed".into()
            }
            Drift::NotCaptured { .. } => "a table created after the install: capture installed".into(),
            Drift::TriggersMissing { missing, .. } => format!(
                "capture triggers were missing ({}): capture installed again for the table as it is",
                missing.join(", ")
            ),
            Drift::Columns { drift, .. } => format!("{}: capture upgraded", drift.describe()),
            Drift::Renamed { live, drift, .. } => {
                let mut s = format!("renamed to {:?}; capture follows the new name", live.name.name.as_str());
                if !drift.is_empty() {
                    s.push_str("; ");
                    s.push_str(&drift.describe());
                }
                s
            }
            Drift::NoLongerCapturable { .. } => return None,
        };
        Some(Self {
            table: drift.table(),
            kind: kind.into(),
            renamed_to,
            detail,
            after_seq,
            unsure_from_seq: unsure_from_seq.filter(|from| *from <= after_seq),
        })
    }

    fn key(&self) -> String {
        format!(
            "{NOTE_PREFIX}{}:{}:{}",
            self.after_seq, self.kind, self.table
        )
    }

    /// Writes the note into `rowtrail_meta` of the database behind `conn`.
    pub fn write(&self, conn: &Connection, location: &str) -> Result<(), ReaderError> {
        let value = serde_json::to_string(self).expect("a note serialises");
        conn.execute(
            &format!(
                "INSERT OR REPLACE INTO {} (\"key\", \"value\") VALUES (?1, ?2)",
                Ident::new(objects::META)?.sqlite()
            ),
            params![self.key(), value],
        )
        .map_err(err(location, "cannot note a schema change"))?;
        Ok(())
    }
}

impl SqliteSource {
    /// Follows schema changes made since the last look (see the module documentation); returns
    /// what the archive's schema log recorded. Cheap when the schema did not change.
    pub(super) fn follow(
        &mut self,
        archive: &mut Archive,
    ) -> Result<Vec<SchemaEvent>, ReaderError> {
        let location = self.info.location.clone();
        let version = schema_version(&self.conn, &location)?;
        if self.followed_version == Some(version) {
            return Ok(Vec::new());
        }
        let mut recorded = self.move_notes(archive)?;
        let act = |d: &Drift, capture_new: bool| {
            d.followed() || (capture_new && matches!(d, Drift::NotCaptured { table: Some(_), .. }))
        };
        let pending: Vec<Drift> = {
            let tx = self
                .conn
                .transaction()
                .map_err(err(&location, "cannot start a read transaction"))?;
            let found = observe(&tx, &location)?;
            if found.iter().all(|d| !act(d, self.capture_new_tables)) {
                // Clean: whatever changes next, images up to here were captured as recorded.
                self.clean_below = Some(sequence_value(&tx, &location)?);
                self.clean_version = Some(version);
            }
            found
        };
        for d in pending.iter().filter(|d| !act(d, self.capture_new_tables)) {
            if self.reported_drift.insert(d.problem()) {
                tracing::warn!(source = %location, "schema drift: {}; fix: {}", d.problem(), d.fix());
            }
        }
        if pending.iter().any(|d| act(d, self.capture_new_tables)) {
            self.upgrade(archive)?;
            recorded.extend(self.move_notes(archive)?);
        }
        self.followed_version = Some(schema_version(&self.conn, &location)?);
        for e in &recorded {
            tracing::warn!(source = %location, table = %e.table, kind = e.kind.word(),
                "schema change followed: {}", e.summary());
        }
        Ok(recorded)
    }

    /// Under the source's write lock: archives every staged image, deletes it, upgrades capture
    /// of every table that drifted, and notes each change, then commits.
    fn upgrade(&mut self, archive: &mut Archive) -> Result<(), ReaderError> {
        let location = self.info.location.clone();
        let unsure_from = match (self.clean_below, self.first_read) {
            (Some(seq), _) => seq + 1,
            // Not seen clean since this reader opened: everything it read may be affected.
            (None, Some(first)) => first,
            (None, None) => archive.last_seq(&self.info.incarnation)?.unwrap_or(0) + 1,
        };
        let capture_new = self.capture_new_tables;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err(
                &location,
                "cannot take the write lock to upgrade capture",
            ))?;
        if incarnation(&tx, &location)?.as_deref() != Some(self.info.incarnation.as_str()) {
            // Reinstalled meanwhile: the next batch switches to the new incarnation first.
            return Ok(());
        }
        let tables = registry(&tx, &location)?;
        let selects = StagingQuery::new(&tables);
        let images = read_staged(&tx, &location, &tables, &selects, usize::MAX, None)?;
        if !images.is_empty() {
            let keys = crate::mover::keys_of(&images);
            let changes = crate::mover::pair(&tables, images)?;
            archive.append(&self.info, &tables, &changes)?;
            delete_copied(&tx, &tables, &keys, &location)?;
        }
        let after_seq = sequence_value(&tx, &location)?;
        for d in observe(&tx, &location)? {
            let script = match &d {
                Drift::Columns { captured, live, .. }
                | Drift::TriggersMissing { captured, live, .. }
                | Drift::Renamed { captured, live, .. } => {
                    upgrade::table_upgrade(&captured.table, Some(live))?
                }
                Drift::Dropped { captured } => upgrade::table_upgrade(&captured.table, None)?,
                Drift::NotCaptured { table: Some(t), .. } if capture_new => {
                    rowtrail_sql::sqlite::table_install(t)?
                }
                _ => continue,
            };
            let wider: Vec<&rowtrail_sql::Table> = match &d {
                Drift::Columns { live, .. }
                | Drift::TriggersMissing { live, .. }
                | Drift::Renamed { live, .. } => vec![live],
                Drift::NotCaptured { table: Some(t), .. } => vec![t],
                _ => vec![],
            };
            widen_for(&tx, &location, &wider)?;
            tx.execute_batch(&script).map_err(err(
                &location,
                format!("cannot upgrade capture of {:?}", d.table()),
            ))?;
            let unsure = match &d {
                Drift::Columns { .. } | Drift::TriggersMissing { .. } | Drift::Renamed { .. } => {
                    Some(unsure_from)
                }
                _ => None,
            };
            if let Some(note) = Note::of(&d, after_seq, unsure) {
                note.write(&tx, &location)?;
            }
        }
        tx.commit()
            .map_err(err(&location, "cannot commit the capture upgrade"))?;
        self.clean_below = Some(after_seq);
        self.refresh()?;
        self.clean_version = Some(self.schema_version);
        Ok(())
    }

    /// Moves the schema-change notes waiting on the source into the archive's schema log.
    fn move_notes(&mut self, archive: &mut Archive) -> Result<Vec<SchemaEvent>, ReaderError> {
        let location = self.info.location.clone();
        let meta = Ident::new(objects::META)?;
        let notes: Vec<(String, String)> = self
            .conn
            .prepare(&format!(
                "SELECT \"key\", \"value\" FROM {} WHERE substr(\"key\", 1, {}) = ?1 ORDER BY \"key\"",
                meta.sqlite(),
                NOTE_PREFIX.len()
            ))
            .and_then(|mut s| {
                s.query_map([NOTE_PREFIX], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(err(&location, "cannot read the schema-change notes"))?;
        let mut recorded = Vec::new();
        for (key, value) in notes {
            let note: Note = serde_json::from_str(&value).map_err(|e| ReaderError::BadRequest(
                format!("source {location}: the schema-change note {key:?} in rowtrail_meta is damaged ({e}); delete it")))?;
            let kind = match note.kind.as_str() {
                "renamed" => SchemaEventKind::Renamed,
                "dropped" => SchemaEventKind::Dropped,
                "captured" => SchemaEventKind::Captured,
                _ => SchemaEventKind::Upgraded,
            };
            let event = archive.record_schema_event(
                &self.info,
                &NewSchemaEvent {
                    table: TableName::bare(Ident::new(note.table.clone())?),
                    kind,
                    renamed_to: note.renamed_to.clone(),
                    detail: note.detail.clone(),
                    after_seq: note.after_seq,
                    unsure_from_seq: note.unsure_from_seq,
                },
            )?;
            self.conn
                .execute(
                    &format!("DELETE FROM {} WHERE \"key\" = ?1", meta.sqlite()),
                    [&key],
                )
                .map_err(err(&location, "cannot remove a schema-change note"))?;
            recorded.push(event);
        }
        Ok(recorded)
    }
}
