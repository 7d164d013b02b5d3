//! The trace archive: a SQLite file (WAL, `synchronous=FULL`, mode 0600) holding every captured
//! change of every source, in arrival order, under a SHA-256 hash chain.
//!
//! Nothing is updated in place. [`Archive::append`] is idempotent on (incarnation, seq): a batch
//! copied twice (after a crash between the archive commit and the staging delete) lands once.

//!
//! Every statement that touches the archive's tables is in this module: `append.rs`
//! ([`Archive::append`]) writes changes; `query.rs` ([`Archive::stream`], [`ChangeQuery`])
//! reads them back as [`ArchivedChange`]s; `catalog.rs` ([`Archive::sources`]) answers what the
//! archive holds (sources, tables, definitions); `journal.rs` ([`Archive::begin_run`]) owns the
//! undo journal; `schema_log.rs` ([`Archive::record_schema_event`]) the schema changes of
//! source tables; `verify.rs` ([`Archive::verify`]) checks all of it.

mod append;
mod baseline;
mod catalog;
pub mod chain;
mod change;
mod checkpoint;
mod cut;
mod journal;
mod ledger;
mod published;
mod query;
mod rekey;
pub mod schema;
mod schema_log;
mod takeover;
mod verify;

pub use append::{AppendStats, NewChange};
pub use baseline::{BaselineRow, BaselineTable, BaselineWriter, UnfinishedBaseline};
pub use catalog::SourceRecord;
pub use change::{label_text, ArchivedChange};
pub use cut::Cut;
pub use journal::{window_start, RunKind, RunState, UndoItem, UndoRun, CLOCK_MARGIN_US};
pub use published::StreamLag;
pub use query::{ChangeQuery, ChangeStream, DEFAULT_PAGE};
pub use schema_log::{NewSchemaEvent, SchemaEvent, SchemaEventKind};
pub use takeover::{RecordedPrimary, Takeover, TakeoverKind};
pub use verify::{Digest, VerifyReport};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::ReaderError;

/// How the archive is opened.
#[derive(Debug, Clone, Default)]
pub struct ArchiveOptions {
    /// Refuse to grow past this many bytes (SQLite `max_page_count`); `None` means no limit.
    pub max_bytes: Option<u64>,
}

/// An open trace archive.
pub struct Archive {
    // Declared first so it is dropped first: its thread stops before the writer closes, and
    // the writer, closing last, checkpoints what is left and removes the WAL as SQLite does.
    checkpointer: Option<checkpoint::Checkpointer>,
    conn: Connection,
    path: PathBuf,
    ids: append::IdCache,
    /// When this handle last found the file intact, or what it found wrong (see
    /// [`Archive::ensure_intact`]).
    integrity: Option<(std::time::Instant, Result<(), String>)>,
    /// Take a source whose changes another archive took before (see [`Archive::adopt_sources`]).
    adopt: bool,
}

/// How long an integrity check of the archive stands before the next pass checks again.
pub const INTEGRITY_RECHECK: Duration = Duration::from_secs(3600);

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The size the archive's WAL file is cut back to after a checkpoint, in bytes.
const WAL_SIZE_LIMIT: u64 = 64 << 20;

impl Archive {
    /// Opens the archive at `path` for writing, creating it (mode 0600) when it does not exist
    /// and migrating an older schema forward.
    pub fn open(path: &Path, options: &ArchiveOptions) -> Result<Self, ReaderError> {
        let fresh = !path.exists();
        if fresh {
            create_private(path)?;
        } else {
            check_magic(path)?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| ReaderError::archive(path, "cannot open", e))?;
        let mut archive = Self {
            checkpointer: None,
            conn,
            path: path.to_path_buf(),
            ids: append::IdCache::default(),
            integrity: None,
            adopt: false,
        };
        // Identify the file before anything writes to it (switching to WAL rewrites its header).
        archive.check_identity(true)?;
        archive.configure(options)?;
        archive.migrate()?;
        archive.checkpointer = Some(checkpoint::Checkpointer::start(
            &mut archive.conn,
            path,
            checkpoint::THRESHOLDS,
        )?);
        Ok(archive)
    }

    /// Opens an existing archive for reading only (audit, history, verify, status).
    ///
    /// An archive on storage that cannot be written (a read-only mount, WORM media, a file
    /// without write permission) is opened as immutable: SQLite then needs no lock and no
    /// shared-memory file beside it. That is exact only when nothing writes the file meanwhile,
    /// which is what such storage guarantees; an archive whose write-ahead log was left beside
    /// it there is refused, since its last changes would be missed.
    pub fn open_read_only(path: &Path) -> Result<Self, ReaderError> {
        if !path.exists() {
            let folder_missing = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .is_some_and(|p| !p.is_dir());
            return Err(ReaderError::NotAnArchive {
                path: path.to_path_buf(),
                reason: if folder_missing {
                    "neither the file nor its folder exists: check archive.path (a reader creates \
                     the archive on its first pass, in a folder that exists)"
                        .into()
                } else {
                    "the file does not exist (a reader creates it on its first pass: `rowtrail read` \
                     or `rowtrail watch`)"
                        .into()
                },
            });
        }
        check_magic(path)?;
        let conn = match Self::open_shared(path) {
            Ok(conn) => conn,
            Err(e) if Self::on_unwritable_storage(path) => {
                tracing::debug!(archive = %path.display(), error = %e,
                    "the archive's storage is not writable: opening it immutable");
                Self::open_immutable(path)?
            }
            Err(e) => return Err(e),
        };
        let archive = Self {
            checkpointer: None,
            conn,
            path: path.to_path_buf(),
            ids: append::IdCache::default(),
            integrity: None,
            adopt: false,
        };
        archive.check_identity(false)?;
        Ok(archive)
    }

    /// A second handle on an archive another handle of this process opened (and migrated) with
    /// [`Archive::open`]: it reads changes and writes only beside them (published positions, a
    /// takeover's fence once set), sharing the file through WAL and the busy timeout. It runs no migration and
    /// no checkpoints, and refuses an archive whose schema is not this build's.
    pub fn open_beside(path: &Path) -> Result<Self, ReaderError> {
        check_magic(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| ReaderError::archive(path, "cannot open", e))?;
        let archive = Self {
            checkpointer: None,
            conn,
            path: path.to_path_buf(),
            ids: append::IdCache::default(),
            integrity: None,
            adopt: false,
        };
        archive.check_identity(false)?;
        archive
            .conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(archive.err("cannot set the busy timeout"))?;
        archive
            .conn
            .execute_batch("PRAGMA synchronous = FULL;")
            .map_err(archive.err("cannot set synchronous=FULL"))?;
        Ok(archive)
    }

    /// A read-only connection that shares the file with a running writer (WAL, locks).
    fn open_shared(path: &Path) -> Result<Connection, ReaderError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| ReaderError::archive(path, "cannot open", e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| ReaderError::archive(path, "cannot set the busy timeout", e))?;
        // Reading needs the WAL index: this is where unwritable storage fails.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| ReaderError::archive(path, "cannot read the schema", e))?;
        Ok(conn)
    }

    /// Whether the archive's file or folder cannot be written (so SQLite cannot make the
    /// shared-memory file a WAL database needs).
    fn on_unwritable_storage(path: &Path) -> bool {
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let probe = folder.join(format!(".rowtrail-write-probe-{}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                std::fs::OpenOptions::new().write(true).open(path).is_err()
            }
            Err(_) => true,
        }
    }

    /// A connection to an archive on storage nothing writes (see [`Archive::open_read_only`]).
    fn open_immutable(path: &Path) -> Result<Connection, ReaderError> {
        let mut wal = path.as_os_str().to_os_string();
        wal.push("-wal");
        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
            return Err(ReaderError::NotAnArchive {
                path: path.to_path_buf(),
                reason: format!(
                    "it is on storage rowtrail cannot write, and its write-ahead log {} is beside \
                     it, holding changes not yet folded into the file; copy both files to \
                     writable storage and read the copy",
                    Path::new(&wal).display()
                ),
            });
        }
        let mut uri = String::from("file:");
        for c in path.to_string_lossy().chars() {
            match c {
                '?' | '#' | '%' => uri.push_str(&format!("%{:02X}", c as u32)),
                _ => uri.push(c),
            }
        }
        uri.push_str("?immutable=1");
        Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|e| ReaderError::archive(path, "cannot open (immutable, on read-only storage)", e))
    }

    /// The archive file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, context: &str) -> impl FnOnce(rusqlite::Error) -> ReaderError + '_ {
        let context = context.to_string();
        move |e| ReaderError::archive(&self.path, context, e)
    }

    fn configure(&self, options: &ArchiveOptions) -> Result<(), ReaderError> {
        self.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(self.err("cannot set the busy timeout"))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(self.err("cannot switch to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(ReaderError::NotAnArchive {
                path: self.path.clone(),
                reason: format!("it cannot use WAL journaling (journal mode stays {mode})"),
            });
        }
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;")
            .map_err(self.err("cannot set synchronous=FULL"))?;
        // Checkpoints run every ~40 MB of WAL rather than SQLite's 4 MB, on a thread of their
        // own (see `checkpoint`): each checkpoint rewrites the pages it copies and fsyncs the
        // file, and the archive's index pages are rewritten by every batch, so frequent
        // checkpoints copied the same pages again and again. The WAL file is cut back to
        // 64 MiB after it restarts. (SQLite's default page cache of 2 MiB stays: 32 MiB, which
        // holds a whole default batch, saved no measurable time here and took the watcher's
        // peak memory from ~20 MiB past the 64 MiB target.)
        self.conn
            .execute_batch(&format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"))
            .map_err(self.err("cannot set the WAL size limit"))?;
        if let Some(max) = options.max_bytes {
            let page: i64 = self
                .conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(self.err("cannot read the page size"))?;
            let pages = (max as i64 / page.max(512)).max(1);
            self.conn
                .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(self.err("cannot set the size limit"))?;
        }
        Ok(())
    }

    /// Refuses files that are SQLite but not rowtrail archives, and archives from a newer build.
    fn check_identity(&self, may_initialise: bool) -> Result<(), ReaderError> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(self.err("cannot read the schema version"))?;
        let objects: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(self.err("cannot read the schema"))?;
        if version == 0 && objects == 0 {
            if may_initialise {
                return Ok(());
            }
            return Err(ReaderError::NotAnArchive {
                path: self.path.clone(),
                reason: "it is an empty SQLite database, not yet a rowtrail archive".into(),
            });
        }
        let marker: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM archive_info WHERE key = 'format'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or(None);
        if marker.as_deref() != Some(schema::FORMAT_MARKER) {
            return Err(ReaderError::NotAnArchive {
                path: self.path.clone(),
                reason: "it is a SQLite database, but not a rowtrail archive (no archive marker); \
                         point archive.path at a new file or at an existing archive"
                    .into(),
            });
        }
        if version > schema::LATEST {
            return Err(ReaderError::ArchiveTooNew {
                path: self.path.clone(),
                found: version,
                supported: schema::LATEST,
            });
        }
        if version < schema::LATEST && !may_initialise {
            return Err(ReaderError::NotAnArchive {
                path: self.path.clone(),
                reason: format!(
                    "its schema version {version} is older than {}; run `rowtrail read` once to migrate it",
                    schema::LATEST
                ),
            });
        }
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), ReaderError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| ReaderError::archive(&path, "cannot start the migration", e))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| ReaderError::archive(&path, "cannot read the schema version", e))?;
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(|e| {
                ReaderError::archive(&path, format!("migration to version {} failed", i + 1), e)
            })?;
            if i as i64 + 1 == schema::REKEY_VERSION {
                let started = std::time::Instant::now();
                let n = rekey::rekey_all(&tx).map_err(|reason| ReaderError::NotAnArchive {
                    path: path.clone(),
                    reason: format!("migration to version {} (row keys) failed: {reason}", i + 1),
                })?;
                tracing::debug!(
                    archive = %path.display(), changes = n,
                    seconds = started.elapsed().as_secs_f64(),
                    "archive migrated: row keys rewritten"
                );
            }
            if i as i64 + 1 == schema::LEDGER_VERSION {
                ledger::backfill(&tx).map_err(|e| {
                    ReaderError::archive(
                        &path,
                        format!("migration to version {} (ledger) failed", i + 1),
                        e,
                    )
                })?;
            }
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(|e| ReaderError::archive(&path, "cannot record the schema version", e))?;
        }
        tx.commit()
            .map_err(|e| ReaderError::archive(&path, "cannot commit the migration", e))
    }

    /// Checks the file with SQLite's integrity check (`PRAGMA quick_check`) unless this handle
    /// did within [`INTEGRITY_RECHECK`]; a damaged archive stays damaged for this handle. The
    /// mover calls it before the first batch of a pass is archived and removed from staging, so
    /// a damaged file never takes (and loses) changes that are still safe in staging.
    pub fn ensure_intact(&mut self) -> Result<(), ReaderError> {
        let fresh = self
            .integrity
            .as_ref()
            .is_some_and(|(at, r)| r.is_err() || at.elapsed() < INTEGRITY_RECHECK);
        if !fresh {
            let started = std::time::Instant::now();
            let found =
                quick_check(&self.conn).map_err(self.err("cannot run the integrity check"))?;
            tracing::debug!(archive = %self.path.display(), seconds = started.elapsed().as_secs_f64(),
                ok = found.is_ok(), "archive integrity checked");
            self.integrity = Some((std::time::Instant::now(), found));
        }
        match &self.integrity {
            Some((_, Err(detail))) => Err(ReaderError::ArchiveDamaged {
                path: self.path.clone(),
                detail: detail.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// This archive's id (made when it was created, or when it was migrated to schema 7).
    pub fn id(&self) -> Result<String, ReaderError> {
        self.conn
            .query_row(
                "SELECT value FROM archive_info WHERE key = 'archive_id'",
                [],
                |r| r.get(0),
            )
            .map_err(self.err("cannot read the archive's id"))
    }

    /// Lets this handle take changes from a source that records another archive as the one its
    /// changes go to (see [`Archive::check_home`]); the changes that archive took stay there.
    pub fn adopt_sources(&mut self, adopt: bool) {
        self.adopt = adopt;
    }

    /// Refuses to take changes from `source` when the source records that another archive took
    /// its changes before and this one holds none of this incarnation: a new, emptied or wrong
    /// archive would otherwise quietly start a second, partial trail. Records this archive as
    /// the source's otherwise.
    pub fn check_home(&self, source: &mut dyn crate::source::Source) -> Result<(), ReaderError> {
        let mine = self.id()?;
        match source.archive_home()? {
            Some(home) if home == mine => return Ok(()),
            Some(home) if !self.adopt => {
                let holds = self.source_id(&source.info().incarnation)?.is_some();
                return Err(ReaderError::ArchivedElsewhere {
                    location: source.info().location.clone(),
                    archive: self.path.clone(),
                    other: home,
                    holds,
                });
            }
            Some(home) => tracing::warn!(source = %source.info().location, previous = %home,
                archive = %self.path.display(),
                "this archive adopts a source another archive took changes from; those stay there"),
            None => {}
        }
        source.set_archive_home(&mine)
    }

    /// How many changes the archive holds.
    pub fn change_count(&self) -> Result<u64, ReaderError> {
        self.conn
            .query_row("SELECT count(*) FROM changes", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.err("cannot count changes"))
    }
}

/// SQLite's quick integrity check: `Ok` when the file is intact, else its first problems.
fn quick_check(conn: &Connection) -> rusqlite::Result<Result<(), String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let lines: Vec<String> = match stmt.query_map([], |r| r.get(0)) {
        Ok(rows) => match rows.collect() {
            Ok(lines) => lines,
            Err(e) => return corrupt_or(e),
        },
        Err(e) => return corrupt_or(e),
    };
    Ok(if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(lines.join("; "))
    })
}

/// A corrupt file's error as the check's finding; any other error as it is.
fn corrupt_or(e: rusqlite::Error) -> rusqlite::Result<Result<(), String>> {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) =>
        {
            Ok(Err(e.to_string()))
        }
        _ => Err(e),
    }
}

fn create_private(path: &Path) -> Result<(), ReaderError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path).map(drop).map_err(|cause| ReaderError::Io {
        path: path.to_path_buf(),
        context: "cannot create the archive file".into(),
        cause,
    })
}

fn check_magic(path: &Path) -> Result<(), ReaderError> {
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).map_err(|cause| ReaderError::Io {
        path: path.to_path_buf(),
        context: "cannot open the archive file".into(),
        cause,
    })?;
    let n = f.read(&mut head).map_err(|cause| ReaderError::Io {
        path: path.to_path_buf(),
        context: "cannot read the archive file".into(),
        cause,
    })?;
    if n == 0 {
        return Ok(()); // an empty file: SQLite initialises it
    }
    if n < 16 || &head != SQLITE_MAGIC {
        return Err(ReaderError::NotAnArchive {
            path: path.to_path_buf(),
            reason: "it is not a SQLite database (wrong file header); check archive.path, or restore the archive from a backup if it was damaged".into(),
        });
    }
    Ok(())
}
