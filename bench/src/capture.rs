//! Capture overhead on SQLite: the same statements on identical fresh databases with and
//! without capture installed, alternating which runs first, the median of several repetitions.
//!
//! * Bulk: 100,000 rows in one transaction, each operation one set-based statement (INSERT …
//!   SELECT, UPDATE of every non-key column, UPDATE of one column, DELETE … WHERE id >= 0 — a
//!   WHERE clause so the uncaptured run cannot use SQLite's truncate optimisation, which any
//!   trigger disables).
//! * Autocommit: 10,000 single-row INSERTs, each its own transaction, `synchronous=FULL` (WAL).
//! * The floor, reported beside each bulk ratio: the same statements under a bare copy trigger
//!   (each row image copied into a table with an op code and nothing else: no sequence, no
//!   who/when/where, no REPLACE handling), so the cost of copying a row at all is visible in
//!   the same run.

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
    fn run_once(self, path: &Path, rows: i64, with: With) -> Result<f64> {
        let preload = if matches!(self, Bulk::Insert) {
            0
        } else {
            rows
        };
        let captured = with == With::Capture;
        let conn = fresh_source(path, preload, captured)?;
        if with == With::Floor {
            conn.execute_batch(FLOOR_SQL)?;
        }
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

/// What the statements run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum With {
    /// No trigger.
    Nothing,
    /// rowtrail's capture.
    Capture,
    /// The bare copy trigger ([`FLOOR_SQL`]).
    Floor,
}

/// A bare copy trigger: every row image into one table with its op code, nothing more.
const FLOOR_SQL: &str = "
    CREATE TABLE floor_copy (seq INTEGER PRIMARY KEY, op, id, qty, price, name, note);
    CREATE TRIGGER floor_i AFTER INSERT ON items BEGIN
      INSERT INTO floor_copy (op, id, qty, price, name, note)
        VALUES ('I', NEW.id, NEW.qty, NEW.price, NEW.name, NEW.note); END;
    CREATE TRIGGER floor_u AFTER UPDATE ON items BEGIN
      INSERT INTO floor_copy (op, id, qty, price, name, note)
        VALUES ('B', OLD.id, OLD.qty, OLD.price, OLD.name, OLD.note),
               ('A', NEW.id, NEW.qty, NEW.price, NEW.name, NEW.note); END;
    CREATE TRIGGER floor_d AFTER DELETE ON items BEGIN
      INSERT INTO floor_copy (op, id, qty, price, name, note)
        VALUES ('D', OLD.id, OLD.qty, OLD.price, OLD.name, OLD.note); END;";

/// Runs `measure(captured)` `reps` times each way, alternating which goes first. Returns the
/// median of the per-repetition ratios (each from two runs made back to back, so a disk that
/// other work slows affects both alike) and the median times (without, with).
fn alternate(reps: usize, mut measure: impl FnMut(bool) -> Result<f64>) -> Result<(f64, f64, f64)> {
    let (mut plain, mut captured, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let (mut p, mut c) = (0.0, 0.0);
        for with in [rep % 2 == 1, rep % 2 == 0] {
            let t = measure(with)?;
            if with {
                c = t;
            } else {
                p = t;
            }
        }
        plain.push(p);
        captured.push(c);
        ratios.push(c / p);
    }
    Ok((median(&ratios), median(&plain), median(&captured)))
}

/// Single-row autocommit INSERTs into two fresh databases, one captured, interleaved in blocks
/// of 100 commits (the order flipping every block), so that whatever else slows the disk's
/// fsync slows both alike. Returns the median of the per-block-pair ratios and the total
/// seconds (without, with).
fn autocommit(path: &Path, commits: i64) -> Result<(f64, f64, f64)> {
    let plain_path = path.with_extension("plain.db");
    let conns = [
        fresh_source(&plain_path, 0, false)?,
        fresh_source(path, 0, true)?,
    ];
    let sql = "INSERT INTO items (id, qty, price, name, note) \
               VALUES (?1, ?1 % 97, ?1 * 0.25, printf('name-%019d', ?1), printf('%0152d', ?1))";
    let mut stmts = [conns[0].prepare(sql)?, conns[1].prepare(sql)?];
    let block = 100;
    let (mut totals, mut ratios) = ([0.0f64; 2], Vec::new());
    let mut next = 1i64;
    let mut flip = false;
    while next <= commits {
        let last = (next + block - 1).min(commits);
        let mut secs = [0.0f64; 2];
        let order = if flip { [1, 0] } else { [0, 1] };
        for which in order {
            let stmt = &mut stmts[which];
            let (t, ()) = timed(|| {
                for i in next..=last {
                    stmt.execute([i])?;
                }
                Ok(())
            })?;
            secs[which] = t;
            totals[which] += t;
        }
        ratios.push(secs[1] / secs[0]);
        flip = !flip;
        next = last + 1;
    }
    drop(stmts);
    drop(conns);
    fixture::remove_db(&plain_path);
    Ok((median(&ratios), totals[0], totals[1]))
}

/// The capture scenarios.
pub fn run(s: &Settings, dir: &Path) -> Result<Vec<Figure>> {
    let rows: i64 = if s.quick { 2_000 } else { 100_000 };
    let reps = if s.quick { 1 } else { 5 };
    let path = dir.join("capture.db");
    let mut out = Vec::new();
    for op in [Bulk::Insert, Bulk::UpdateAll, Bulk::UpdateOne, Bulk::Delete] {
        let (floor, _, _) = alternate(reps, |copy| {
            op.run_once(&path, rows, if copy { With::Floor } else { With::Nothing })
        })?;
        let (ratio, plain, with) = alternate(reps, |captured| {
            op.run_once(
                &path,
                rows,
                if captured {
                    With::Capture
                } else {
                    With::Nothing
                },
            )
        })?;
        out.push(Figure::new(
            "capture",
            format!("{} of {rows} rows, one transaction", op.name()),
            ratio,
            "x",
            Target::AtMost(op.target()),
            format!(
                "median of {reps} paired runs; {:.1} ms with capture, {:.1} ms without (medians)",
                with * 1e3,
                plain * 1e3
            ),
        ));
        out.push(Figure::new(
            "capture",
            format!("{}: the floor, a bare copy trigger", op.name()),
            floor,
            "x",
            Target::Report,
            format!(
                "median of {reps} paired runs; each image copied with an op code, nothing else"
            ),
        ));
    }

    let commits: i64 = if s.quick { 200 } else { 10_000 };
    let (ratio, plain, with) = autocommit(&path, commits)?;
    out.push(Figure::new(
        "capture",
        format!("{commits} single-row autocommit INSERTs, synchronous=FULL"),
        ratio,
        "x",
        Target::AtMost(1.10),
        format!(
            "median of {} block ratios; totals {:.3} s with capture, {:.3} s without ({:.0} µs vs {:.0} µs per commit)",
            (commits + 99) / 100,
            with,
            plain,
            with / commits as f64 * 1e6,
            plain / commits as f64 * 1e6
        ),
    ));
    fixture::remove_db(&path);
    Ok(out)
}
