//! Connections to a SQLite source: opened read-write, with a busy handler that waits for the
//! application's locks in short even polls, and the one way engine errors are wrapped.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::ReaderError;

/// How long a source statement waits for another connection's lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Time between two tries for a lock the application holds.
const BUSY_POLL: Duration = Duration::from_micros(200);

/// Waits for the application's locks with short, even polls. SQLite's default handler sleeps up
/// to 100 ms between tries, and against a writer that commits back to back it keeps missing the
/// short gaps between transactions, so the staging delete could starve for as long as the
/// application writes.
fn poll_busy(attempt: i32) -> bool {
    let waited = BUSY_POLL.saturating_mul(u32::try_from(attempt).unwrap_or(u32::MAX));
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

/// Opens the SQLite source at `path` read-write (it must exist and be a database), with the
/// busy handler that waits for the application's locks.
pub fn open(path: &Path) -> Result<Connection, ReaderError> {
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
    .map_err(|cause| ReaderError::Source {
        location: location.clone(),
        context: "cannot open".into(),
        cause,
    })?;
    conn.busy_handler(Some(poll_busy))
        .map_err(|cause| ReaderError::Source {
            location: location.clone(),
            context: "cannot set the busy handler".into(),
            cause,
        })?;
    // Fail early and clearly on a file that is not a database.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|cause| ReaderError::Source {
        location,
        context: "cannot read the schema (is it a SQLite database?)".into(),
        cause,
    })?;
    Ok(conn)
}

/// Wraps an engine error with where and what; allocates only when there is an error.
pub(crate) fn err<'a, C: Into<String> + 'a>(
    location: &'a str,
    context: C,
) -> impl FnOnce(rusqlite::Error) -> ReaderError + 'a {
    move |cause| ReaderError::Source {
        location: location.to_string(),
        context: context.into(),
        cause,
    }
}
