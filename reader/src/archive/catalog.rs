//! What the archive holds besides changes: the sources (incarnations) it has seen, their tables
//! and each table's recorded definitions.

use rowtrail_sql::{Table, TableName};
use rusqlite::OptionalExtension;

use super::Archive;
use crate::ReaderError;

/// One source incarnation the archive holds changes of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// The archive's id of it.
    pub id: i64,
    /// The incarnation id.
    pub incarnation: String,
    /// `sqlite` or `mssql`.
    pub engine: String,
    /// Where it was when first seen (a file, or a server and database).
    pub location: String,
    /// When the archive first saw it (µs since the epoch).
    pub first_seen_us: i64,
}

impl Archive {
    /// Every source incarnation, oldest first.
    pub fn sources(&self) -> Result<Vec<SourceRecord>, ReaderError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, incarnation, engine, location, first_seen_us FROM sources ORDER BY id",
            )
            .map_err(self.err("cannot read the sources"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SourceRecord {
                    id: r.get(0)?,
                    incarnation: r.get(1)?,
                    engine: r.get(2)?,
                    location: r.get(3)?,
                    first_seen_us: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.err("cannot read the sources"))?;
        Ok(rows)
    }

    /// The latest definition the archive holds for `table` (any source), if it holds one.
    pub fn latest_definition(&self, table: &TableName) -> Result<Option<Table>, ReaderError> {
        let schema = table.schema.as_ref().map_or("", |s| s.as_str());
        let def: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT v.definition FROM table_versions v JOIN tables t ON t.id = v.table_id \
                 WHERE t.schema_name = ?1 AND t.table_name = ?2 ORDER BY v.id DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row([schema, table.name.as_str()], |r| r.get(0))
                    .optional()
            })
            .map_err(self.err("cannot read the table versions"))?;
        // A table renamed before any change was archived under its new name: its old name's.
        let def = match def {
            Some(d) => Some(d),
            None => {
                let mut found = None;
                for (table_id, _) in self.former_names(table)? {
                    found = self
                        .conn
                        .prepare_cached(
                            "SELECT definition FROM table_versions WHERE table_id = ?1 \
                             ORDER BY id DESC LIMIT 1",
                        )
                        .and_then(|mut s| s.query_row([table_id], |r| r.get(0)).optional())
                        .map_err(self.err("cannot read the table versions"))?;
                    if found.is_some() {
                        break;
                    }
                }
                found
            }
        };
        def.map(|d| {
            Table::from_json(&d).map_err(|_| ReaderError::NotAnArchive {
                path: self.path.clone(),
                reason: format!(
                    "the recorded definition of {table} is damaged; run `rowtrail verify`"
                ),
            })
        })
        .transpose()
    }

    /// The names of every table the archive holds changes of (`schema.table` on SQL Server),
    /// sorted.
    pub fn table_names(&self) -> Result<Vec<String>, ReaderError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT CASE schema_name WHEN '' THEN table_name \
                 ELSE schema_name || '.' || table_name END AS n FROM tables ORDER BY n",
            )
            .map_err(self.err("cannot read the tables"))?;
        let names = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
            .map_err(self.err("cannot read the tables"))?;
        Ok(names)
    }

    /// The highest seq archived for the source incarnation `incarnation`, if any.
    pub fn last_seq(&self, incarnation: &str) -> Result<Option<i64>, ReaderError> {
        self.conn
            .query_row(
                "SELECT max(c.seq) FROM changes c JOIN sources s ON s.id = c.source_id \
                 WHERE s.incarnation = ?1",
                [incarnation],
                |r| r.get(0),
            )
            .map_err(self.err("cannot read the last seq"))
    }

    /// The id of the newest change (0 when the archive holds none).
    pub fn last_id(&self) -> Result<i64, ReaderError> {
        self.conn
            .query_row("SELECT coalesce(max(id), 0) FROM changes", [], |r| r.get(0))
            .map_err(self.err("cannot read the last change"))
    }

    /// The first change archived with the same source and server time as change `id`, at or
    /// before it (`id` itself when there is none): where the statement that made `id` began.
    pub fn statement_start(&self, id: i64) -> Result<i64, ReaderError> {
        self.conn
            .prepare_cached(
                "SELECT coalesce(min(c.id), ?1) FROM changes c, changes f \
                 WHERE f.id = ?1 AND c.at = f.at AND c.source_id = f.source_id AND c.id <= ?1",
            )
            .and_then(|mut s| s.query_row([id], |r| r.get(0)))
            .map_err(self.err("cannot read changes"))
    }
}
