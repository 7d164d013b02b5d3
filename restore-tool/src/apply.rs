//! Applying a plan to a SQLite source: one transaction, guards checked statement by statement,
//! foreign keys checked once at the end, the writes labelled with the run's tag.
//!
//! The transaction opens with a `rowtrail_context` row carrying the run's tag as its
//! transaction, so the capture triggers label every write of the undo with it; the row is
//! deleted before commit and never committed. Foreign-key enforcement is off during the
//! transaction (`PRAGMA foreign_keys = OFF`), so no cascade action fires twice: the cascaded
//! changes were captured and are undone as changes of their own. Instead, before commit, the
//! number of foreign-key violations in the tables touched (and their child tables) must not
//! have grown, which accepts any order of rows, as deferred constraints would.

use std::collections::{HashMap, HashSet};

use rowtrail_reader::failpoint;
use rowtrail_sql::sqlite::objects;
use rowtrail_sql::undo::{self, OnConflict, Values};
use rowtrail_sql::{staging, Dialect, Ident, TableName, Value};
use rusqlite::{Connection, ErrorCode, OptionalExtension};

use crate::conflict::ForeignKey;
use crate::plan::Plan;
use crate::RestoreError;

/// How the run's writes are labelled in the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The run's tag (`undo:<id>`), recorded as the transaction of every write.
    pub tag: String,
    /// The login recorded for the writes.
    pub login: String,
    /// The host recorded for the writes.
    pub host: Option<String>,
    /// The application recorded for the writes.
    pub app: String,
}

/// What happened to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guard held and the row was changed.
    Applied,
    /// The guard failed and the row was made to match anyway (force).
    Forced,
    /// The guard failed and the row was left alone (skip).
    Skipped,
}

impl Outcome {
    /// The word in the journal.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Forced => "forced",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The archived change.
    pub change_id: i64,
    /// `insert`, `update` or `delete`.
    pub action: &'static str,
    /// What happened.
    pub outcome: Outcome,
}

fn source_err(conn: &Connection, context: &str) -> impl FnOnce(rusqlite::Error) -> RestoreError {
    let location = conn.path().unwrap_or("(memory)").to_string();
    let context = context.to_string();
    move |cause| RestoreError::Source {
        location,
        context,
        cause,
    }
}

/// The source's incarnation id.
pub fn incarnation(conn: &Connection) -> Result<String, RestoreError> {
    let meta = Ident::new(objects::META)?;
    conn.query_row(
        &format!(
            "SELECT \"value\" FROM {} WHERE \"key\" = 'incarnation'",
            meta.sqlite()
        ),
        [],
        |r| r.get(0),
    )
    .map_err(source_err(
        conn,
        "cannot read the incarnation (is capture installed?)",
    ))
}

/// Every foreign key declared in the source.
pub fn foreign_keys(conn: &Connection) -> Result<Vec<ForeignKey>, RestoreError> {
    let e = || source_err(conn, "cannot read foreign keys");
    let mut stmt = conn
        .prepare(
            "SELECT m.name, f.id, f.seq, f.\"table\", f.\"from\", f.\"to\" FROM sqlite_schema m \
             JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table' ORDER BY m.name, f.id, f.seq",
        )
        .map_err(e())?;
    let rows: Vec<(String, i64, String, String, Option<String>)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(e())?;
    let mut out: Vec<ForeignKey> = Vec::new();
    let mut last: Option<(String, i64)> = None;
    let mut current: Option<usize> = None;
    for (child, id, parent, from, to) in rows {
        if last.as_ref() != Some(&(child.clone(), id)) {
            last = Some((child.clone(), id));
            // A name no captured table can have (too long) cannot matter to an undo.
            current = match (Ident::new(child), Ident::new(parent)) {
                (Ok(child), Ok(parent)) => {
                    out.push(ForeignKey {
                        child: TableName::bare(child),
                        child_columns: Vec::new(),
                        parent: TableName::bare(parent),
                        parent_columns: Vec::new(),
                    });
                    Some(out.len() - 1)
                }
                _ => None,
            };
        }
        if let Some(fk) = current.map(|i| &mut out[i]) {
            fk.child_columns.push(from);
            if let Some(to) = to {
                fk.parent_columns.push(to);
            }
        }
    }
    Ok(out)
}

/// Whether the source's staging still holds a write labelled `tag` (not yet archived).
pub fn staged_with_tag(conn: &Connection, tag: &str) -> Result<bool, RestoreError> {
    let e = || source_err(conn, "cannot read staging");
    let names: Vec<String> = conn
        .prepare(&format!(
            "SELECT \"staging_name\" FROM {}",
            Ident::new(objects::REGISTRY)?.sqlite()
        ))
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(e())?;
    let tx = Ident::new(staging::COL_TX)?;
    for n in names {
        let found: Option<i64> = conn
            .query_row(
                &format!(
                    "SELECT 1 FROM {} WHERE {} = ?1 LIMIT 1",
                    Ident::new(n)?.sqlite(),
                    tx.sqlite()
                ),
                [tag],
                |r| r.get(0),
            )
            .optional()
            .map_err(e())?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The plan as a script a DBA can read and run by hand (`sqlite3 -bail source.db < undo.sql`).
pub fn script(plan: &Plan, header: &str, dialect: Dialect) -> Result<String, RestoreError> {
    let comments = plan.comments();
    let steps = plan.script_steps(&comments);
    Ok(undo::script(
        header,
        &steps,
        plan.mode.on_conflict(),
        dialect,
    )?)
}

/// A value bound as a statement parameter, by reference (no copy of text or blobs).
struct Bind<'a>(&'a Value);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self.0 {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
            // Text that is not UTF-8 travels as a blob; the statement casts it back to text.
            Value::Text(t) if std::str::from_utf8(t).is_err() => {
                ToSqlOutput::Borrowed(ValueRef::Blob(t))
            }
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t)),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            other => ToSqlOutput::Owned(rusqlite::types::Value::Text(other.to_string())),
        })
    }
}

/// The values `st` binds for `step`: `st` was rendered for `step` or for a step of the same
/// table and [`undo::shape`], so its parameters' origins are `step`'s own columns.
fn bound<'a>(
    st: &undo::Statement,
    step: &undo::Step<'a>,
) -> Result<Vec<Bind<'a>>, rusqlite::Error> {
    st.origins
        .iter()
        .map(|o| {
            o.value(step).map(Bind).ok_or_else(|| {
                rusqlite::Error::InvalidParameterName(format!(
                    "the step has no {:?} row to bind column {} from",
                    o.side, o.column
                ))
            })
        })
        .collect()
}

/// Statements rendered once per table and [`undo::shape`]: most steps of a plan differ only in
/// their values, and binding those is all a step of a shape seen before needs. Tables are told
/// apart by address: a cache lives for one apply, and the plan holds every step's table for all
/// of it.
struct Rendered {
    force: bool,
    by_shape: HashMap<(*const rowtrail_sql::Table, Vec<u8>), undo::RenderedStep>,
    own: Option<undo::RenderedStep>,
}

impl Rendered {
    fn new(force: bool) -> Self {
        Self {
            force,
            by_shape: HashMap::new(),
            own: None,
        }
    }

    /// The statements for `step`, a step of the plan being applied.
    fn get(&mut self, step: &undo::Step<'_>) -> Result<&undo::RenderedStep, RestoreError> {
        let render = |step: &undo::Step<'_>| {
            if self.force {
                undo::render(step, Dialect::Sqlite, Values::Bound, None)
            } else {
                undo::render_guarded(step, Dialect::Sqlite, Values::Bound)
            }
        };
        Ok(match undo::shape(step) {
            Some(shape) => {
                let key = (step.table as *const rowtrail_sql::Table, shape);
                match self.by_shape.entry(key) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => v.insert(render(step)?),
                }
            }
            None => self.own.insert(render(step)?),
        })
    }
}

/// Runs one statement; `Ok(None)` when a constraint refused it (a conflict, like a guard).
fn run(
    tx: &rusqlite::Transaction<'_>,
    st: &undo::Statement,
    step: &undo::Step<'_>,
) -> Result<Option<usize>, rusqlite::Error> {
    let mut stmt = tx.prepare_cached(&st.sql)?;
    match stmt.execute(rusqlite::params_from_iter(bound(st, step)?)) {
        Ok(n) => Ok(Some(n)),
        Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == ErrorCode::ConstraintViolation => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn fk_violations(tx: &rusqlite::Transaction<'_>, tables: &[String]) -> rusqlite::Result<i64> {
    let mut total = 0;
    for t in tables {
        total += tx.query_row(
            "SELECT count(*) FROM pragma_foreign_key_check(?1)",
            [t],
            |r| r.get::<_, i64>(0),
        )?;
    }
    Ok(total)
}

/// Applies `plan` to the SQLite source behind `conn` in one transaction. `before_commit` runs
/// with the results after every step succeeded and before the source commits (the journal
/// records them there); an error from it rolls the source back.
pub fn apply(
    conn: &mut Connection,
    plan: &Plan,
    fks: &[ForeignKey],
    label: &Label,
    before_commit: &mut dyn FnMut(&[StepResult]) -> Result<(), RestoreError>,
) -> Result<Vec<StepResult>, RestoreError> {
    conn.set_prepared_statement_cache_capacity(256);
    let enforced: bool = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .map_err(source_err(conn, "cannot read the foreign-key setting"))?;
    conn.execute_batch("PRAGMA foreign_keys = OFF")
        .map_err(source_err(conn, "cannot turn foreign-key actions off"))?;
    let result = apply_in_transaction(conn, plan, fks, label, before_commit);
    if enforced {
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .map_err(source_err(conn, "cannot turn foreign keys back on"))?;
    }
    result
}

fn apply_in_transaction(
    conn: &mut Connection,
    plan: &Plan,
    fks: &[ForeignKey],
    label: &Label,
    before_commit: &mut dyn FnMut(&[StepResult]) -> Result<(), RestoreError>,
) -> Result<Vec<StepResult>, RestoreError> {
    let e = |context: &str| source_err(conn, context);
    let (e_begin, e_step, e_commit) = (
        e("cannot start"),
        e("an undo step failed"),
        e("cannot commit"),
    );
    let e_ctx = e("cannot label the undo's writes");
    let e_fk = e("cannot check foreign keys");
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(e_begin)?;
    let touched: HashSet<&TableName> = plan.steps.iter().map(|s| &s.change.table.name).collect();
    let mut check: Vec<String> = fks
        .iter()
        .filter(|f| touched.contains(&f.child) || touched.contains(&f.parent))
        .map(|f| f.child.name.as_str().to_string())
        .collect();
    check.sort();
    check.dedup();
    let fk_before = fk_violations(&tx, &check).map_err(e_fk)?;
    tx.execute(
        &format!(
            "INSERT INTO {} (\"id\", \"tx\", \"login\", \"host\", \"app\", \"client_ip\") \
             VALUES (1, ?1, ?2, ?3, ?4, NULL)",
            Ident::new(objects::CONTEXT)?.sqlite()
        ),
        rusqlite::params![label.tag, label.login, label.host, label.app],
    )
    .map_err(e_ctx)?;
    let on_conflict = plan.mode.on_conflict();
    let mut results = Vec::with_capacity(plan.steps.len());
    let mut guards = Vec::new();
    let half = plan.steps.len() / 2;
    let mut rendered = Rendered::new(on_conflict == OnConflict::Force);
    let mut step_error: Option<rusqlite::Error> = None;
    for (n, s) in plan.steps.iter().enumerate() {
        if n == half {
            failpoint::hit("undo-mid-apply");
        }
        let step = s.step();
        let r = rendered.get(&step)?;
        let mut held = true;
        if let Some(m) = &r.matching {
            let count: i64 = match tx.prepare_cached(&m.sql).and_then(|mut st| {
                st.query_row(rusqlite::params_from_iter(bound(m, &step)?), |r| r.get(0))
            }) {
                Ok(c) => c,
                Err(err) => {
                    step_error = Some(err);
                    break;
                }
            };
            if count > 1 && on_conflict != OnConflict::Force {
                return Err(RestoreError::Ambiguous {
                    change: s.change.id,
                    table: s.change.table.name.to_string(),
                    count,
                });
            }
            held = count == 1;
        }
        let changed = if held {
            match run(&tx, &r.guarded, &step) {
                Ok(n) => n == Some(1),
                Err(err) => {
                    step_error = Some(err);
                    break;
                }
            }
        } else {
            false
        };
        let outcome = if changed {
            Outcome::Applied
        } else {
            match on_conflict {
                OnConflict::Stop => {
                    guards.push(s.comment());
                    Outcome::Skipped
                }
                OnConflict::Skip => Outcome::Skipped,
                OnConflict::Force => {
                    let mut failed = None;
                    for f in &r.forced {
                        match run(&tx, f, &step) {
                            Ok(Some(_)) => {}
                            Ok(None) => failed = Some(s.comment()),
                            Err(err) => {
                                step_error = Some(err);
                                break;
                            }
                        }
                    }
                    if let Some(c) = failed {
                        guards.push(format!("{c} (even forced: a constraint refused it)"));
                    }
                    Outcome::Forced
                }
            }
        };
        results.push(StepResult {
            change_id: s.change.id,
            action: step.action(),
            outcome,
        });
    }
    if let Some(err) = step_error {
        return Err(e_step(err));
    }
    if !guards.is_empty() {
        return Err(RestoreError::Guards(guards));
    }
    tx.execute(
        &format!(
            "DELETE FROM {} WHERE \"id\" = 1",
            Ident::new(objects::CONTEXT)?.sqlite()
        ),
        [],
    )
    .map_err(source_err(&tx, "cannot remove the undo's label"))?;
    let fk_after =
        fk_violations(&tx, &check).map_err(source_err(&tx, "cannot check foreign keys"))?;
    if fk_after > fk_before {
        return Err(RestoreError::ForeignKeys(fk_after - fk_before));
    }
    before_commit(&results)?;
    failpoint::hit("undo-before-source-commit");
    tx.commit().map_err(e_commit)?;
    failpoint::hit("undo-after-source-commit");
    Ok(results)
}
