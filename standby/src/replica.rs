//! A replica: a SQLite file holding the source's captured tables, built from a baseline and
//! kept current from the archive.
//!
//! The file holds, beside the tables, `rowtrail_replica` (which archive and source it follows
//! and its position: the archive change id it has applied up to) and `rowtrail_replica_tables`
//! (each table's archived definition and the seq of the baseline it was loaded from). Every
//! step forward is one replica transaction that writes the rows and the new position together,
//! so a kill leaves the replica at its previous position, never between. Changes are applied
//! up to a cut of the archive ([`rowtrail_reader::archive::Cut`]), where every transaction of
//! the source is complete; between two cuts a large backlog is applied in chunks that end on
//! transaction boundaries, and the replica says it is consistent only once it stands on a cut.
//!
//! A rewind applies the same changes backwards, newest first, down to the cut as of an
//! earlier time; a rebuild ([`create`] with `as_of`) starts from the newest baseline taken by
//! then and applies forward to the cut as of that time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rowtrail_reader::archive::{Archive, ArchivedChange, ChangeQuery, Cut};
use rowtrail_reader::failpoint;
use rowtrail_sql::{Table, Value};
use rusqlite::{params, Connection};

use crate::as_of::{self, AsOf};
use crate::steps::{self, Direction};
use crate::tables::{create_sql, replica_form};
use crate::trail;
use crate::StandbyError;

/// The replica format this build writes and reads.
pub const FORMAT: i64 = 1;

/// Changes applied per replica transaction during a long catch-up (extended to the end of the
/// source transaction in hand).
pub const CHUNK: usize = 10_000;

const META: &str = "rowtrail_replica";
const TABLES: &str = "rowtrail_replica_tables";
/// Records of whoever feeds the replica ([`Replica::record`]) are kept under this prefix.
const RECORD_PREFIX: &str = "fed.";

/// One table of a replica.
#[derive(Debug, Clone)]
pub struct ReplicaTable {
    /// Its definition as the archive records it (changes must carry the same one).
    pub definition: Arc<Table>,
    /// The form the replica holds it in.
    form: Table,
    /// The seq of the baseline it was loaded from: its changes at or below it are in the rows.
    pub baseline_seq: i64,
    /// Its trail table, when the replica keeps the trail as plain tables ([`crate::trail`]).
    trail: Option<Table>,
}

impl ReplicaTable {
    /// The form the replica holds it in (its columns plain, the key kept).
    pub fn form(&self) -> &Table {
        &self.form
    }
}

/// Where a replica stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The archive change id applied up to.
    pub change_id: i64,
    /// The source seq of that point.
    pub seq: i64,
    /// The source time of the newest change applied (archive text form), if any.
    pub source_at: Option<String>,
    /// Whether the position is a cut at or above every table's baseline: the tables then hold
    /// exactly the source's state at one moment.
    pub consistent: bool,
}

/// How far [`Replica::apply`] goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Until {
    /// The newest cut.
    Latest,
    /// The newest cut whose changes are all at least this old (a delayed standby).
    Delay(Duration),
    /// The cut as of this moment.
    AsOf(AsOf),
}

/// What one [`Replica::apply`] or [`Replica::rewind`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// Changes written to the replica.
    pub applied: u64,
    /// Changes passed over (already in a table's baseline).
    pub skipped: u64,
    /// The replica's position afterwards.
    pub position: Position,
}

/// What [`Replica::status`] says.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStatus {
    /// The file.
    pub path: PathBuf,
    /// The source incarnation it follows.
    pub incarnation: String,
    /// Where it stands.
    pub position: Position,
    /// The archive's newest cut of that source.
    pub archive_cut: Option<Cut>,
    /// Archived changes of the source not yet applied.
    pub behind: u64,
    /// How old the oldest unapplied change is, in seconds (0 when none waits).
    pub lag_seconds: f64,
    /// Whether applying is paused.
    pub paused: bool,
    /// The tables and their row counts.
    pub tables: Vec<(String, u64)>,
}

/// An open replica.
pub struct Replica {
    conn: Connection,
    path: PathBuf,
    archive_id: String,
    incarnation: String,
    engine: String,
    tables: Vec<ReplicaTable>,
    position: Position,
    paused: bool,
    /// The takeover that made this copy the primary, once one did: it is no replica then.
    promoted: Option<i64>,
    /// Tables whose next archived definition is adopted if it has the same shape (after the
    /// replica crossed to a successor incarnation, whose capture read the tables from the copy
    /// that took over, with the replica's plainer column declarations).
    adopting: Vec<String>,
    /// Built with some of the source's tables: changes of the others are passed over.
    partial: bool,
}

/// How [`create`] builds a replica.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The source incarnation to follow (default: the one with the newest baseline).
    pub incarnation: Option<String>,
    /// Rebuild as of this moment: baselines taken by then, changes up to the cut it names.
    /// `None`: the newest baselines, brought to the newest cut.
    pub as_of: Option<AsOf>,
    /// Only these tables (as named at the source); `None`: every table with a baseline. A
    /// replica of some tables passes over the changes of the others.
    pub tables: Option<Vec<String>>,
    /// Keep the trail as plain tables too (`rowtrail_trail_<table>`, see [`crate::trail`]).
    pub trail_tables: bool,
}

/// Builds a new replica at `path` (which must not exist) from the archive's baselines, then
/// applies the archive up to the newest cut, or the cut as of `options.as_of`. The file
/// appears only once complete: it is built beside `path` and renamed.
pub fn create(
    path: &Path,
    archive: &Archive,
    options: &CreateOptions,
    progress: &mut dyn FnMut(&str, u64),
) -> Result<(Replica, ApplyReport), StandbyError> {
    if path.exists() {
        return Err(StandbyError::Refused(format!(
            "{} exists already: `rowtrail replica apply --to {0}` keeps an existing replica \
             current; choose another file to build a new one",
            path.display()
        )));
    }
    // A rebuild as of a time starts from the newest incarnation with a baseline by then: before
    // a takeover, the old primary's (its replica crosses the takeover's link if the time is
    // after it).
    let by_time = match (&options.incarnation, &options.as_of) {
        (None, Some(AsOf::Time(t))) => {
            let mut found = None;
            for inc in archive.baseline_incarnations()? {
                if !archive.latest_baselines(&inc, Some(t))?.is_empty() {
                    found = Some(inc);
                    break;
                }
            }
            found
        }
        _ => None,
    };
    let incarnation = match options.incarnation.clone().or(by_time) {
        Some(i) => i,
        None => archive.newest_baseline_incarnation()?.ok_or_else(|| {
            StandbyError::Refused(format!(
                "{} holds no baseline: take one with `rowtrail baseline` (the source stays open \
                 for writes), then build the replica",
                archive.path().display()
            ))
        })?,
    };
    let as_of = match &options.as_of {
        Some(a) => {
            let a = as_of::resolve(archive, &incarnation, a)?;
            // Refused now (beyond the archive, inside a transaction) rather than once built.
            as_of::cut(archive, &incarnation, &a)?;
            Some(a)
        }
        None => None,
    };
    let mut baselines = as_of::baselines(archive, &incarnation, as_of.as_ref())?;
    if let Some(only) = &options.tables {
        baselines = crate::tables::only(archive, &incarnation, baselines, only, as_of.as_ref())?;
    }
    if baselines.is_empty() {
        return Err(StandbyError::Refused(match &as_of {
            Some(t) => format!(
                "no baseline of source {incarnation} was taken at or before {t}: the archive \
                 cannot rebuild the tables as of then"
            ),
            None => {
                format!("no baseline of source {incarnation}: take one with `rowtrail baseline`")
            }
        }));
    }
    let engine = archive
        .sources()?
        .into_iter()
        .find(|s| s.incarnation == incarnation)
        .map(|s| s.engine)
        .unwrap_or_else(|| "sqlite".to_string());
    let partial = partial_path(path);
    let _ = std::fs::remove_file(&partial);
    let built = (|| -> Result<Replica, StandbyError> {
        let mut conn = Connection::open(&partial)
            .map_err(StandbyError::db(&partial, "cannot create the replica"))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;",
        )
        .map_err(StandbyError::db(&partial, "cannot set up the replica"))?;
        let tx = conn.transaction().map_err(StandbyError::db(
            &partial,
            "cannot start building the replica",
        ))?;
        tx.execute_batch(&format!(
            "CREATE TABLE {META} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE {TABLES} (name TEXT PRIMARY KEY, definition TEXT NOT NULL,
                 baseline_seq INTEGER NOT NULL);"
        ))
        .map_err(StandbyError::db(
            &partial,
            "cannot create the replica's records",
        ))?;
        let mut tables = Vec::new();
        for b in &baselines {
            let form = replica_form(&b.table);
            tx.execute_batch(&create_sql(&form, engine == "sqlite"))
                .map_err(StandbyError::db(&partial, "cannot create a replica table"))?;
            tx.execute(
                &format!(
                    "INSERT INTO {TABLES} (name, definition, baseline_seq) VALUES (?1, ?2, ?3)"
                ),
                params![form.name.name.as_str(), b.table.to_json(), b.seq],
            )
            .map_err(StandbyError::db(&partial, "cannot record a replica table"))?;
            let insert = insert_sql(&form);
            let mut stmt = tx
                .prepare(&insert)
                .map_err(StandbyError::db(&partial, "cannot load the baseline"))?;
            let mut loaded = 0u64;
            let name = form.name.to_string();
            archive.baseline_rows(b, 5_000, &mut |rows| {
                for (rowid, values) in rows {
                    let rowid_value = rowid.map(Value::Integer).unwrap_or(Value::Null);
                    let bind = form
                        .rowid
                        .then_some(&rowid_value)
                        .into_iter()
                        .chain(values)
                        .map(rowtrail_reader::sqlite::Param);
                    stmt.execute(rusqlite::params_from_iter(bind))
                        .map_err(|e| {
                            rowtrail_reader::ReaderError::BadRequest(format!(
                                "cannot load a baseline row of {name} into the replica: {e}"
                            ))
                        })?;
                }
                loaded += rows.len() as u64;
                progress(&name, loaded);
                Ok(())
            })?;
            drop(stmt);
            let trail = if options.trail_tables {
                let t = trail::table(&form)?;
                tx.execute_batch(&trail::create(&t, engine == "sqlite"))
                    .map_err(StandbyError::db(&partial, "cannot create a trail table"))?;
                Some(t)
            } else {
                None
            };
            tables.push(ReplicaTable {
                definition: Arc::new(b.table.as_ref().clone()),
                form,
                baseline_seq: b.seq,
                trail,
            });
        }
        // Start just below the lowest baseline: every change at or below it is in every table.
        let lowest = baselines.iter().map(|b| b.seq).min().unwrap_or(0);
        let start = archive
            .change_ids(&ChangeQuery {
                incarnation: Some(incarnation.clone()),
                seqs: Some((i64::MIN, lowest)),
                newest_first: true,
                limit: Some(1),
                ..ChangeQuery::default()
            })?
            .first()
            .copied()
            .unwrap_or(0);
        if options.trail_tables {
            // The trail of every change the replica stands on.
            let q = ChangeQuery {
                incarnation: Some(incarnation.clone()),
                before_id: Some(start + 1),
                ..ChangeQuery::default()
            };
            for c in archive.stream(&q)? {
                let c = c?;
                if let Some(t) = tables.iter().find(|t| t.definition.name == c.table.name) {
                    if let Some(trail) = &t.trail {
                        trail::record(&tx, trail, &c)
                            .map_err(StandbyError::db(&partial, "cannot write the trail"))?;
                    }
                }
            }
        }
        let archive_id = archive.id()?;
        let position = Position {
            change_id: start,
            seq: lowest,
            source_at: None,
            consistent: false,
        };
        for (k, v) in [
            ("format", FORMAT.to_string()),
            ("archive_id", archive_id.clone()),
            ("incarnation", incarnation.clone()),
            ("engine", engine.clone()),
            ("created_us", rowtrail_reader::now_micros().to_string()),
            ("paused", "0".into()),
            (
                "partial",
                if options.tables.is_some() { "1" } else { "0" }.into(),
            ),
            (
                "trail_tables",
                if options.trail_tables { "1" } else { "0" }.into(),
            ),
        ] {
            set_meta(&tx, &partial, k, &v)?;
        }
        write_position(&tx, &partial, &position)?;
        failpoint::hit(steps::CREATE_LOADED);
        tx.commit()
            .map_err(StandbyError::db(&partial, "cannot finish the replica"))?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
            .map_err(StandbyError::db(&partial, "cannot finish the replica"))?;
        Ok(Replica {
            conn,
            path: partial.clone(),
            archive_id,
            incarnation: incarnation.clone(),
            engine: engine.clone(),
            tables,
            position,
            paused: false,
            promoted: None,
            adopting: Vec::new(),
            partial: options.tables.is_some(),
        })
    })();
    let mut replica = match built {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    let until = match as_of {
        Some(a) => Until::AsOf(a),
        None => Until::Latest,
    };
    let report = match replica.apply(archive, &until) {
        Ok(r) => r,
        Err(e) => {
            drop(replica);
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    drop(replica);
    failpoint::hit(steps::CREATE_BUILT);
    std::fs::rename(&partial, path).map_err(|e| {
        StandbyError::Refused(format!(
            "cannot move the finished replica {} to {}: {e}",
            partial.display(),
            path.display()
        ))
    })?;
    let replica = Replica::open(path)?;
    Ok((replica, report))
}

fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// `INSERT` of one row of `t` (its rowid first for a rowid table), every value bound.
pub(crate) fn insert_sql(t: &Table) -> String {
    let mut cols: Vec<String> = Vec::new();
    if t.rowid {
        cols.push("rowid".into());
    }
    cols.extend(t.columns.iter().map(|c| c.name.sqlite().to_string()));
    let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        t.name.name.sqlite(),
        cols.join(", "),
        marks.join(", ")
    )
}

fn set_meta(conn: &Connection, path: &Path, key: &str, value: &str) -> Result<(), StandbyError> {
    conn.execute(
        &format!("INSERT OR REPLACE INTO {META} (key, value) VALUES (?1, ?2)"),
        params![key, value],
    )
    .map_err(StandbyError::db(path, "cannot record the replica's state"))?;
    Ok(())
}

fn write_position(conn: &Connection, path: &Path, p: &Position) -> Result<(), StandbyError> {
    set_meta(conn, path, "position", &p.change_id.to_string())?;
    set_meta(conn, path, "position_seq", &p.seq.to_string())?;
    set_meta(
        conn,
        path,
        "position_at",
        p.source_at.as_deref().unwrap_or(""),
    )?;
    set_meta(
        conn,
        path,
        "consistent",
        if p.consistent { "1" } else { "0" },
    )
}

impl Replica {
    /// Opens the replica at `path`; a file that is not one (or is damaged) is refused.
    pub fn open(path: &Path) -> Result<Self, StandbyError> {
        if !path.exists() {
            return Err(StandbyError::Refused(format!(
                "{} does not exist: build a replica with `rowtrail replica create --to {0}`",
                path.display()
            )));
        }
        let not = |reason: String| StandbyError::NotAReplica {
            path: path.display().to_string(),
            reason,
        };
        let conn = Connection::open(path).map_err(|e| not(format!("it cannot be opened ({e})")))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(StandbyError::db(path, "cannot set the busy timeout"))?;
        let meta: HashMap<String, String> = conn
            .prepare(&format!("SELECT key, value FROM {META}"))
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()
            })
            .map_err(|e| {
                not(format!(
                    "it has no readable replica records ({e}); a replica is built with \
                     `rowtrail replica create`"
                ))
            })?;
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| not(format!("its records lack {k:?}")))
        };
        let int = |k: &str| -> Result<i64, StandbyError> {
            get(k)?
                .parse()
                .map_err(|_| not(format!("its record {k:?} is not a number")))
        };
        let format = int("format")?;
        if format != FORMAT {
            return Err(not(format!(
                "it is in replica format {format}; this rowtrail reads format {FORMAT}"
            )));
        }
        let tables: Vec<(String, String, i64)> = conn
            .prepare(&format!(
                "SELECT name, definition, baseline_seq FROM {TABLES} ORDER BY name"
            ))
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()
            })
            .map_err(|e| not(format!("its table records cannot be read ({e})")))?;
        let trail_tables = meta.get("trail_tables").is_some_and(|v| v == "1");
        let mut out = Vec::new();
        for (name, def, seq) in tables {
            let t: Table = serde_json::from_str(&def)
                .map_err(|e| not(format!("the definition of table {name:?} is damaged ({e})")))?;
            let form = replica_form(&t);
            out.push(ReplicaTable {
                trail: if trail_tables {
                    Some(trail::table(&form)?)
                } else {
                    None
                },
                form,
                definition: Arc::new(t),
                baseline_seq: seq,
            });
        }
        let at = get("position_at")?;
        // Built in rollback-journal mode (one file to rename); WAL once known to be a replica,
        // so readers (a comparison's snapshot) never hold up the applier, nor it them. A file
        // another connection holds open stays as it is until a later open.
        let _ = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0));
        Ok(Self {
            position: Position {
                change_id: int("position")?,
                seq: int("position_seq")?,
                source_at: (!at.is_empty()).then_some(at),
                consistent: get("consistent")? == "1",
            },
            archive_id: get("archive_id")?,
            incarnation: get("incarnation")?,
            engine: get("engine")?,
            paused: get("paused")? == "1",
            promoted: meta.get("promoted_by").and_then(|v| v.parse().ok()),
            adopting: meta
                .get("adopting")
                .and_then(|v| serde_json::from_str(v).ok())
                .unwrap_or_default(),
            partial: meta.get("partial").is_some_and(|v| v == "1"),
            tables: out,
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The replica's connection, for reading its tables.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The source incarnation it follows.
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// The source engine it copies.
    pub fn engine(&self) -> &str {
        &self.engine
    }

    /// Its tables.
    pub fn tables(&self) -> &[ReplicaTable] {
        &self.tables
    }

    /// Where it stands.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// The takeover that promoted this copy to primary, if one did ([`Replica::promote`]).
    pub fn promoted(&self) -> Option<i64> {
        self.promoted
    }

    /// Records that takeover `takeover` made this copy the primary: from now on it is written
    /// by clients and captured, and applying the archive to it is refused.
    pub fn promote(&mut self, takeover: i64) -> Result<(), StandbyError> {
        set_meta(&self.conn, &self.path, "promoted_by", &takeover.to_string())?;
        self.promoted = Some(takeover);
        Ok(())
    }

    /// Whether applying is paused ([`Replica::set_paused`]).
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Pauses or resumes applying (a paused replica stays where it is: for reading a fixed
    /// state, or before a rewind).
    pub fn set_paused(&mut self, paused: bool) -> Result<(), StandbyError> {
        set_meta(
            &self.conn,
            &self.path,
            "paused",
            if paused { "1" } else { "0" },
        )?;
        self.paused = paused;
        Ok(())
    }

    fn check_archive(&self, archive: &Archive) -> Result<(), StandbyError> {
        let id = archive.id()?;
        if id != self.archive_id {
            return Err(StandbyError::Refused(format!(
                "{} was built from another archive (id {}), not {} (id {id}): point it at the \
                 archive it came from, or build a new replica from this one",
                self.path.display(),
                self.archive_id,
                archive.path().display()
            )));
        }
        let newest = archive
            .change_ids(&ChangeQuery {
                newest_first: true,
                limit: Some(1),
                ..ChangeQuery::default()
            })?
            .first()
            .copied()
            .unwrap_or(0);
        if self.position.change_id > newest {
            return Err(StandbyError::Refused(format!(
                "{} stands at change {}, beyond the newest change of {} ({newest}): the archive \
                 lost changes the replica holds (was it restored from an older backup?); keep \
                 the replica, and restore the archive from a newer backup or build a new replica",
                self.path.display(),
                self.position.change_id,
                archive.path().display()
            )));
        }
        Ok(())
    }

    /// The cut `until` names.
    fn target_cut(&self, archive: &Archive, until: &Until) -> Result<Option<Cut>, StandbyError> {
        // A stream a takeover ended goes no further than its end, whatever was archived of it
        // later (the orphans a handback shows).
        let end = archive.successor(&self.incarnation)?.map(|(_, end)| end);
        let cut = match until {
            Until::Latest => archive.cut(&self.incarnation, end)?,
            Until::AsOf(a) => as_of::cut(archive, &self.incarnation, a)?,
            Until::Delay(d) => {
                let then = jiff::Timestamp::now()
                    .checked_sub(jiff::SignedDuration::try_from(*d).unwrap_or_default())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                archive.cut_as_of(&self.incarnation, &archive_time(then))?
            }
        };
        Ok(match (cut, end) {
            (Some(c), Some(e)) if c.change_id > e => archive.cut(&self.incarnation, Some(e))?,
            (cut, _) => cut,
        })
    }

    /// Applies archived changes up to the cut `until` names. Does nothing when paused, or when
    /// the replica already stands there (or beyond: a delayed replica never goes back).
    ///
    /// Where a takeover linked the source it follows to a successor (capture installed on the
    /// copy that took over), a replica that has applied everything up to the link goes on with
    /// the successor's changes, as one stream.
    pub fn apply(&mut self, archive: &Archive, until: &Until) -> Result<ApplyReport, StandbyError> {
        if let Some(t) = self.promoted {
            return Err(StandbyError::Refused(format!(
                "{} was promoted to primary by takeover {t}: it is written by clients now and is                  no replica; build a new replica from the archive (`rowtrail replica create`)",
                self.path.display()
            )));
        }
        // Another handle (the watcher's, a command's) may have moved it since this one read it.
        self.reload_position()?;
        let mut report = self.apply_incarnation(archive, until)?;
        while !self.paused {
            let Some((next, last_id)) = archive.successor(&self.incarnation)? else {
                break;
            };
            if self.position.change_id < last_id {
                break;
            }
            self.follow(&next)?;
            let more = self.apply_incarnation(archive, until)?;
            report.applied += more.applied;
            report.skipped += more.skipped;
            report.position = more.position;
        }
        Ok(report)
    }

    fn reload_position(&mut self) -> Result<(), StandbyError> {
        let meta: HashMap<String, String> = self
            .conn
            .prepare(&format!("SELECT key, value FROM {META}"))
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()
            })
            .map_err(StandbyError::db(
                &self.path,
                "cannot read the replica's records",
            ))?;
        let id = meta.get("position").and_then(|v| v.parse::<i64>().ok());
        let moved = id != Some(self.position.change_id)
            || meta.get("incarnation") != Some(&self.incarnation)
            || meta.contains_key("promoted_by") != self.promoted.is_some();
        if moved {
            *self = Replica::open(&self.path)?;
            if let Some(t) = self.promoted {
                return Err(StandbyError::Refused(format!(
                    "{} was promoted to primary by takeover {t}: it is no replica now",
                    self.path.display()
                )));
            }
        }
        Ok(())
    }

    /// Crosses to the successor incarnation `next`: its seqs start afresh, so every table's
    /// baseline position goes to 0, and each table adopts the successor's definition of it.
    fn follow(&mut self, next: &str) -> Result<(), StandbyError> {
        let names: Vec<String> = self
            .tables
            .iter()
            .map(|t| t.form.name.name.as_str().to_string())
            .collect();
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StandbyError::db(
                &path,
                "cannot start a replica transaction",
            ))?;
        set_meta(&tx, &path, "incarnation", next)?;
        set_meta(
            &tx,
            &path,
            "adopting",
            &serde_json::to_string(&names).unwrap_or_default(),
        )?;
        tx.execute(&format!("UPDATE {TABLES} SET baseline_seq = 0"), [])
            .map_err(StandbyError::db(
                &path,
                "cannot record the replica's tables",
            ))?;
        let p = Position {
            change_id: self.position.change_id,
            seq: 0,
            source_at: self.position.source_at.clone(),
            consistent: true,
        };
        write_position(&tx, &path, &p)?;
        tx.commit().map_err(StandbyError::db(
            &path,
            "cannot commit a replica transaction",
        ))?;
        tracing::info!(replica = %path.display(), from = %self.incarnation, to = %next,
            "replica follows the copy that took over");
        self.incarnation = next.to_string();
        self.adopting = names;
        for t in &mut self.tables {
            t.baseline_seq = 0;
        }
        self.position = p;
        Ok(())
    }

    /// [`Replica::apply`] within the incarnation it follows now.
    fn apply_incarnation(
        &mut self,
        archive: &Archive,
        until: &Until,
    ) -> Result<ApplyReport, StandbyError> {
        self.check_archive(archive)?;
        let mut report = ApplyReport {
            applied: 0,
            skipped: 0,
            position: self.position.clone(),
        };
        if self.paused {
            return Ok(report);
        }
        let Some(cut) = self.target_cut(archive, until)? else {
            return Ok(report);
        };
        if cut.change_id <= self.position.change_id {
            if cut.change_id == self.position.change_id && !self.position.consistent {
                self.reach(&cut)?;
                report.position = self.position.clone();
            }
            return Ok(report);
        }
        let q = ChangeQuery {
            incarnation: Some(self.incarnation.clone()),
            after_id: Some(self.position.change_id),
            before_id: Some(cut.change_id + 1),
            ..ChangeQuery::default()
        };
        let consistent_at_cut = self.is_consistent_at(cut.seq);
        let mut stream = archive.stream(&q)?.peekable();
        loop {
            let mut chunk: Vec<ArchivedChange> = Vec::new();
            while let Some(next) = stream.peek() {
                let ends_tx = chunk.len() >= CHUNK
                    && match (next, chunk.last()) {
                        (Ok(n), Some(l)) => {
                            n.tx.is_none() || n.tx != l.tx || chunk.len() >= 2 * CHUNK
                        }
                        _ => true,
                    };
                if ends_tx {
                    break;
                }
                chunk.push(stream.next().expect("peeked")?);
            }
            if chunk.is_empty() {
                break;
            }
            let last = chunk.last().map(|c| (c.id, c.seq, c.at.clone()));
            let done = stream.peek().is_none();
            let (applied, skipped) = self.apply_chunk(&chunk, Direction::Forward, |tx, path| {
                let (id, seq, at) = last.clone().expect("a chunk is never empty");
                let p = if done {
                    Position {
                        change_id: cut.change_id,
                        seq: cut.seq,
                        source_at: cut.source_at.clone().or(at),
                        consistent: consistent_at_cut,
                    }
                } else {
                    Position {
                        change_id: id,
                        seq,
                        source_at: at,
                        consistent: false,
                    }
                };
                write_position(tx, path, &p)?;
                Ok(p)
            })?;
            report.applied += applied;
            report.skipped += skipped;
        }
        if self.position.change_id < cut.change_id {
            // Only changes of other sources lay between: stand on the cut.
            self.reach(&cut)?;
        }
        report.position = self.position.clone();
        Ok(report)
    }

    fn is_consistent_at(&self, seq: i64) -> bool {
        self.tables.iter().all(|t| t.baseline_seq <= seq)
    }

    fn reach(&mut self, cut: &Cut) -> Result<(), StandbyError> {
        let p = Position {
            change_id: cut.change_id,
            seq: cut.seq,
            source_at: cut.source_at.clone().or(self.position.source_at.clone()),
            consistent: self.is_consistent_at(cut.seq),
        };
        write_position(&self.conn, &self.path, &p)?;
        self.position = p;
        Ok(())
    }

    /// Applies `chunk` in one replica transaction that `finish` closes by recording the new
    /// position. Returns how many changes were written and how many were in a baseline.
    fn apply_chunk(
        &mut self,
        chunk: &[ArchivedChange],
        direction: Direction,
        finish: impl FnOnce(&rusqlite::Transaction<'_>, &Path) -> Result<Position, StandbyError>,
    ) -> Result<(u64, u64), StandbyError> {
        let mut todo: Vec<ArchivedChange> = Vec::with_capacity(chunk.len());
        let mut forms: Vec<usize> = Vec::with_capacity(chunk.len());
        let mut skipped = 0u64;
        let mut adopted: Vec<(usize, Arc<Table>)> = Vec::new();
        for c in chunk {
            let Some(i) = self
                .tables
                .iter()
                .position(|t| t.definition.name == c.table.name)
            else {
                if self.partial {
                    skipped += 1;
                    continue;
                }
                return Err(StandbyError::Refused(format!(
                    "change {} is of table {}, which the replica does not hold (captured after \
                     its baseline): take a baseline of it (`rowtrail baseline --tables {}`) and \
                     build a new replica",
                    c.id, c.table.name, c.table.name
                )));
            };
            let t = &self.tables[i];
            if c.seq <= t.baseline_seq {
                skipped += 1;
                continue;
            }
            let adopting = self.adopting.iter().any(|n| n == t.form.name.name.as_str());
            let was_adopted = adopted.iter().any(|(j, d)| *j == i && **d == *c.table);
            if *c.table != *t.definition && !was_adopted {
                if adopting
                    && !adopted.iter().any(|(j, _)| *j == i)
                    && crate::tables::same_shape(&c.table, &t.definition)
                {
                    adopted.push((i, c.table.clone()));
                    todo.push(c.clone());
                    forms.push(i);
                    continue;
                }
                return Err(StandbyError::Refused(format!(
                    "change {} of table {} was captured under another definition of the table \
                     than the replica holds (its columns changed at the source): take a new \
                     baseline (`rowtrail baseline --tables {}`) and build a new replica",
                    c.id, c.table.name, c.table.name
                )));
            }
            todo.push(c.clone());
            forms.push(i);
        }
        let form_refs: Vec<&Table> = forms.iter().map(|&i| &self.tables[i].form).collect();
        let comments: Vec<String> = todo.iter().map(ArchivedChange::summary).collect();
        let what = match direction {
            Direction::Forward => "replica apply",
            Direction::Backward => "replica rewind",
        };
        let job = steps::job(what, &todo, &form_refs, &comments, direction);
        let path = self.path.clone();
        failpoint::hit(steps::BEFORE_TRANSACTION);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StandbyError::db(
                &path,
                "cannot start a replica transaction",
            ))?;
        // Another applier (the watcher's, a command's) may have moved the replica since this
        // handle read its position: then these changes are not the next ones.
        let stored: Option<String> = tx
            .query_row(
                &format!("SELECT value FROM {META} WHERE key = 'position'"),
                [],
                |r| r.get::<_, String>(0),
            )
            .map_err(StandbyError::db(
                &path,
                "cannot read the replica's position",
            ))?
            .into();
        if stored.as_deref() != Some(self.position.change_id.to_string().as_str()) {
            return Err(StandbyError::Moved(path.display().to_string()));
        }
        rowtrail_apply::sqlite::apply_within(&tx, &job).map_err(|e| match e {
            rowtrail_apply::ApplyError::Guards { rows, .. } => StandbyError::Refused(format!(
                "the replica {} does not hold what the archive says it should before {} \
                 (it was written outside rowtrail, or repaired from another state): run \
                 `rowtrail compare --replica {0} --repair` to see and fix the differences",
                path.display(),
                rows.first().cloned().unwrap_or_default()
            )),
            other => StandbyError::Apply(other),
        })?;
        failpoint::hit(steps::ROWS_WRITTEN);
        let mut still_adopting = self.adopting.clone();
        for (i, def) in &adopted {
            let name = self.tables[*i].form.name.name.as_str().to_string();
            tx.execute(
                &format!("UPDATE {TABLES} SET definition = ?2 WHERE name = ?1"),
                params![name, def.to_json()],
            )
            .map_err(StandbyError::db(&path, "cannot record a replica table"))?;
            still_adopting.retain(|n| *n != name);
        }
        if !adopted.is_empty() {
            set_meta(
                &tx,
                &path,
                "adopting",
                &serde_json::to_string(&still_adopting).unwrap_or_default(),
            )?;
        }
        let position = finish(&tx, &path)?;
        write_trail(&self.tables, &tx, chunk, direction, position.change_id)
            .map_err(StandbyError::db(&path, "cannot write the trail"))?;
        failpoint::hit(steps::POSITION_WRITTEN);
        tx.commit().map_err(StandbyError::db(
            &path,
            "cannot commit a replica transaction",
        ))?;
        failpoint::hit(steps::COMMITTED);
        for (i, def) in adopted {
            self.tables[i].definition = def;
        }
        self.adopting = still_adopting;
        self.position = position;
        Ok((todo.len() as u64, skipped))
    }
}

/// Keeps the trail tables of `tables` (if any) in step with a chunk: forward, the images of
/// each of its changes of a table held (those in a baseline too); backward, the rows of changes
/// after `position` removed.
fn write_trail(
    tables: &[ReplicaTable],
    tx: &rusqlite::Transaction<'_>,
    chunk: &[ArchivedChange],
    direction: Direction,
    position: i64,
) -> Result<(), rusqlite::Error> {
    for t in tables {
        let Some(trail) = &t.trail else { continue };
        match direction {
            Direction::Forward => {
                for c in chunk.iter().filter(|c| c.table.name == t.definition.name) {
                    trail::record(tx, trail, c)?;
                }
            }
            Direction::Backward => trail::forget_after(tx, trail, position)?,
        }
    }
    Ok(())
}

impl Replica {
    /// The replica's archive id: the archive it was built from, whose change ids its position
    /// counts in.
    pub fn archive_id(&self) -> &str {
        &self.archive_id
    }

    /// A record the replica keeps for whoever feeds it (`key` is namespaced by the caller, such
    /// as `stream.consumer`); `None` when it was never set.
    pub fn record(&self, key: &str) -> Result<Option<String>, StandbyError> {
        self.conn
            .query_row(
                &format!("SELECT value FROM {META} WHERE key = ?1"),
                [format!("{RECORD_PREFIX}{key}")],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(StandbyError::db(
                &self.path,
                "cannot read the replica's records",
            ))
    }

    /// Sets a record ([`Replica::record`]) on its own.
    pub fn set_record(&mut self, key: &str, value: &str) -> Result<(), StandbyError> {
        set_meta(
            &self.conn,
            &self.path,
            &format!("{RECORD_PREFIX}{key}"),
            value,
        )
    }

    /// Applies `changes`, changes of the replica's source from any origin (the archive, the
    /// change stream), in their order, and moves the replica to `position`, all in one replica
    /// transaction with `records` ([`Replica::record`]) written beside it: the same apply path
    /// as [`Replica::apply`] (changes in a table's baseline passed over, every before-image
    /// checked). The caller gives whole source transactions and a position at or after the
    /// last of them; `before_commit` runs with everything written, just before the commit.
    /// Refused for a paused replica, for changes of another source incarnation, and for a
    /// position that does not go forward.
    pub fn apply_changes(
        &mut self,
        changes: &[ArchivedChange],
        position: Position,
        records: &[(&str, String)],
        before_commit: impl FnOnce(),
    ) -> Result<ApplyReport, StandbyError> {
        if self.paused {
            return Err(StandbyError::Refused(format!(
                "{} is paused: `rowtrail replica resume --to {0}` lets it take changes again",
                self.path.display()
            )));
        }
        if let Some(c) = changes.iter().find(|c| *c.incarnation != *self.incarnation) {
            return Err(StandbyError::Refused(format!(
                "change {} is of source incarnation {}; {} follows source incarnation {} (a \
                 replica belongs to one source: build a new replica for that one)",
                c.id,
                c.incarnation,
                self.path.display(),
                self.incarnation
            )));
        }
        let last = changes.last().map_or(self.position.change_id, |c| c.id);
        if position.change_id <= self.position.change_id || position.change_id < last {
            return Err(StandbyError::Refused(format!(
                "{} stands at change {}: a step to change {} (after changes up to {last}) does \
                 not go forward",
                self.path.display(),
                self.position.change_id,
                position.change_id
            )));
        }
        let position = Position {
            consistent: position.consistent && self.is_consistent_at(position.seq),
            ..position
        };
        let (applied, skipped) = self.apply_chunk(changes, Direction::Forward, |tx, path| {
            write_position(tx, path, &position)?;
            for (k, v) in records {
                set_meta(tx, path, &format!("{RECORD_PREFIX}{k}"), v)?;
            }
            before_commit();
            Ok(position.clone())
        })?;
        Ok(ApplyReport {
            applied,
            skipped,
            position: self.position.clone(),
        })
    }
}

impl Replica {
    /// Takes the replica back to the state as of `time` (archive text form): the changes
    /// applied since the cut as of then are applied backwards, newest first, in one replica
    /// transaction. Refused below a table's baseline (build a replica as of that time instead).
    pub fn rewind(&mut self, archive: &Archive, time: &str) -> Result<ApplyReport, StandbyError> {
        self.check_archive(archive)?;
        let Some(cut) = archive.cut_as_of(&self.incarnation, time)? else {
            return Err(StandbyError::Refused(format!(
                "the archive knows no complete state of source {} as of {time}",
                self.incarnation
            )));
        };
        if let Some(t) = self.tables.iter().find(|t| t.baseline_seq > cut.seq) {
            return Err(StandbyError::Refused(format!(
                "table {} was loaded from a baseline taken after {time}: the replica cannot go \
                 back that far; build one as of then with `rowtrail restore --as-of {time} --out FILE`",
                t.definition.name
            )));
        }
        let mut report = ApplyReport {
            applied: 0,
            skipped: 0,
            position: self.position.clone(),
        };
        if cut.change_id >= self.position.change_id {
            return Ok(report);
        }
        let q = ChangeQuery {
            incarnation: Some(self.incarnation.clone()),
            after_id: Some(cut.change_id),
            before_id: Some(self.position.change_id + 1),
            newest_first: true,
            ..ChangeQuery::default()
        };
        let chunk: Vec<ArchivedChange> = archive.stream(&q)?.collect::<Result<_, _>>()?;
        let p = Position {
            change_id: cut.change_id,
            seq: cut.seq,
            source_at: cut.source_at.clone(),
            consistent: self.is_consistent_at(cut.seq),
        };
        let (applied, skipped) = self.apply_chunk(&chunk, Direction::Backward, |tx, path| {
            write_position(tx, path, &p)?;
            Ok(p.clone())
        })?;
        report.applied = applied;
        report.skipped = skipped;
        report.position = self.position.clone();
        Ok(report)
    }

    /// Where the replica stands against the archive.
    pub fn status(&self, archive: &Archive) -> Result<ReplicaStatus, StandbyError> {
        self.check_archive(archive)?;
        let archive_cut = archive.cut(&self.incarnation, None)?;
        let q = ChangeQuery {
            incarnation: Some(self.incarnation.clone()),
            after_id: Some(self.position.change_id),
            ..ChangeQuery::default()
        };
        let waiting = archive.change_ids(&q)?;
        let lag_seconds = match waiting.first() {
            None => 0.0,
            Some(&id) => archive
                .changes(&ChangeQuery {
                    ids: Some(vec![id]),
                    ..ChangeQuery::default()
                })?
                .first()
                .and_then(|c| c.at.as_deref().and_then(seconds_since))
                .unwrap_or(0.0),
        };
        let mut tables = Vec::new();
        for t in &self.tables {
            let n: i64 = self
                .conn
                .query_row(
                    &format!("SELECT count(*) FROM {}", t.form.name.name.sqlite()),
                    [],
                    |r| r.get(0),
                )
                .map_err(StandbyError::db(&self.path, "cannot count a table's rows"))?;
            tables.push((t.definition.name.to_string(), n as u64));
        }
        Ok(ReplicaStatus {
            path: self.path.clone(),
            incarnation: self.incarnation.clone(),
            position: self.position.clone(),
            archive_cut,
            behind: waiting.len() as u64,
            lag_seconds,
            paused: self.paused,
            tables,
        })
    }
}

/// A time in the archive's text form (`YYYY-MM-DDTHH:MM:SS.sssZ`).
pub fn archive_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Seconds from an archive time to now (`None` when it does not read as a time).
fn seconds_since(at: &str) -> Option<f64> {
    let t: jiff::Timestamp = at.parse().ok()?;
    let d = jiff::Timestamp::now().duration_since(t);
    Some(d.as_secs_f64().max(0.0))
}

/// Reads a user's time (RFC 3339, `2026-12-03T10:00:00Z`, or a local-free `2026-12-03 10:00:00`
/// taken as UTC) into the archive's text form.
pub fn parse_time(text: &str) -> Result<String, StandbyError> {
    let t = text.trim();
    let parsed = t.parse::<jiff::Timestamp>().ok().or_else(|| {
        t.parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|dt| jiff::tz::TimeZone::UTC.to_timestamp(dt).ok())
    });
    if let Some(ts) = parsed {
        if ts > jiff::Timestamp::now() {
            return Err(StandbyError::Refused(format!(
                "{text} is in the future: the archive knows the tables only up to now"
            )));
        }
        return Ok(archive_time(ts));
    }
    Err(StandbyError::Refused(format!(
        "{text:?} is not a time rowtrail reads: give UTC as 2026-12-03T10:00:00Z (or with an \
         offset, +01:00)"
    )))
}
