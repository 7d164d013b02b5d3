//! Connections to a SQLite source: opened read-write, with a busy handler that waits for the
//! application's locks in short even polls, and the one way engine errors are wrapped (a lock
//! another process holds is reported as such, with who holds it where that is known).

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::ReaderError;

/// How long a source statement waits for another connection's lock, in time on the clock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a heartbeat's statement waits: it only looks, and must report a blocked source
/// promptly rather than wait with it.
pub const HEARTBEAT_BUSY_TIMEOUT: Duration = Duration::from_millis(750);

/// Time between two tries for a lock the application holds.
const BUSY_POLL: Duration = Duration::from_micros(200);

thread_local! {
    /// When the wait the busy handler is in began (SQLite calls it with attempt 0 first).
    static WAIT_STARTED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Whether to try again after `attempt` failed tries, given a wait of at most `budget`.
fn wait_more(attempt: i32, budget: Duration) -> bool {
    let now = Instant::now();
    let started = WAIT_STARTED.with(|w| match w.get() {
        Some(s) if attempt > 0 => s,
        _ => {
            w.set(Some(now));
            now
        }
    });
    if now.duration_since(started) >= budget {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

/// Waits for the application's locks with short, even polls, for [`BUSY_TIMEOUT`]. SQLite's
/// default handler sleeps up to 100 ms between tries, and against a writer that commits back to
/// back it keeps missing the short gaps between transactions, so the staging delete could
/// starve for as long as the application writes.
fn poll_busy(attempt: i32) -> bool {
    wait_more(attempt, BUSY_TIMEOUT)
}

/// [`poll_busy`] for [`HEARTBEAT_BUSY_TIMEOUT`].
fn poll_busy_briefly(attempt: i32) -> bool {
    wait_more(attempt, HEARTBEAT_BUSY_TIMEOUT)
}

/// Opens the SQLite source at `path` read-write (it must exist and be a database), with the
/// busy handler that waits for the application's locks.
pub fn open(path: &Path) -> Result<Connection, ReaderError> {
    open_waiting(path, poll_busy)
}

/// [`open`] for a heartbeat: each statement waits at most [`HEARTBEAT_BUSY_TIMEOUT`] for a lock.
pub fn open_for_heartbeat(path: &Path) -> Result<Connection, ReaderError> {
    open_waiting(path, poll_busy_briefly)
}

fn open_waiting(path: &Path, busy: fn(i32) -> bool) -> Result<Connection, ReaderError> {
    let location = path.display().to_string();
    if !path.exists() {
        return Err(ReaderError::Source {
            location,
            context: "the source database file does not exist".into(),
            cause: rusqlite::Error::InvalidPath(path.to_path_buf()),
        });
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(err(&location, "cannot open"))?;
    conn.busy_handler(Some(busy))
        .map_err(err(&location, "cannot set the busy handler"))?;
    // Fail early and clearly on a file that is not a database (or that is locked).
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|cause| {
        let context = if is_busy(&cause) {
            "cannot read the schema"
        } else {
            "cannot read the schema (is it a SQLite database?)"
        };
        source_error(&location, context.into(), cause)
    })?;
    Ok(conn)
}

/// [`open`] for the reader, whose only writes are staging deletes: on a WAL source its commits
/// skip the fsync (`synchronous = NORMAL`, this connection only), so it holds the write lock for
/// microseconds instead of a disk flush. A delete lost to a power failure only means its images
/// are copied again, and the archive keeps them once. A source in rollback-journal mode keeps
/// its setting: there, a commit without its syncs could damage the file.
pub fn open_for_reader(path: &Path) -> Result<Connection, ReaderError> {
    let conn = open(path)?;
    let location = path.display().to_string();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(err(&location, "cannot read the journal mode"))?;
    if mode.eq_ignore_ascii_case("wal") {
        conn.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(err(&location, "cannot set synchronous = NORMAL"))?;
    }
    Ok(conn)
}

/// Whether `e` says another connection holds a lock this one needed.
pub fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// An engine error on the source at `location`, as the reader reports it: a lock another
/// process held past the wait becomes [`ReaderError::SourceLocked`], naming who holds what
/// where that can be known.
pub(crate) fn source_error(location: &str, context: String, cause: rusqlite::Error) -> ReaderError {
    if is_busy(&cause) {
        return ReaderError::SourceLocked {
            location: location.to_string(),
            context,
            holders: super::holders::describe(Path::new(location)),
            cause: Box::new(cause),
        };
    }
    ReaderError::Source {
        location: location.to_string(),
        context,
        cause,
    }
}

/// Wraps an engine error with where and what; allocates only when there is an error.
pub(crate) fn err<'a, C: Into<String> + 'a>(
    location: &'a str,
    context: C,
) -> impl FnOnce(rusqlite::Error) -> ReaderError + 'a {
    move |cause| source_error(location, context.into(), cause)
}
