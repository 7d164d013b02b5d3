//! SQLite as a source engine: the database file an application writes, with rowtrail's capture
//! triggers and staging tables in it.
//!
//! * [`connection`]: opening a source, waiting for the application's locks; [`catalog`]: what
//!   its own catalog says (installation, incarnation, registry, table definitions);
//! * `install`: installing and removing capture; `migrate`: an older staging format to this
//!   build's; `health`: the heartbeat's look;
//! * [`drift`]: where the schema no longer matches capture; `follow`: the reader upgrading
//!   capture after a schema change; `alter`: a schema change and its upgrade in one
//!   transaction (`rowtrail sql alter`); `holders`: who holds the source's locks;
//! * [`ranges`]: a table's rows by key range, checksummed inside SQLite (comparisons);
//! * [`staging`]: reading staged images in seq order; `delete`: deleting exactly the images a
//!   pass copied, on the reader's connection or on a second one behind it;
//! * `time`: statement times as the archive keeps them; [`value`]: values to and from SQLite,
//!   for every SQLite connection rowtrail holds (sources, the archive, apply targets).
//!
//! The same shape as [`crate::mssql`], the SQL Server engine.

mod alter;
mod baseline;
pub mod catalog;
pub mod connection;
mod delete;
pub mod drift;
mod follow;
mod health;
mod holders;
mod install;
mod migrate;
pub mod ranges;
pub mod staging;
mod time;
pub mod value;

use std::path::{Path, PathBuf};

use rowtrail_sql::Table;
use rusqlite::Connection;

pub use alter::{Altered, ALTER_WAIT};
pub use connection::BUSY_TIMEOUT;
pub use ranges::SqliteRanges;
pub use value::{value_of, Param};

use catalog::{installed, open_installed, registry, schema_version};
use connection::{err, open};
use delete::{delete_under, SqliteDeleter};
use staging::{count, StagingQuery};

use crate::source::{CapturedTable, Source, SourceInfo, StagedImage, StagedKey, StagingDeleter};
use crate::ReaderError;

/// A SQLite database under capture (or about to be).
pub struct SqliteSource {
    conn: Connection,
    info: SourceInfo,
    tables: Vec<CapturedTable>,
    /// The read of the shared staging table for [`Self::tables`].
    selects: StagingQuery,
    /// `PRAGMA schema_version` when the registry was last read: a table captured (or dropped)
    /// since changes it, and the next batch reads the registry again in its own snapshot.
    schema_version: i64,
    /// `PRAGMA schema_version` when schema drift was last looked for (`follow.rs`).
    followed_version: Option<i64>,
    /// The highest seq known to be captured as the registry records: staged before the schema
    /// was last seen to match capture, or read in a snapshot of that same schema.
    clean_below: Option<i64>,
    /// `PRAGMA schema_version` when the schema was last seen to match capture.
    clean_version: Option<i64>,
    /// The lowest seq this reader has read.
    first_read: Option<i64>,
    /// Whether tables created after the install are captured when they are found.
    capture_new_tables: bool,
    /// Drifts already logged, so each is logged once.
    reported_drift: std::collections::HashSet<String>,
    /// The cut the last read reached: the sequence's value in its snapshot, when it took every
    /// image staged there.
    snapshot_cut: Option<i64>,
}

impl SqliteSource {
    /// Opens a source that already has capture installed.
    pub fn open(path: &Path) -> Result<Self, ReaderError> {
        let (mut conn, location, incarnation) = open_installed(path)?;
        migrate::to_current(&mut conn, &location)?;
        let mut source = Self {
            conn,
            info: SourceInfo {
                incarnation,
                engine: "sqlite",
                location,
            },
            tables: Vec::new(),
            selects: StagingQuery::default(),
            schema_version: 0,
            followed_version: None,
            clean_below: None,
            clean_version: None,
            first_read: None,
            capture_new_tables: false,
            reported_drift: Default::default(),
            snapshot_cut: None,
        };
        source.refresh()?;
        Ok(source)
    }

    /// Captures tables created after the install as they are found (`source.capture_new_tables`);
    /// otherwise they are only reported.
    pub fn capture_new_tables(mut self, on: bool) -> Self {
        self.capture_new_tables = on;
        self
    }

    /// The tables of the database at `path` that capture could cover (`only` to pick some).
    pub fn candidate_tables(
        path: &Path,
        only: Option<&[String]>,
    ) -> Result<Vec<Table>, ReaderError> {
        let conn = open(path)?;
        let tables = catalog::sqlite_tables(&conn, &path.display().to_string(), only)?;
        if tables.is_empty() {
            return Err(ReaderError::NoTables {
                location: path.display().to_string(),
            });
        }
        Ok(tables)
    }

    /// Every table of the database at `path` sorted into what capture can cover and what it
    /// cannot, each refusal with its reason (`only` to look at some): see [`catalog::survey`].
    /// A table one of whose derived names another object holds is refused too.
    pub fn survey(path: &Path, only: Option<&[String]>) -> Result<catalog::Survey, ReaderError> {
        let conn = open(path)?;
        let location = path.display().to_string();
        let mut survey = catalog::survey(&conn, &location, only)?;
        let taken = install::taken_names(&conn, &location, &survey.tables)?;
        survey
            .tables
            .retain(|t| !taken.iter().any(|r| r.table == t.name.to_string()));
        survey.refused.extend(taken);
        Ok(survey)
    }

    /// The file this source reads.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.info.location)
    }

    fn location(&self) -> &str {
        &self.info.location
    }
}

impl Source for SqliteSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn tables(&self) -> &[CapturedTable] {
        &self.tables
    }

    fn refresh(&mut self) -> Result<(), ReaderError> {
        let location = self.info.location.clone();
        if !installed(&self.conn, &location)? {
            return Err(ReaderError::NotInstalled { location });
        }
        self.schema_version = schema_version(&self.conn, &location)?;
        self.tables = registry(&self.conn, &location)?;
        self.selects = StagingQuery::new(&self.tables);
        Ok(())
    }

    fn read_batch(
        &mut self,
        limit: usize,
        mut above: Option<i64>,
    ) -> Result<Vec<StagedImage>, ReaderError> {
        // A reinstall between two batches starts a new incarnation (its seqs start again from
        // 1): switch to it, or its images would be archived as the old one's, where their seqs
        // are taken, and be dropped as already archived.
        for _ in 0..2 {
            match self.read_under_incarnation(limit, above)? {
                Ok(images) => return Ok(images),
                Err(found) => {
                    tracing::warn!(source = %self.info.location, old = %self.info.incarnation,
                        new = %found, "capture was reinstalled: a new incarnation starts");
                    self.info.incarnation = found;
                    self.refresh()?;
                    above = None;
                }
            }
        }
        Err(ReaderError::IncarnationChanged {
            location: self.info.location.clone(),
            expected: self.info.incarnation.clone(),
            found: "a newer one again".into(),
        })
    }

    fn delete_staged(&mut self, keys: &[StagedKey]) -> Result<(), ReaderError> {
        delete_under(
            &mut self.conn,
            &self.info.location,
            &self.info.incarnation,
            &self.tables,
            keys,
        )
    }

    fn delete_behind(&mut self) -> Result<Option<Box<dyn StagingDeleter>>, ReaderError> {
        Ok(Some(Box::new(SqliteDeleter {
            conn: connection::open_for_reader(&self.path())?,
            location: self.info.location.clone(),
        })))
    }

    fn cut(&self) -> Option<i64> {
        self.snapshot_cut
    }

    fn snapshot_table(
        &mut self,
        table: &CapturedTable,
        page: usize,
        each: &mut dyn FnMut(&[crate::archive::BaselineRow]) -> Result<(), ReaderError>,
    ) -> Result<crate::source::SnapshotPosition, ReaderError> {
        self.snapshot(table, page, each)
    }

    fn table_ranges(
        &mut self,
        table: &CapturedTable,
        visit: &mut dyn FnMut(&mut dyn crate::source::TableRanges) -> Result<(), ReaderError>,
    ) -> Result<crate::source::SnapshotPosition, ReaderError> {
        self.ranges(table, visit)
    }

    fn archive_home(&mut self) -> Result<Option<String>, ReaderError> {
        catalog::archive_home(&self.conn, &self.info.location)
    }

    fn set_archive_home(&mut self, archive: &str) -> Result<(), ReaderError> {
        catalog::set_archive_home(&self.conn, &self.info.location, archive)
    }

    fn probe(&mut self) -> Result<i64, ReaderError> {
        let location = self.location().to_string();
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(err(&location, "probe failed"))
    }

    fn follow_schema(
        &mut self,
        archive: &mut crate::archive::Archive,
    ) -> Result<Vec<crate::archive::SchemaEvent>, ReaderError> {
        self.follow(archive)
    }

    fn staged_count(&mut self) -> Result<u64, ReaderError> {
        let location = self.location().to_string();
        count(&self.conn, &location, None)
    }
}
