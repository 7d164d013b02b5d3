//! Capture overhead on SQLite: the same statements on identical fresh databases with and
//! without capture installed, alternating which runs first, the median of several repetitions.
//!
//! * Bulk: 100,000 rows in one transaction, each operation one set-based statement (INSERT …
//!   SELECT, UPDATE of every non-key column, UPDATE of one column, DELETE … WHERE id >= 0 — a
//!   WHERE clause so the uncaptured run cannot use SQLite's truncate optimisation, which any
//!   trigger disables).
//! * Autocommit: 10,000 single-row INSERTs, each its own transaction, `synchronous=FULL` (WAL).

use std::path::Path;

use anyhow::Result;

use crate::fixture::{self, fill_sql, fresh_source, median, timed};
use crate::report::{Figure, Target};
use crate::Settings;

/// A bulk operation of the scenario.
#[derive(Clone, Copy)]
enum Bulk {
    Insert,
    UpdateAll,
    UpdateOne,
    Delete,
}

impl Bulk {
    fn name(self) -> &'static str {
        match self {
            Bulk::Insert => "INSERT",
            Bulk::UpdateAll => "UPDATE all columns",
            Bulk::UpdateOne => "UPDATE one column",
            Bulk::Delete => "DELETE",
        }
    }

    fn target(self) -> f64 {
        match self {
            Bulk::Insert | Bulk::Delete => 2.2,
            Bulk::UpdateAll | Bulk::UpdateOne => 3.0,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Bulk::Insert => fill_sql(),
            Bulk::UpdateAll => {
                "UPDATE items SET qty = qty + 1, price = price + 1.5, \
                 name = substr(name, 2) || 'x', note = substr(note, 2) || 'y'"
            }
            Bulk::UpdateOne => "UPDATE items SET qty = qty + 1",
            Bulk::Delete => "DELETE FROM items WHERE id >= 0",
        }
    }

    /// Seconds to run the operation over `rows` rows in one transaction on a fresh database.
    fn run_once(self, path: &Path, rows: i64, captured: bool) -> Result<f64> {
        let preload = if matches!(self, Bulk::Insert) {
            0
        } else {
            rows
        };
        let conn = fresh_source(path, preload, captured)?;
        let (secs, ()) = timed(|| {
            conn.execute_batch("BEGIN")?;
            match self {
                Bulk::Insert => {
                    conn.execute(self.sql(), [1, rows])?;
                }
                _ => {
                    conn.execute(self.sql(), [])?;
                }
            }
            conn.execute_batch("COMMIT")?;
            Ok(())
        })?;
        if captured {
            let staged = fixture::staged(&conn)?;
            let images = if matches!(self, Bulk::UpdateAll | Bulk::UpdateOne) {
                2 * rows
            } else {
                rows
            };
            anyhow::ensure!(
                staged == images,
                "{}: {staged} images staged, expected {images}",
                self.name()
            );
        }
        Ok(secs)
    }
}

/// Runs `measure(captured)` `reps` times each way, alternating which goes first; returns the
/// medians (without, with).
fn alternate(reps: usize, mut measure: impl FnMut(bool) -> Result<f64>) -> Result<(f64, f64)> {
    let (mut plain, mut captured) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        for with in [rep % 2 == 1, rep % 2 == 0] {
            let t = measure(with)?;
            if with {
                captured.push(t);
            } else {
                plain.push(t);
            }
        }
    }
    Ok((median(&plain), median(&captured)))
}

/// The capture scenarios.
pub fn run(s: &Settings, dir: &Path) -> Result<Vec<Figure>> {
    let rows: i64 = if s.quick { 2_000 } else { 100_000 };
    let reps = if s.quick { 1 } else { 5 };
    let path = dir.join("capture.db");
    let mut out = Vec::new();
    for op in [Bulk::Insert, Bulk::UpdateAll, Bulk::UpdateOne, Bulk::Delete] {
        let (plain, with) = alternate(reps, |captured| op.run_once(&path, rows, captured))?;
        out.push(Figure::new(
            "capture",
            format!("{} of {rows} rows, one transaction", op.name()),
            with / plain,
            "x",
            Target::AtMost(op.target()),
            format!(
                "median of {reps}: {:.1} ms with capture, {:.1} ms without",
                with * 1e3,
                plain * 1e3
            ),
        ));
    }

    let commits: i64 = if s.quick { 200 } else { 10_000 };
    let reps = if s.quick { 1 } else { 3 };
    let (plain, with) = alternate(reps, |captured| {
        let conn = fresh_source(&path, 0, captured)?;
        let mut ins = conn.prepare(
            "INSERT INTO items (id, qty, price, name, note) \
             VALUES (?1, ?1 % 97, ?1 * 0.25, printf('name-%019d', ?1), printf('%0152d', ?1))",
        )?;
        let (secs, ()) = timed(|| {
            for i in 1..=commits {
                ins.execute([i])?;
            }
            Ok(())
        })?;
        Ok(secs)
    })?;
    out.push(Figure::new(
        "capture",
        format!("{commits} single-row autocommit INSERTs, synchronous=FULL"),
        with / plain,
        "x",
        Target::AtMost(1.10),
        format!(
            "median of {reps}: {:.3} s with capture, {:.3} s without ({:.0} µs vs {:.0} µs per commit)",
            with,
            plain,
            with / commits as f64 * 1e6,
            plain / commits as f64 * 1e6
        ),
    ));
    fixture::remove_db(&path);
    Ok(out)
}
