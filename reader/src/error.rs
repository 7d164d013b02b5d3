//! The error type of the reader crate.

use std::path::PathBuf;

/// What can go wrong between a source, the archive and the mover.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// The source database could not be opened or queried.
    #[error("source {location}: {context}")]
    Source {
        /// Where the source is.
        location: String,
        /// What rowtrail was doing.
        context: String,
        /// The engine's error.
        #[source]
        cause: rusqlite::Error,
    },
    /// Another process held a lock on the SQLite source for longer than rowtrail waits
    /// ([`crate::sqlite::connection::BUSY_TIMEOUT`]); nothing was changed, and it is tried again.
    #[error("source {location}: database is locked: {}; {context} (rowtrail waits a few seconds per attempt, then tries again later)", .holders.as_deref().unwrap_or("another connection holds a lock rowtrail needs (which process is not known)"))]
    SourceLocked {
        /// Where the source is.
        location: String,
        /// What rowtrail was doing.
        context: String,
        /// Who holds what, where it can be known (`process 4711 (sqlite3) holds the write lock`).
        holders: Option<String>,
        /// The engine's error (boxed: this variant is rare and large).
        #[source]
        cause: Box<rusqlite::Error>,
    },
    /// The source has no rowtrail capture installed.
    #[error(
        "source {location} has no rowtrail capture installed; run `rowtrail sql install` first"
    )]
    NotInstalled {
        /// Where the source is.
        location: String,
    },
    /// A named table does not exist in the source.
    #[error("table {table:?} does not exist in {location}{hint}")]
    UnknownTable {
        /// The name as given.
        table: String,
        /// Where the source is.
        location: String,
        /// A list of tables that do exist, or empty.
        hint: String,
    },
    /// The source has no table that could be captured.
    #[error("{location} has no tables to capture")]
    NoTables {
        /// Where the source is.
        location: String,
    },
    /// The model refused a table or a name.
    #[error(transparent)]
    Sql(#[from] rowtrail_sql::SqlError),
    /// Some tables cannot be captured as they are; nothing was installed.
    #[error("{} table(s) of {location} cannot be captured as they are, so nothing was done:{}\nFix them, or leave them out: --skip-uncapturable goes on with the {capturable} other table(s)", .refused.len(), .refused.iter().map(|r| format!("\n  {r}")).collect::<String>())]
    Uncapturable {
        /// Where the source is.
        location: String,
        /// Each table refused, and why.
        refused: Vec<crate::sqlite::catalog::Refusal>,
        /// How many tables could be captured.
        capturable: usize,
    },
    /// Staged rows would be lost by what was asked.
    #[error("{staged} staged change image(s) in {location} are not archived yet; run `rowtrail read` first, or pass --discard-staged to drop them")]
    StagedRowsPending {
        /// Where the source is.
        location: String,
        /// How many images are waiting.
        staged: u64,
    },
    /// Staging held something that breaks the staging contract.
    #[error("staging table {staging} holds an invalid image at seq {seq}: {reason}")]
    BadStaging {
        /// The staging table.
        staging: String,
        /// The image's sequence number.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
    /// The archive file could not be used.
    #[error("archive {}: {context}", path.display())]
    Archive {
        /// The archive file.
        path: PathBuf,
        /// What rowtrail was doing.
        context: String,
        /// The engine's error.
        #[source]
        cause: rusqlite::Error,
    },
    /// The archive file is not a rowtrail archive, or is damaged.
    #[error("{} is not a usable rowtrail archive: {reason}", path.display())]
    NotAnArchive {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The archive was written by a newer rowtrail.
    #[error("archive {} has schema version {found}, newer than this rowtrail understands ({supported}); upgrade rowtrail", path.display())]
    ArchiveTooNew {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// The archive has reached its configured size limit or the disk is full.
    #[error("archive {} is full ({detail}): free disk space or raise archive.max_bytes, then run again", path.display())]
    ArchiveFull {
        /// The file.
        path: PathBuf,
        /// The engine's words.
        detail: String,
    },
    /// A staged image carries a seq the archive already holds for this incarnation, with other
    /// contents: the source's sequence went back (a database restored from a backup, or a copy
    /// of it captured as well). Taking it for a copy already archived would lose it.
    #[error("source {location}: seq {seq} of incarnation {incarnation} is already archived with other contents, so the source's sequence went back (was the database restored from a backup, or copied?). Nothing was deleted from staging. Give the source a new incarnation so its staged changes are archived as a new source: see `docs/archive.md`, \"A source whose sequence went back\"")]
    SeqReused {
        /// The source.
        location: String,
        /// Its incarnation.
        incarnation: String,
        /// The seq archived twice.
        seq: i64,
    },
    /// Another process holds the reader lock on this archive.
    #[error("another rowtrail reader (pid {pid}) is already working on archive {}; stop it first, or ask it with `rowtrail signal --wait`", path.display())]
    Locked {
        /// The archive.
        path: PathBuf,
        /// The pid recorded by the holder (0 when unknown).
        pid: u32,
    },
    /// A SQL Server request failed. `transient` errors (deadlock victim, lost connection,
    /// timeouts, server busy) are worth retrying; the others are not.
    #[error("SQL Server {location}: {context}{}", if *transient { " (transient: trying again later may succeed)" } else { "" })]
    Mssql {
        /// Server and database (never credentials).
        location: String,
        /// What rowtrail was doing.
        context: String,
        /// Whether trying again may succeed.
        transient: bool,
        /// The driver's or the server's error.
        #[source]
        cause: Box<tiberius::error::Error>,
    },
    /// A SQL Server request ran past the command timeout. It was cancelled on the server (an
    /// attention), or, when the cancel went unanswered, its connection was closed, which ends
    /// it too; either way the session's open transaction is rolled back.
    #[error("SQL Server {location}: {context}: no answer within {} s (the command timeout); the request was {} (transient: trying again later may succeed)", .after.as_secs_f64(), if *.cancelled { "cancelled on the server" } else { "abandoned and its connection closed, which ends it on the server" })]
    MssqlTimeout {
        /// Server and database (never credentials).
        location: String,
        /// What rowtrail was doing.
        context: String,
        /// The timeout that ran out.
        after: std::time::Duration,
        /// Whether the server acknowledged the cancel (the connection stays usable).
        cancelled: bool,
    },
    /// The SQL Server connection settings are unusable.
    #[error("SQL Server connection settings: {reason}")]
    Connection {
        /// What is wrong and what to do.
        reason: String,
    },
    /// A batch of a generated script failed on the server.
    #[error("{script} script, batch {batch} of {batches} failed on {location}: {message}\n--- batch {batch} ---\n{excerpt}")]
    ScriptFailed {
        /// The script's name (install, uninstall, upgrade).
        script: String,
        /// Where it ran (server and database).
        location: String,
        /// The failing batch, 1-based.
        batch: usize,
        /// How many batches the script has.
        batches: usize,
        /// The server's message.
        message: String,
        /// The start of the failing batch.
        excerpt: String,
        /// The driver's or the server's error.
        #[source]
        cause: Box<tiberius::error::Error>,
    },
    /// A value read from SQL Server has no exact archive form.
    #[error("{location}: column {column:?} of staging table {staging}: {reason}")]
    Conversion {
        /// Server and database.
        location: String,
        /// The staging table.
        staging: String,
        /// The column.
        column: String,
        /// Why.
        reason: String,
    },
    /// The source's incarnation changed while rowtrail was working with it (capture was
    /// uninstalled and installed again): what was read is not deleted, and is read again.
    #[error("source {location} was reinstalled while a batch was in hand (incarnation {expected} is now {found}); the batch is read again")]
    IncarnationChanged {
        /// Server and database.
        location: String,
        /// The incarnation the batch was read under.
        expected: String,
        /// The incarnation installed now.
        found: String,
    },
    /// SQLite's integrity check failed on the archive: nothing more is archived or removed from
    /// staging until it is repaired.
    #[error("archive {}: it is damaged (SQLite integrity check: {detail}); nothing was archived or removed from staging. Run `rowtrail verify` to see which changes are still readable, restore the archive from a backup (or move the damaged file aside), then read again: every change still staged is kept", path.display())]
    ArchiveDamaged {
        /// The archive.
        path: PathBuf,
        /// The first problems SQLite reported.
        detail: String,
    },
    /// The source records that another archive took its changes, and this archive is not it.
    #[error("source {location} is archived into another archive (id {other}), not into {} ({}): taking its changes here would start a second, partial trail. Point archive.path at the archive that holds them, or restore that archive from a backup; to start a new archive for this source anyway (the changes already taken stay in the other one), run `rowtrail read --adopt` once", archive.display(), if *holds { "which holds some of its changes too" } else { "which holds none of them" })]
    ArchivedElsewhere {
        /// Where the source is.
        location: String,
        /// This archive.
        archive: PathBuf,
        /// The id of the archive the source records.
        other: String,
        /// Whether this archive holds changes of the source's incarnation.
        holds: bool,
    },
    /// A request the archive cannot answer as asked (a caller's mistake, not damage).
    #[error("{0}")]
    BadRequest(String),
    /// Another SQLite database rowtrail reads (a replica compared with its source) could not
    /// be read.
    #[error("{}: {context}", path.display())]
    Database {
        /// The file.
        path: PathBuf,
        /// What rowtrail was doing.
        context: String,
        /// SQLite's error.
        #[source]
        cause: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("{context} {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What rowtrail was doing.
        context: String,
        /// The OS error.
        #[source]
        cause: std::io::Error,
    },
}

impl ReaderError {
    /// Whether trying the same request again may succeed (a SQL Server deadlock, a lost
    /// connection, a timeout). Everything else is fatal for the request.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ReaderError::Mssql {
                transient: true,
                ..
            } | ReaderError::MssqlTimeout { .. }
        )
    }

    /// Whether the SQL Server driver could not decode a value of a result (see
    /// [`crate::mssql::error::is_undecodable`]).
    pub fn is_undecodable(&self) -> bool {
        matches!(self, ReaderError::Mssql { cause, .. } if crate::mssql::error::is_undecodable(cause))
    }

    /// Wraps an archive engine error, recognising a full disk or size limit.
    pub fn archive(
        path: &std::path::Path,
        context: impl Into<String>,
        cause: rusqlite::Error,
    ) -> Self {
        if let rusqlite::Error::SqliteFailure(e, msg) = &cause {
            if e.code == rusqlite::ErrorCode::DiskFull {
                return ReaderError::ArchiveFull {
                    path: path.to_path_buf(),
                    detail: msg
                        .clone()
                        .unwrap_or_else(|| "database or disk is full".into()),
                };
            }
            if matches!(
                e.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) {
                return ReaderError::NotAnArchive {
                    path: path.to_path_buf(),
                    reason: format!(
                        "the file is damaged or not a SQLite database ({cause}); restore it from a backup"
                    ),
                };
            }
        }
        ReaderError::Archive {
            path: path.to_path_buf(),
            context: context.into(),
            cause,
        }
    }
}
