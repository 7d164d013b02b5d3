//! A real SQLite source with rowtrail's real capture triggers, the real mover and a real
//! archive, in a private folder (on /dev/shm when there is one, so fsyncs are cheap).

#![allow(dead_code)]

use std::path::PathBuf;

use rowtrail_apply::sqlite::SqliteTarget;
use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::sqlite::{value_of, SqliteSource};
use rowtrail_restore::plan::Mode;
use rowtrail_restore::run::{self, Actor, Prepared};
use rowtrail_restore::scope::Scope;
use rowtrail_restore::RestoreError;
use rowtrail_sql::{image, Value};
use rusqlite::Connection;

/// One source and its archive.
pub struct Env {
    _dir: tempfile::TempDir,
    pub source: PathBuf,
    pub archive: PathBuf,
    pub conn: Connection,
}

/// Every table's rows, in key order (tables without a key: sorted canonical rows).
pub type Snapshot = Vec<(String, Vec<Vec<Value>>)>;

impl Env {
    /// A source created with `ddl`, with capture installed on every table.
    pub fn new(ddl: &str) -> Self {
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::Builder::new().prefix("rtundo").tempdir_in(base)
        } else {
            tempfile::Builder::new().prefix("rtundo").tempdir()
        }
        .expect("temp dir");
        let source = dir.path().join("source.db");
        let archive = dir.path().join("trail.db");
        let conn = Connection::open(&source).expect("open source");
        conn.execute_batch(ddl).expect("create schema");
        let tables = SqliteSource::candidate_tables(&source, None).expect("tables");
        SqliteSource::install(&source, &tables, "test").expect("install");
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        Self {
            _dir: dir,
            source,
            archive,
            conn,
        }
    }

    /// Moves everything staged into the archive; returns the archive's last change id.
    pub fn drain(&self) -> i64 {
        let mut src = SqliteSource::open(&self.source).expect("open source");
        let mut arch = Archive::open(&self.archive, &ArchiveOptions::default()).expect("archive");
        mover::drain(&mut src, &mut arch, 500).expect("drain");
        arch.last_id().unwrap()
    }

    /// The archive, open for writing (journal).
    pub fn archive(&self) -> Archive {
        Archive::open(&self.archive, &ArchiveOptions::default()).expect("archive")
    }

    /// Every user table's rows.
    pub fn snapshot(&self) -> Snapshot {
        let names: Vec<(String, bool)> = self
            .conn
            .prepare(
                "SELECT name, EXISTS (SELECT 1 FROM pragma_table_info(name) WHERE pk > 0) FROM sqlite_schema \
                 WHERE type = 'table' AND name NOT LIKE 'rowtrail%' AND name NOT LIKE 'sqlite%' ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        names
            .into_iter()
            .map(|(name, keyed)| {
                let q = format!("SELECT * FROM \"{}\"", name.replace('"', "\"\""));
                let mut stmt = self.conn.prepare(&q).unwrap();
                let n = stmt.column_count();
                let mut rows: Vec<Vec<Value>> = stmt
                    .query_map([], |r| {
                        (0..n).map(|i| Ok(value_of(r.get_ref(i)?))).collect()
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let _ = keyed;
                rows.sort_by_key(|r| image::encode(r));
                (name, rows)
            })
            .collect()
    }

    /// A target of its own on the source, for planning.
    pub fn target(&self) -> SqliteTarget {
        SqliteTarget::open(&self.source).expect("open the source as a target")
    }

    /// Plans an undo of `scope`.
    pub fn prepare(&self, scope: &Scope, mode: Mode) -> Result<Prepared, RestoreError> {
        let archive = self.archive();
        run::prepare_undo(&archive, &self.target(), scope, mode)
    }

    /// The plan's script, as `rowtrail undo --script-only` prints it.
    pub fn script(&self, prepared: &Prepared) -> String {
        let comments = prepared.plan.comments();
        let job = prepared.plan.job(&comments, &prepared.fks, None);
        rowtrail_apply::Target::script(&self.target(), &job, "test").expect("render the script")
    }

    /// Runs `f` with the test's own connection as the apply target (so what an apply does to
    /// the connection's settings is seen on it afterwards).
    fn with_target<T>(&mut self, f: impl FnOnce(&mut SqliteTarget) -> T) -> T {
        let conn = std::mem::replace(&mut self.conn, Connection::open_in_memory().unwrap());
        let mut target = SqliteTarget::from_connection(conn);
        let out = f(&mut target);
        self.conn = target.into_connection();
        out
    }

    /// Plans and applies an undo of `scope`; returns the run id (None: nothing to undo).
    pub fn undo(&mut self, scope: &Scope, mode: Mode) -> Result<Option<i64>, RestoreError> {
        let archive = self.archive();
        self.with_target(|target| {
            let prepared = run::prepare_undo(&archive, target, scope, mode)?;
            let done = run::execute(&archive, target, &prepared, &actor())?;
            Ok(done.map(|(r, _)| r.id))
        })
    }

    /// Re-applies undo run `id`; returns the redo run's id.
    pub fn redo(&mut self, id: i64, mode: Mode) -> Result<Option<i64>, RestoreError> {
        let archive = self.archive();
        self.with_target(|target| {
            let prepared = run::prepare_redo(&archive, target, id, mode)?;
            let done = run::execute(&archive, target, &prepared, &actor())?;
            Ok(done.map(|(r, _)| r.id))
        })
    }
}

/// The actor tests undo as.
pub fn actor() -> Actor {
    Actor {
        login: "rowtrail-undo".into(),
        host: Some("test".into()),
    }
}

/// Two snapshots compared value for value and type for type (floats by bits).
pub fn same(a: &Snapshot, b: &Snapshot) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((n1, r1), (n2, r2))| {
            n1 == n2
                && r1.len() == r2.len()
                && r1
                    .iter()
                    .zip(r2)
                    .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.same(q)))
        })
}

/// Where two snapshots first differ, for failure messages (table names and counts only).
pub fn diff(a: &Snapshot, b: &Snapshot) -> String {
    for ((n1, r1), (_, r2)) in a.iter().zip(b) {
        if r1.len() != r2.len() {
            return format!("table {n1}: {} rows vs {} rows", r1.len(), r2.len());
        }
        for (i, (x, y)) in r1.iter().zip(r2).enumerate() {
            if !(x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.same(q))) {
                return format!("table {n1}: row {i} differs: {x:?} vs {y:?}");
            }
        }
    }
    "no difference".into()
}

/// A scope that undoes everything after archive change `id`.
pub fn after(id: i64) -> Scope {
    Scope {
        after_change: Some(id),
        ..Scope::default()
    }
}
