//! Who holds a SQLite database's locks: the other processes' POSIX locks on the database file
//! and its `-shm` file, as Linux lists them in `/proc/locks`, read as SQLite's lock protocol
//! gives them meaning. Elsewhere nothing is known, and messages say only that it is locked.
//!
//! SQLite's unix VFS locks bytes of the database file (rollback journal: `PENDING` at 2³⁰,
//! `RESERVED` after it, then a 510-byte `SHARED` range; an exclusive lock is a write lock on that
//! range) and, in WAL mode, bytes of the `-shm` file from offset 120 (the write lock, the
//! checkpointer, recovery, then the readers' marks).

use std::path::Path;

/// What one lock means, strongest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Hold {
    /// It reads (a shared lock, or a WAL read mark).
    Reads,
    /// It checkpoints the WAL.
    Checkpoints,
    /// It has a write transaction open (RESERVED, or the WAL write lock).
    Writes,
    /// It waits for readers to leave so it can commit (PENDING).
    Commits,
    /// It holds the whole database (EXCLUSIVE: committing in rollback mode, `BEGIN EXCLUSIVE`,
    /// or exclusive locking mode).
    Exclusive,
}

impl Hold {
    fn words(self) -> &'static str {
        match self {
            Hold::Reads => "has a read transaction open",
            Hold::Checkpoints => "is checkpointing the WAL",
            Hold::Writes => "holds the write lock (a write transaction is open)",
            Hold::Commits => "is committing and waits for readers to finish",
            Hold::Exclusive => {
                "holds the database exclusively (a commit in progress, or BEGIN EXCLUSIVE)"
            }
        }
    }
}

const PENDING: u64 = 0x4000_0000;
const RESERVED: u64 = PENDING + 1;
const SHARED_FIRST: u64 = PENDING + 2;
const SHARED_LAST: u64 = SHARED_FIRST + 510 - 1;
const SHM_WRITE: u64 = 120;
const SHM_CHECKPOINT: u64 = 121;
const SHM_RECOVER: u64 = 122;
const SHM_READ_LAST: u64 = 127;

/// One line of `/proc/locks` that matters: pid, write (else read), file id, byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lock {
    pid: i64,
    write: bool,
    inode: u64,
    start: u64,
    end: u64,
}

/// Parses `/proc/locks` text: `1: POSIX  ADVISORY  WRITE 4711 08:02:131 1073741825 1073741825`
/// (`EOF` for an open end; blocked requests, marked `->`, are skipped).
fn parse(text: &str) -> Vec<Lock> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // SQLite's unix VFS takes POSIX locks (open-file-description locks where built so).
            if f.len() < 8 || !matches!(f[1], "POSIX" | "OFDLCK") {
                return None;
            }
            let inode = f[5].rsplit(':').next()?.parse().ok()?;
            let end = if f[7] == "EOF" {
                u64::MAX
            } else {
                f[7].parse().ok()?
            };
            Some(Lock {
                pid: f[4].parse().ok()?,
                write: f[3] == "WRITE",
                inode,
                start: f[6].parse().ok()?,
                end,
            })
        })
        .collect()
}

fn overlaps(l: &Lock, lo: u64, hi: u64) -> bool {
    l.start <= hi && l.end >= lo
}

/// What a lock on the database file means.
fn on_database(l: &Lock) -> Option<Hold> {
    if overlaps(l, SHARED_FIRST, SHARED_LAST) {
        Some(if l.write {
            Hold::Exclusive
        } else {
            Hold::Reads
        })
    } else if overlaps(l, RESERVED, RESERVED) && l.write {
        Some(Hold::Writes)
    } else if overlaps(l, PENDING, PENDING) && l.write {
        Some(Hold::Commits)
    } else {
        None
    }
}

/// What a lock on the `-shm` file means (WAL mode).
fn on_shm(l: &Lock) -> Option<Hold> {
    if overlaps(l, SHM_WRITE, SHM_WRITE) && l.write {
        Some(Hold::Writes)
    } else if overlaps(l, SHM_CHECKPOINT, SHM_RECOVER) && l.write {
        Some(Hold::Checkpoints)
    } else if overlaps(l, SHM_RECOVER + 1, SHM_READ_LAST) {
        Some(Hold::Reads)
    } else {
        None
    }
}

/// Each other process's strongest hold, from `locks` on the files with inodes `db` and `shm`.
fn holds(locks: &[Lock], db: Option<u64>, shm: Option<u64>, me: i64) -> Vec<(i64, Hold)> {
    let mut out: Vec<(i64, Hold)> = Vec::new();
    for l in locks.iter().filter(|l| l.pid != me && l.pid > 0) {
        let hold = if Some(l.inode) == db {
            on_database(l)
        } else if Some(l.inode) == shm {
            on_shm(l)
        } else {
            None
        };
        let Some(hold) = hold else { continue };
        match out.iter_mut().find(|(p, _)| *p == l.pid) {
            Some((_, h)) => *h = (*h).max(hold),
            None => out.push((l.pid, hold)),
        }
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[cfg(unix)]
fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

#[cfg(not(unix))]
fn inode(_path: &Path) -> Option<u64> {
    None
}

/// Who holds locks on the SQLite database at `path`, in words (`process 4711 (sqlite3) holds
/// the write lock …`), strongest first; `None` when nothing is known (not Linux, or no other
/// process holds a lock rowtrail can see).
pub(crate) fn describe(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    let found = holds(
        &parse(&text),
        inode(path),
        inode(Path::new(&shm)),
        i64::from(std::process::id()),
    );
    if found.is_empty() {
        return None;
    }
    let said: Vec<String> = found
        .iter()
        .map(|(pid, hold)| {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|n| format!(" ({})", n.trim()))
                .unwrap_or_default();
            format!("process {pid}{name} {}", hold.words())
        })
        .collect();
    Some(said.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCKS: &str = "\
1: POSIX  ADVISORY  WRITE 4711 08:02:131 1073741825 1073741825
2: POSIX  ADVISORY  READ  4711 08:02:131 1073741826 1073742335
3: POSIX  ADVISORY  READ  99 08:02:131 1073741826 1073742335
4: POSIX  ADVISORY  WRITE 55 00:2e:900 120 120
5: POSIX  ADVISORY  READ  56 00:2e:900 123 123
6: FLOCK  ADVISORY  WRITE 77 08:02:131 0 EOF
7: POSIX  ADVISORY  WRITE 100 08:02:131 1073741826 1073742335
7: -> POSIX  ADVISORY  WRITE 101 08:02:131 1073741826 1073742335
";

    #[test]
    fn locks_read_as_sqlite_means_them() {
        let locks = parse(LOCKS);
        assert_eq!(
            locks.len(),
            6,
            "a blocked request is not a lock held; flock is not SQLite's"
        );
        let found = holds(&locks, Some(131), Some(900), 99);
        assert_eq!(
            found,
            vec![
                (100, Hold::Exclusive),
                (55, Hold::Writes),
                (4711, Hold::Writes),
                (56, Hold::Reads),
            ],
            "strongest first (then by pid), own process left out, unrelated locks ignored"
        );
    }

    #[test]
    fn a_database_nobody_else_locks_has_no_holders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        // Our own locks are not "someone else's".
        assert_eq!(describe(&path), None);
    }
}
