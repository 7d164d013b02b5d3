//! `rowtrail demo`: the whole flow on SQLite, in one command and a few seconds.
//!
//! It makes a folder with a small source database (departments and staff, with a foreign key),
//! installs capture, starts the real watcher as a child process, runs a scripted workload as
//! three named users, and shows each change as it reaches the archive with its commit→archive
//! latency; then one row's history, the replica, a rebuild as of an earlier moment, a planned
//! switchover to the replica and back, and the archive's verification.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rowtrail_reader::archive::{Archive, ArchiveOptions, ChangeQuery};
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_restore::history;
use rowtrail_sql::{Ident, TableName};
use rowtrail_watcher::process::WatcherProcess;
use rusqlite::Connection;

/// Arguments of `rowtrail demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder to create the demo in (re-created if it holds an earlier demo).
    #[arg(long, default_value = "rowtrail-demo", value_name = "DIR")]
    pub dir: PathBuf,
    /// Quick single-row commits to measure latency on, after the scripted part.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub latency_commits: usize,
}

const MARKER: &str = ".rowtrail-demo";
const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA foreign_keys = ON;
    CREATE TABLE departments (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE);
    CREATE TABLE staff (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        dept_id INTEGER NOT NULL REFERENCES departments (id),
        salary NUMERIC NOT NULL,
        email TEXT UNIQUE);";

/// A person the workload acts as: login, host, application, client address (labels only).
struct User {
    login: &'static str,
    host: &'static str,
    app: &'static str,
    ip: &'static str,
}

const ALICE: User = User {
    login: "alice",
    host: "hr-laptop-7",
    app: "hr-portal",
    ip: "192.0.2.10",
};
const BOB: User = User {
    login: "bob",
    host: "payroll-srv",
    app: "payroll-batch",
    ip: "192.0.2.22",
};
const CAROL: User = User {
    login: "carol",
    host: "ops-desk",
    app: "sqlite3",
    ip: "192.0.2.31",
};

const SCRIPT: &[(&User, &str, &str)] = &[
    (&ALICE, "opens two departments", "INSERT INTO departments (id, name) VALUES (1, 'Engineering'), (2, 'Sales')"),
    (&ALICE, "hires Ada and Linus", "INSERT INTO staff VALUES (1, 'Ada Lovelace', 1, 5200, 'ada@example.com'), (2, 'Linus T', 1, 4800, NULL)"),
    (&BOB, "hires Grace", "INSERT INTO staff VALUES (3, 'Grace Hopper', 2, 5100, 'grace@example.com')"),
    (&CAROL, "gives Engineering a 10% raise", "UPDATE staff SET salary = salary + salary / 10 WHERE dept_id = 1"),
    (&BOB, "moves Grace to Engineering", "UPDATE staff SET dept_id = 1 WHERE id = 3"),
    (&ALICE, "lets Linus go", "DELETE FROM staff WHERE id = 2"),
    (&CAROL, "renames Sales (upsert)", "INSERT INTO departments (id, name) VALUES (2, 'Sales & Partners') ON CONFLICT (id) DO UPDATE SET name = excluded.name"),
    (&BOB, "re-keys Ada's record", "UPDATE staff SET id = 10 WHERE id = 1"),
    (&ALICE, "corrects Ada's email", "UPDATE staff SET email = 'ada.lovelace@example.com' WHERE id = 10"),
];

/// Runs the demo.
pub fn run(args: &Args) -> Result<ExitCode> {
    let started = Instant::now();
    let dir = prepare_dir(&args.dir)?;
    let source = dir.join("source.db");
    let archive = dir.join("trail.db");
    let config = dir.join("rowtrail.toml");
    let standby = dir.join("standby.db");
    std::fs::write(
        &config,
        format!(
            "{}\n# The watcher keeps this replica current.\n[[replica]]\npath = \"standby.db\"\n",
            super::init::sqlite_config("source.db", "trail.db")
        ),
    )?;
    Connection::open(&source)?.execute_batch(SCHEMA)?;
    let tables = SqliteSource::candidate_tables(&source, None)?;
    SqliteSource::install(&source, &tables, super::sql::VERSION)?;
    {
        // What `sql install` does next: a baseline, then a replica built from it.
        let mut src = SqliteSource::open(&source)?;
        let mut trail = Archive::open(&archive, &ArchiveOptions::default())?;
        rowtrail_standby::baseline::take(
            &mut src,
            &mut trail,
            None,
            &mut rowtrail_standby::baseline::Silent,
        )?;
        rowtrail_standby::replica::create(
            &standby,
            &trail,
            &rowtrail_standby::replica::CreateOptions::default(),
            &mut |_, _| {},
        )?;
    }
    outln!("rowtrail demo in {}/", dir.display());
    outln!("  source.db    departments + staff (foreign key), capture installed on both tables");
    outln!("  trail.db     the trace archive, written by the watcher (a baseline of both tables in it)");
    outln!("  standby.db   a replica built from the baseline, kept current by the watcher");

    let socket = rowtrail_watcher::default_socket(&archive);
    let mut watcher = WatcherProcess::start(
        &std::env::current_exe()?,
        &config,
        &socket,
        &dir.join("watcher.log"),
        "info",
        Duration::from_secs(10),
    )
    .context("the watcher did not start; see watcher.log in the demo folder")?;
    outln!(
        "  watcher      running as pid {} (socket {})\n",
        watcher.pid(),
        socket.display()
    );

    let conn = Connection::open(&source)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    let reader = Archive::open_read_only(&archive)?;
    let mut seen = 0i64;
    let mut latencies = Vec::new();
    for (user, what, sql) in SCRIPT {
        let committed = run_as(&conn, user, sql)?;
        let (changes, latency) = wait_archived(&reader, &mut seen, committed, &mut watcher)?;
        latencies.push(latency);
        outln!(
            "{:<6} {what}  — archived {:.1} ms after commit",
            user.login,
            ms(latency)
        );
        for c in &changes {
            outln!(
                "         #{:<3} {:<6} {:<11} {}",
                c.id,
                c.op.word(),
                c.table.name.name.as_str(),
                super::history::describe(c, false).join(", ")
            );
        }
    }

    // The state now, to rebuild it later from the archive.
    std::thread::sleep(Duration::from_millis(5));
    let noted_at = rowtrail_standby::replica::archive_time(jiff::Timestamp::now());
    let noted_total: f64 = conn.query_row("SELECT total(salary) FROM staff", [], |r| r.get(0))?;
    std::thread::sleep(Duration::from_millis(5));

    // Many quick commits: the latency figures.
    for i in 0..args.latency_commits {
        let sql = format!(
            "UPDATE staff SET salary = salary + 1 WHERE id = {}",
            if i % 2 == 0 { 3 } else { 10 }
        );
        let committed = run_as(&conn, &BOB, &sql)?;
        let (_, latency) = wait_archived(&reader, &mut seen, committed, &mut watcher)?;
        latencies.push(latency);
        std::thread::sleep(Duration::from_millis(2));
    }
    latencies.sort();
    let pct = |p: f64| ms(latencies[((latencies.len() as f64 - 1.0) * p).round() as usize]);
    outln!(
        "\ncommit→archive latency over {} commits: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );

    let ada = TableName::bare(Ident::new("staff")?);
    outln!("\nhistory of staff id 10 (Ada, id 1 before the re-key), salary raises included:");
    let hist = history::row_history(&reader, &ada, &["10".into()])?;
    let total = hist.len();
    let shown: Vec<_> = hist.into_iter().take(6).collect();
    super::history::print_history(&shown, false)?;
    if total > shown.len() {
        outln!(
            "         … ({} more changes not shown)",
            total - shown.len()
        );
    }

    // The replica catches up: the watcher applies each pass's changes to it.
    let want: f64 = conn.query_row("SELECT total(salary) FROM staff", [], |r| r.get(0))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: f64 = Connection::open(&standby)?
            .query_row("SELECT total(salary) FROM staff", [], |r| r.get(0))
            .unwrap_or(f64::NAN);
        if got == want {
            break;
        }
        if Instant::now() > deadline {
            bail!("the replica did not catch up within 20 s; see watcher.log in the demo folder");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    watcher.stop(Duration::from_secs(10))?;
    let replica = rowtrail_standby::replica::Replica::open(&standby)?;
    let status = replica.status(&reader)?;
    outln!(
        "\nreplica standby.db: at change {}, {} change(s) behind; staff salaries total {want}, as on the source",
        status.position.change_id,
        status.behind
    );
    let cmp =
        rowtrail_standby::compare::compare(&replica, &mut SqliteSource::open(&source)?, &reader)?;
    outln!(
        "compare standby.db with source.db: {}",
        if cmp.differs() {
            "they DIFFER"
        } else {
            "equal, row for row"
        }
    );
    let then_path = dir.join("as-of.db");
    rowtrail_standby::replica::create(
        &then_path,
        &reader,
        &rowtrail_standby::replica::CreateOptions {
            as_of: Some(rowtrail_standby::as_of::AsOf::Time(noted_at.clone())),
            ..Default::default()
        },
        &mut |_, _| {},
    )?;
    let then_total: f64 =
        Connection::open(&then_path)?
            .query_row("SELECT total(salary) FROM staff", [], |r| r.get(0))?;
    outln!(
        "restore --as-of {noted_at} → as-of.db: staff salaries total {then_total} (it was {noted_total} then)",
    );
    if then_total != noted_total || cmp.differs() {
        bail!("the standby does not match the source; see the demo folder");
    }
    drop(replica);
    takeover(&source, &standby, &archive)?;
    let report = reader.verify(None)?;
    if !report.ok() {
        bail!("archive verification failed: {:?}", report.problems);
    }
    let staged: u64 =
        rowtrail_reader::source::Source::staged_count(&mut SqliteSource::open(&source)?)?;
    outln!(
        "\narchive verified: {} changes, hash chain intact, staging empty ({} left)",
        report.changes,
        staged
    );
    if let Some(d) = &report.digest {
        outln!("digest (keep it elsewhere; `rowtrail verify --against` checks it): {d}");
    }
    outln!(
        "\ndone in {:.1} s. Explore: cd {} && rowtrail history --table staff --key 10",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A planned switchover and back: the replica takes over (the primary still answers, so it is
/// forced: fenced first), takes a write, and the primary is handed its role back.
fn takeover(source: &Path, standby: &Path, archive: &Path) -> Result<()> {
    use rowtrail_reader::source::SourceSpec;
    use rowtrail_takeover::{failover, handback};
    let _lock = rowtrail_reader::lock::ArchiveLock::acquire(archive)?;
    let mut trail = Archive::open(archive, &ArchiveOptions::default())?;
    let sqlite = |path: &Path| SourceSpec::Sqlite {
        path: path.to_path_buf(),
        capture_new_tables: false,
    };
    let started = Instant::now();
    let out = failover::apply(
        &mut trail,
        &failover::Request {
            primary: sqlite(source),
            address: rowtrail_takeover::probe::Address::None,
            replicas: vec![standby.to_path_buf()],
            to: None,
            force: true,
            automatic: false,
            timeouts: rowtrail_takeover::probe::Timeouts::default(),
            last_seen_us: None,
            batch: rowtrail_reader::mover::DEFAULT_BATCH,
            version: super::sql::VERSION.into(),
        },
        &mut |_| {},
    )?;
    outln!(
        "
failover {} (a planned switchover: forced, the primary fenced first): standby.db is the primary after {:.0} ms",
        out.takeover.id,
        ms(started.elapsed())
    );
    let fenced = Connection::open(source)?
        .execute_batch("UPDATE staff SET salary = salary + 1 WHERE id = 3")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    if !fenced.contains("fenced") {
        bail!("the old primary took a write after the failover");
    }
    outln!("  a write to source.db now fails: {fenced}");
    Connection::open(standby)?
        .execute_batch("UPDATE staff SET salary = salary + 100 WHERE id = 3")?;
    rowtrail_reader::mover::drain(
        &mut SqliteSource::open(standby)?,
        &mut trail,
        rowtrail_reader::mover::DEFAULT_BATCH,
    )?;
    outln!("  a raise written on standby.db is archived like any other change");
    let back = handback::apply(
        &mut trail,
        &handback::Request {
            primary: sqlite(standby),
            to: source.to_path_buf(),
            conflicts: None,
            batch: rowtrail_reader::mover::DEFAULT_BATCH,
            version: super::sql::VERSION.into(),
        },
        &mut |_| {},
    )?;
    let raise: f64 =
        Connection::open(source)?
            .query_row("SELECT salary FROM staff WHERE id = 3", [], |r| r.get(0))?;
    outln!(
        "handback {}: {} change(s) given back to source.db (staff 3 earns {raise} there now), which is the primary again; standby.db is a replica again",
        back.takeover.id,
        back.applied
    );
    if !back.level || back.demoted.is_err() {
        bail!("the handback left the two copies apart; see the demo folder");
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        if !dir.join(MARKER).exists() {
            bail!(
                "{} exists and is not an earlier rowtrail demo; pass --dir to choose another folder",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "rowtrail demo folder; `rowtrail demo` may re-create it\n",
    )?;
    Ok(std::fs::canonicalize(dir)?)
}

/// Runs `sql` as `user` in one transaction, labelled through rowtrail's context row.
fn run_as(conn: &Connection, user: &User, sql: &str) -> Result<Instant> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| -> rusqlite::Result<()> {
        conn.execute(
            "INSERT INTO rowtrail_context (id, login, host, app, client_ip) VALUES (1, ?1, ?2, ?3, ?4)",
            [user.login, user.host, user.app, user.ip],
        )?;
        conn.execute_batch(sql)?;
        conn.execute("DELETE FROM rowtrail_context", [])?;
        Ok(())
    })();
    if let Err(e) = result {
        conn.execute_batch("ROLLBACK")?;
        return Err(e.into());
    }
    conn.execute_batch("COMMIT")?;
    Ok(Instant::now())
}

/// Waits until the archive shows changes beyond `seen`; returns them and the latency.
fn wait_archived(
    reader: &Archive,
    seen: &mut i64,
    committed: Instant,
    watcher: &mut WatcherProcess,
) -> Result<(Vec<rowtrail_reader::archive::ArchivedChange>, Duration)> {
    let deadline = committed + Duration::from_secs(10);
    loop {
        let max = reader.last_id()?;
        if max > *seen {
            let latency = committed.elapsed();
            let changes = reader.changes(&ChangeQuery {
                after_id: Some(*seen),
                ..ChangeQuery::default()
            })?;
            *seen = max;
            return Ok((changes, latency));
        }
        if Instant::now() > deadline {
            watcher.check_alive()?;
            bail!("the watcher did not archive a commit within 10 s; see watcher.log in the demo folder");
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}
