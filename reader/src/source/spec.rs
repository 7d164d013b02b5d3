//! Which database a source is and how to reach it: the one place that tells the engines apart
//! when a source is opened. The reader, the heartbeat, an undo, a replica or a failover target
//! all start from a [`SourceSpec`].

use std::path::PathBuf;

use super::{Health, Source};
use crate::mssql::{MssqlSource, Settings};
use crate::sqlite::SqliteSource;
use crate::ReaderError;

/// A captured database: its engine and where it is.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A SQLite file.
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Whether the reader captures tables created after the install as it finds them.
        capture_new_tables: bool,
    },
    /// A SQL Server database (the password, if any, travels apart from the connection string).
    Mssql(Settings),
}

/// Opens (or reopens, after a failure) the source's reader.
pub type SourceOpener = Box<dyn FnMut() -> Result<Box<dyn Source>, ReaderError> + Send>;

/// One heartbeat against the source, on a fresh connection.
pub type HealthProbe = Box<dyn FnMut() -> Result<Health, ReaderError> + Send>;

impl SourceSpec {
    /// `sqlite` or `mssql`, as the archive records it.
    pub fn engine(&self) -> &'static str {
        match self {
            SourceSpec::Sqlite { .. } => "sqlite",
            SourceSpec::Mssql(_) => "mssql",
        }
    }

    /// Where the source is, for messages: a file, or a database on a server (never
    /// credentials).
    pub fn location(&self) -> String {
        match self {
            SourceSpec::Sqlite { path, .. } => path.display().to_string(),
            SourceSpec::Mssql(settings) => settings.location(),
        }
    }

    /// Opens the source for the reader: it must have capture installed.
    pub fn open(&self) -> Result<Box<dyn Source>, ReaderError> {
        Ok(match self {
            SourceSpec::Sqlite {
                path,
                capture_new_tables,
            } => Box::new(SqliteSource::open(path)?.capture_new_tables(*capture_new_tables)),
            SourceSpec::Mssql(settings) => Box::new(MssqlSource::open(settings)?),
        })
    }

    /// A heartbeat: a fresh connection (so a moved, replaced or deleted file, or a dead server,
    /// is noticed, which an open connection would not notice), the installation, the backlog.
    pub fn health(&self) -> Result<Health, ReaderError> {
        match self {
            SourceSpec::Sqlite { path, .. } => SqliteSource::health(path),
            SourceSpec::Mssql(settings) => MssqlSource::health(settings),
        }
    }

    /// [`SourceSpec::open`] as a function a daemon can call again after a failure.
    pub fn opener(&self) -> SourceOpener {
        let spec = self.clone();
        Box::new(move || spec.open())
    }

    /// [`SourceSpec::health`] as a function a heartbeat thread can call.
    pub fn health_probe(&self) -> HealthProbe {
        let spec = self.clone();
        Box::new(move || spec.health())
    }
}
