//! What the scenarios share: the benchmark table (a 200-byte row), fresh source databases with or
//! without capture, staged backlogs, the `rowtrail` binary as a process, and statistics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_watcher::process::WatcherProcess;
use rusqlite::Connection;

/// The benchmark table. A row holds 200 bytes of values: three 8-byte numbers, a 24-byte name
/// and a 152-byte note (see [`fill_sql`]).
pub const TABLE_DDL: &str = "CREATE TABLE items (
    id INTEGER PRIMARY KEY,
    qty INTEGER NOT NULL,
    price REAL NOT NULL,
    name TEXT NOT NULL,
    note TEXT NOT NULL)";

/// The raw size of one row image of `items`: 8 + 8 + 8 + 24 + 152 bytes.
pub const ROW_BYTES: u64 = 200;

/// One set-based INSERT of the rows `?1..=?2` (ids), each [`ROW_BYTES`] bytes of values.
pub fn fill_sql() -> &'static str {
    "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
     INSERT INTO items (id, qty, price, name, note)
     SELECT i, i % 97, i * 0.25, printf('name-%019d', i), printf('%0152d', i) FROM n"
}

/// Opens (creating) a source database the way an application would: WAL, `synchronous=FULL`.
pub fn open_source(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("open {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
    Ok(conn)
}

/// Removes a database and its `-wal`/`-shm` files.
pub fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// A fresh source at `path` with `rows` rows in `items` (filled before capture, so nothing is
/// staged), with capture installed when `captured`.
pub fn fresh_source(path: &Path, rows: i64, captured: bool) -> Result<Connection> {
    remove_db(path);
    let conn = open_source(path)?;
    conn.execute_batch(TABLE_DDL)?;
    if rows > 0 {
        insert_rows(&conn, 1, rows, rows)?;
    }
    if captured {
        install(path)?;
    }
    Ok(conn)
}

/// Installs capture on every table of the database at `path`.
pub fn install(path: &Path) -> Result<()> {
    let tables = SqliteSource::candidate_tables(path, None)?;
    SqliteSource::install(path, &tables, "bench")?;
    Ok(())
}

/// Inserts ids `first..first+count` in transactions of at most `per_tx` rows.
pub fn insert_rows(conn: &Connection, first: i64, count: i64, per_tx: i64) -> Result<()> {
    let mut stmt = conn.prepare(fill_sql())?;
    let mut next = first;
    let end = first + count;
    while next < end {
        let last = (next + per_tx).min(end) - 1;
        conn.execute_batch("BEGIN")?;
        stmt.execute([next, last])?;
        conn.execute_batch("COMMIT")?;
        next = last + 1;
    }
    Ok(())
}

/// Staged backlogs, made once per run and copied for each scenario that drains one.
pub struct Backlogs {
    dir: PathBuf,
    made: Vec<(i64, PathBuf)>,
}

impl Backlogs {
    /// Backlogs kept under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            made: Vec::new(),
        }
    }

    /// A fresh copy, at `to`, of a source holding `n` staged insert images (captured through the
    /// real triggers, 100,000 rows per transaction).
    pub fn copy(&mut self, n: i64, to: &Path) -> Result<()> {
        let master = match self.made.iter().find(|(m, _)| *m == n) {
            Some((_, p)) => p.clone(),
            None => {
                let p = self.dir.join(format!("backlog-{n}.db"));
                let started = Instant::now();
                let conn = fresh_source(&p, 0, true)?;
                insert_rows(&conn, 1, n, 100_000)?;
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                drop(conn);
                eprintln!(
                    "  (staged a backlog of {n} changes through the triggers in {:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                self.made.push((n, p.clone()));
                p
            }
        };
        remove_db(to);
        std::fs::copy(&master, to).with_context(|| format!("copy {}", master.display()))?;
        Ok(())
    }
}

/// Images waiting in the staging tables of the source at `path`.
pub fn staged(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM rowtrail_staging WHERE rowtrail_op IS NOT 'H'",
        [],
        |r| r.get::<_, i64>(0),
    )?)
}

/// The `rowtrail` binary: `explicit`, or the one beside this benchmark in the target folder
/// (built first with the same profile when the benchmark runs under cargo).
pub fn rowtrail_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--rowtrail {}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().context("the benchmark's folder")?;
    let bin = profile_dir.join(format!("rowtrail{}", std::env::consts::EXE_SUFFIX));
    if let (Some(cargo), Some(target)) = (std::env::var_os("CARGO"), profile_dir.parent()) {
        // Under `cargo run`: make sure the binary is built, and current, with the same profile.
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--bin", "rowtrail", "--target-dir"])
            .arg(target);
        if profile != "debug" {
            cmd.args(["--profile", profile]);
        }
        let status = cmd
            .status()
            .context("run cargo build for the rowtrail binary")?;
        if !status.success() {
            bail!("building the rowtrail binary failed");
        }
    }
    if !bin.is_file() {
        bail!(
            "no rowtrail binary at {}: build it with the same profile (`cargo build --release -p rowtrail`) or pass --rowtrail PATH",
            bin.display()
        );
    }
    Ok(bin)
}

/// Writes a config for `source` and `archive` in `dir` (defaults otherwise; the disk alert off),
/// starts the real watcher (its log `dir/watcher.log`) and waits until it answers `status`.
pub fn start_watcher(
    bin: &Path,
    dir: &Path,
    source: &Path,
    archive: &Path,
) -> Result<WatcherProcess> {
    start_watcher_with(bin, dir, source, archive, "")
}

/// [`start_watcher`] with `extra` sections appended to the config (such as `[stream]`).
pub fn start_watcher_with(
    bin: &Path,
    dir: &Path,
    source: &Path,
    archive: &Path,
    extra: &str,
) -> Result<WatcherProcess> {
    let config = dir.join("rowtrail.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nengine = \"sqlite\"\npath = {:?}\n\n[archive]\npath = {:?}\n\n[alerts]\nmin_free_disk_bytes = 0\n{extra}",
            source.display().to_string(),
            archive.display().to_string()
        ),
    )?;
    Ok(WatcherProcess::start(
        bin,
        &config,
        &rowtrail_watcher::default_socket(archive),
        &dir.join("watcher.log"),
        "warn",
        Duration::from_secs(30),
    )?)
}

/// The median of `values` (the lower middle for an even count).
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// The `p` quantile (0..=1) of `values`, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64) * p).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// Runs `f` and returns how long it took, in seconds, with its result.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t = Instant::now();
    let r = f()?;
    Ok((t.elapsed().as_secs_f64(), r))
}
