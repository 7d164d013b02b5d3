//! Applying a job to a SQLite database: one transaction, guards checked statement by
//! statement, foreign keys checked once at the end, the writes labelled with the job's tag.
//!
//! On a captured source the transaction opens with a `rowtrail_context` row carrying the job's
//! tag as its transaction, so the capture triggers label every write with it; the row is
//! deleted before commit and never committed. Foreign-key enforcement is off during the
//! transaction (`PRAGMA foreign_keys = OFF`), so no cascade action fires twice: cascaded changes
//! were captured and are applied as changes of their own. Instead, before commit, the number of
//! foreign-key violations in the tables touched (and their child tables) must not have grown,
//! which accepts any order of rows, as deferred constraints would.

use std::collections::{HashMap, HashSet};

use rowtrail_reader::failpoint;
use rowtrail_reader::sqlite::Param;
use rowtrail_sql::sqlite::objects;
use rowtrail_sql::sqlite::undo::{self, Values};
use rowtrail_sql::undo::{OnConflict, Step};
use rowtrail_sql::{Ident, TableName};
use rusqlite::{Connection, ErrorCode};

use crate::{ApplyError, Hooks, Job, Outcome, StepResult};

fn target_err(conn: &Connection, context: &str) -> impl FnOnce(rusqlite::Error) -> ApplyError {
    let location = conn.path().unwrap_or("(memory)").to_string();
    let context = context.to_string();
    move |cause| ApplyError::Database {
        location,
        context,
        cause,
    }
}

/// The values `st` binds for `step`: `st` was rendered for `step` or for a step of the same
/// table and [`undo::shape`], so its parameters' origins are `step`'s own columns.
fn bound<'a>(st: &undo::Statement, step: &Step<'a>) -> Result<Vec<Param<'a>>, rusqlite::Error> {
    st.origins
        .iter()
        .map(|o| {
            o.value(step).map(Param).ok_or_else(|| {
                rusqlite::Error::InvalidParameterName(format!(
                    "the step has no {:?} row to bind column {} from",
                    o.side, o.column
                ))
            })
        })
        .collect()
}

/// Statements rendered once per table and [`undo::shape`]: most steps of a job differ only in
/// their values, and binding those is all a step of a shape seen before needs. Tables are told
/// apart by address: a cache lives for one apply, and the job borrows every step's table for all
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

    /// The statements for `step`, a step of the job being applied.
    fn get(&mut self, step: &Step<'_>) -> Result<&undo::RenderedStep, ApplyError> {
        let render = |step: &Step<'_>| {
            if self.force {
                undo::render(step, Values::Bound, None)
            } else {
                undo::render_guarded(step, Values::Bound)
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
    step: &Step<'_>,
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

/// Applies `job` to the SQLite database behind `conn` in one transaction. `hooks` hears the
/// results after every step succeeded and before the commit; an error from it rolls back.
pub(super) fn apply(
    conn: &mut Connection,
    job: &Job<'_>,
    hooks: &mut dyn Hooks,
) -> Result<Vec<StepResult>, ApplyError> {
    conn.set_prepared_statement_cache_capacity(256);
    let enforced: bool = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .map_err(target_err(conn, "cannot read the foreign-key setting"))?;
    conn.execute_batch("PRAGMA foreign_keys = OFF")
        .map_err(target_err(conn, "cannot turn foreign-key actions off"))?;
    let result = apply_in_transaction(conn, job, hooks);
    if enforced {
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .map_err(target_err(conn, "cannot turn foreign keys back on"))?;
    }
    result
}

fn apply_in_transaction(
    conn: &mut Connection,
    job: &Job<'_>,
    hooks: &mut dyn Hooks,
) -> Result<Vec<StepResult>, ApplyError> {
    let e = |context: &str| target_err(conn, context);
    let (e_begin, e_commit) = (e("cannot start"), e("cannot commit"));
    let e_ctx = e(&format!("cannot label the {}'s writes", job.what));
    let e_fk = e("cannot check foreign keys");
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(e_begin)?;
    let touched: HashSet<&TableName> = job.steps.iter().map(|s| &s.step.table.name).collect();
    let mut check: Vec<String> = job
        .foreign_keys
        .iter()
        .filter(|f| touched.contains(&f.child) || touched.contains(&f.parent))
        .map(|f| f.child.name.as_str().to_string())
        .collect();
    check.sort();
    check.dedup();
    let fk_before = fk_violations(&tx, &check).map_err(e_fk)?;
    if let Some(label) = job.label {
        tx.execute(
            &format!(
                "INSERT INTO {} (\"id\", \"tx\", \"login\", \"host\", \"app\", \"client_ip\") \
                 VALUES (1, ?1, ?2, ?3, ?4, NULL)",
                Ident::new(objects::CONTEXT)?.sqlite()
            ),
            rusqlite::params![label.tag, label.login, label.host, label.app],
        )
        .map_err(e_ctx)?;
    }
    let results = run_steps(&tx, job, hooks)?;
    if job.label.is_some() {
        tx.execute(
            &format!(
                "DELETE FROM {} WHERE \"id\" = 1",
                Ident::new(objects::CONTEXT)?.sqlite()
            ),
            [],
        )
        .map_err(target_err(
            &tx,
            &format!("cannot remove the {}'s label", job.what),
        ))?;
    }
    let fk_after =
        fk_violations(&tx, &check).map_err(target_err(&tx, "cannot check foreign keys"))?;
    if fk_after > fk_before {
        return Err(ApplyError::ForeignKeys {
            what: job.what.to_string(),
            count: fk_after - fk_before,
        });
    }
    hooks.before_commit(&results)?;
    failpoint::hit("undo-before-source-commit");
    tx.commit().map_err(e_commit)?;
    failpoint::hit("undo-after-source-commit");
    Ok(results)
}

/// Runs `job`'s steps inside `tx`, checking each guard; `Ok` only when every step applied (or
/// was skipped or forced as `job.on_conflict` says). Nothing is committed here.
fn run_steps(
    tx: &rusqlite::Transaction<'_>,
    job: &Job<'_>,
    hooks: &mut dyn Hooks,
) -> Result<Vec<StepResult>, ApplyError> {
    let on_conflict = job.on_conflict;
    let mut results = Vec::with_capacity(job.steps.len());
    let mut guards = Vec::new();
    let half = job.steps.len() / 2;
    let mut rendered = Rendered::new(on_conflict == OnConflict::Force || job.any_equal_row);
    let mut step_error: Option<rusqlite::Error> = None;
    for (n, s) in job.steps.iter().enumerate() {
        if n == half {
            failpoint::hit("undo-mid-apply");
        }
        if n % 4096 == 0 && n > 0 {
            hooks.progress(n);
        }
        let step = s.step;
        let r = rendered.get(&step)?;
        let mut held = true;
        // Several equal rows of a table without a key, and the job may touch any of them: the
        // guard held (one of them is the expected row), and the unguarded statements act on
        // exactly one.
        let mut any_of_equal = false;
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
            if count > 1 && on_conflict != OnConflict::Force && !job.any_equal_row {
                return Err(ApplyError::Ambiguous {
                    what: job.what.to_string(),
                    change: s.id,
                    table: step.table.name.to_string(),
                    count,
                });
            }
            held = count == 1 || (job.any_equal_row && count > 1);
            any_of_equal = job.any_equal_row && count > 1;
        }
        let changed = if held && any_of_equal {
            let mut all = true;
            for f in &r.forced {
                match run(tx, f, &step) {
                    Ok(Some(_)) => {}
                    Ok(None) => all = false,
                    Err(err) => {
                        step_error = Some(err);
                        break;
                    }
                }
            }
            if step_error.is_some() {
                break;
            }
            all
        } else if held {
            match run(tx, &r.guarded, &step) {
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
                    guards.push(s.comment.to_string());
                    Outcome::Skipped
                }
                OnConflict::Skip => Outcome::Skipped,
                OnConflict::Force => {
                    let mut failed = None;
                    for f in &r.forced {
                        match run(tx, f, &step) {
                            Ok(Some(_)) => {}
                            Ok(None) => failed = Some(s.comment),
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
            index: n,
            id: s.id,
            action: step.action(),
            outcome,
        });
    }
    if let Some(err) = step_error {
        return Err(target_err(
            tx,
            &format!("{} step failed", article(job.what)),
        )(err));
    }
    if !guards.is_empty() {
        return Err(ApplyError::Guards {
            what: job.what.to_string(),
            rows: guards,
        });
    }
    Ok(results)
}

/// `an undo`, `a redo`: the job's word with its article.
fn article(what: &str) -> String {
    let vowel = what.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {what}", if vowel { "an" } else { "a" })
}

/// Applies `job` inside `tx`, a transaction the caller owns and commits: for a copy that
/// records its own position in the same transaction (a replica). No label, no foreign-key
/// check: the caller's database holds no capture and no foreign keys of its own.
pub fn apply_within(
    tx: &rusqlite::Transaction<'_>,
    job: &Job<'_>,
) -> Result<Vec<StepResult>, ApplyError> {
    struct Quiet;
    impl Hooks for Quiet {
        fn link(&mut self, _tx: i64) -> Result<(), ApplyError> {
            Ok(())
        }
        fn before_commit(&mut self, _results: &[StepResult]) -> Result<(), ApplyError> {
            Ok(())
        }
    }
    run_steps(tx, job, &mut Quiet)
}
