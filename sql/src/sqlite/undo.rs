//! SQLite's renderer of [`Step`]s: one guarded statement per step.
//!
//! Each step renders to a *guarded* statement that changes exactly one row when the guard holds
//! and none otherwise, and to *forced* statements that make the row equal `target` whatever it
//! is now (for `--force`). Values are written either inline as exact literals (for the script a
//! DBA reads and may run by hand) or as bound parameters `?N` (for applying), from one renderer.
//!
//! Guards compare each column with its storage class and bytes: `typeof(c) = 'integer'
//! AND c = 1 COLLATE BINARY`, so integer 1, real 1.0 and text '1' never match each other and a
//! NOCASE column never matches another case. Tables without a primary key are matched on the
//! whole row, and a guarded statement touches a row only when exactly one row matches.

mod literals;
mod script;
mod shape;

pub use literals::literal;
pub use script::script;
pub use shape::shape;

pub use crate::undo::{OnConflict, ScriptStep, Step};
use crate::{Dialect, SqlError, Table, Value};

/// The dialect every statement here is written in.
const D: Dialect = Dialect::Sqlite;

/// How values reach the statement text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// As exact literals (scripts).
    Inline,
    /// As numbered parameters `?1`, `?2`, … (applying through a driver).
    Bound,
}

/// Which of a step's two rows a bound value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// [`Step::expect`].
    Expect,
    /// [`Step::target`].
    Target,
}

/// Where a bound parameter's value comes from: a column of one of the step's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The row.
    pub side: Side,
    /// The column's position in the table.
    pub column: usize,
}

impl Origin {
    /// The value this parameter takes for `step`: the same column of the same row. A
    /// statement rendered for one step binds another step of the same [`shape`] through its
    /// origins; `None` when `step` lacks that row.
    pub fn value<'a>(&self, step: &Step<'a>) -> Option<&'a Value> {
        match self.side {
            Side::Expect => step.expect,
            Side::Target => step.target,
        }
        .and_then(|row| row.get(self.column))
    }
}

/// A statement and the parameters it binds (empty when values are inline).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// Values for `?1`, `?2`, … in order.
    pub params: Vec<Value>,
    /// Where each of `params` comes from, in the same order.
    pub origins: Vec<Origin>,
}

impl Statement {
    fn empty() -> Self {
        Self {
            sql: String::new(),
            params: Vec::new(),
            origins: Vec::new(),
        }
    }
}

/// One step, rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedStep {
    /// Changes exactly one row when the guard holds, none otherwise.
    pub guarded: Statement,
    /// For a table without a key: counts the rows that match `expect` (0, 1 or 2 = "several").
    pub matching: Option<Statement>,
    /// Make the row equal `target` whatever it is now; run only when `guarded` changed nothing.
    pub forced: Vec<Statement>,
}

/// Renders `step`. `only_if` (a SQL condition, inline scripts only) is added to
/// every forced statement, so a script can run them only after the guarded one changed nothing.
pub fn render(
    step: &Step<'_>,
    values: Values,
    only_if: Option<&str>,
) -> Result<RenderedStep, SqlError> {
    render_parts(step, values, Some(only_if))
}

/// Like [`render`] without the forced statements (`forced` is empty): what applying needs
/// unless the mode is force.
pub fn render_guarded(step: &Step<'_>, values: Values) -> Result<RenderedStep, SqlError> {
    render_parts(step, values, None)
}

fn render_parts(
    step: &Step<'_>,
    values: Values,
    forced: Option<Option<&str>>,
) -> Result<RenderedStep, SqlError> {
    if step.expect.is_none() && step.target.is_none() {
        return Err(SqlError::Uncapturable {
            table: step.table.name.to_string(),
            reason: "an undo step must expect a row or produce one".into(),
        });
    }
    let r = Renderer { t: step.table };
    let mut rendered = RenderedStep {
        guarded: Statement::empty(),
        matching: None,
        forced: Vec::new(),
    };
    let keyed = step.table.key().is_some();
    let mut p = Params::new(values);
    let (expect, target) = (
        step.expect.map(|v| Row::new(Side::Expect, v)),
        step.target.map(|v| Row::new(Side::Target, v)),
    );
    rendered.guarded.sql = match (expect, target) {
        (Some(e), Some(t)) => format!(
            "UPDATE {} SET {} WHERE {}",
            r.table(),
            r.assignments(t, &mut p),
            r.one_row(e, step.rowid, true, &mut p)
        ),
        (Some(e), None) => format!(
            "DELETE FROM {} WHERE {}",
            r.table(),
            r.one_row(e, step.rowid, true, &mut p)
        ),
        (None, Some(t)) if keyed => format!(
            "INSERT INTO {} ({}) SELECT {} WHERE NOT EXISTS (SELECT 1 FROM {} WHERE {})",
            r.table(),
            r.columns(),
            r.row_values(t, &mut p),
            r.table(),
            r.key_equals(t, &mut p)
        ),
        (None, Some(t)) => format!(
            "INSERT INTO {} ({}) SELECT {}",
            r.table(),
            r.columns(),
            r.row_values(t, &mut p)
        ),
        (None, None) => unreachable!("checked above"),
    };
    (rendered.guarded.params, rendered.guarded.origins) = p.take();
    if !keyed {
        if let Some(e) = expect {
            let sql = format!(
                "SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} LIMIT 2)",
                r.table(),
                r.matches(e, &mut p)
            );
            let (params, origins) = p.take();
            rendered.matching = Some(Statement {
                sql,
                params,
                origins,
            });
        }
    }
    let Some(only_if) = forced else {
        return Ok(rendered);
    };
    let and = |first: bool| match (only_if, first) {
        (None, _) => String::new(),
        (Some(c), true) => format!(" WHERE {c}"),
        (Some(c), false) => format!(" AND {c}"),
    };
    let mut forced = Vec::new();
    let mut push = |sql: String, p: &mut Params| {
        let (params, origins) = p.take();
        forced.push(Statement {
            sql,
            params,
            origins,
        })
    };
    // Make the row equal `target`: update whatever row holds its place, else insert it.
    let upsert =
        |place: Row<'_>, t: Row<'_>, push: &mut dyn FnMut(String, &mut Params), p: &mut Params| {
            let sql = format!(
                "UPDATE {} SET {} WHERE {}{}",
                r.table(),
                r.assignments(t, p),
                r.one_row(place, step.rowid, false, p),
                and(false)
            );
            push(sql, p);
            let sql = format!(
                "INSERT INTO {} ({}) SELECT {} WHERE {}{}",
                r.table(),
                r.columns(),
                r.row_values(t, p),
                r.nothing_changed(),
                and(false)
            );
            push(sql, p);
        };
    match (expect, target) {
        (Some(e), Some(t)) => upsert(e, t, &mut push, &mut p),
        (None, Some(t)) if keyed => upsert(t, t, &mut push, &mut p),
        (None, Some(t)) => {
            let sql = format!(
                "INSERT INTO {} ({}) SELECT {}{}",
                r.table(),
                r.columns(),
                r.row_values(t, &mut p),
                and(true)
            );
            push(sql, &mut p);
        }
        (Some(e), None) => {
            let sql = format!(
                "DELETE FROM {} WHERE {}{}",
                r.table(),
                r.one_row(e, step.rowid, false, &mut p),
                and(false)
            );
            push(sql, &mut p);
        }
        (None, None) => unreachable!("checked above"),
    }
    rendered.forced = forced;
    Ok(rendered)
}

/// One of a step's rows, knowing which it is.
#[derive(Clone, Copy)]
struct Row<'a> {
    side: Side,
    values: &'a [Value],
}

impl<'a> Row<'a> {
    fn new(side: Side, values: &'a [Value]) -> Self {
        Self { side, values }
    }
}

/// Collects bound parameters (and where each comes from), or writes values inline.
struct Params {
    mode: Values,
    bound: Vec<Value>,
    origins: Vec<Origin>,
}

impl Params {
    fn new(mode: Values) -> Self {
        Self {
            mode,
            bound: Vec::new(),
            origins: Vec::new(),
        }
    }

    /// The SQL for column `column` of `row`: a literal, or the next `?N`.
    fn value(&mut self, row: Row<'_>, column: usize) -> String {
        let v = &row.values[column];
        match self.mode {
            Values::Inline => literal(v),
            Values::Bound => {
                self.bound.push(v.clone());
                self.origins.push(Origin {
                    side: row.side,
                    column,
                });
                let n = self.bound.len();
                match v {
                    // Text that is not UTF-8 travels as a blob; the cast makes it text again.
                    Value::Text(t) if std::str::from_utf8(t).is_err() => {
                        format!("CAST(?{n} AS TEXT)")
                    }
                    _ => format!("?{n}"),
                }
            }
        }
    }

    /// The parameters collected so far and their origins; numbering starts again at `?1`.
    fn take(&mut self) -> (Vec<Value>, Vec<Origin>) {
        (
            std::mem::take(&mut self.bound),
            std::mem::take(&mut self.origins),
        )
    }
}

struct Renderer<'a> {
    t: &'a Table,
}

impl Renderer<'_> {
    fn table(&self) -> String {
        self.t.name.quoted(D)
    }

    fn col(&self, i: usize) -> String {
        self.t.columns[i].name.quoted(D).to_string()
    }

    /// Columns undo writes (computed and server-assigned ones are left to the engine).
    fn writable(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.t.columns.len()).filter(|&i| self.t.columns[i].writable())
    }

    fn columns(&self) -> String {
        self.writable()
            .map(|i| self.col(i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn row_values(&self, row: Row<'_>, p: &mut Params) -> String {
        self.writable()
            .map(|i| p.value(row, i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn assignments(&self, row: Row<'_>, p: &mut Params) -> String {
        self.writable()
            .map(|i| format!("{} = {}", self.col(i), p.value(row, i)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `c = v` over the key columns of `row`: the engine's own equality, as its unique index
    /// sees it (for "is the key free").
    fn key_equals(&self, row: Row<'_>, p: &mut Params) -> String {
        let key = self.t.key().unwrap_or(&[]);
        key.iter()
            .map(|&i| match &row.values[i] {
                Value::Null => format!("{} IS NULL", self.col(i)),
                _ => format!("{} = {}", self.col(i), p.value(row, i)),
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The row equals `row` exactly, column by column (key columns first, for the index).
    fn matches(&self, row: Row<'_>, p: &mut Params) -> String {
        let key = self.t.key().unwrap_or(&[]).to_vec();
        let order = key
            .iter()
            .copied()
            .chain((0..self.t.columns.len()).filter(|i| !key.contains(i)));
        order
            .map(|i| self.exactly(row, i, p))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    fn exactly(&self, row: Row<'_>, i: usize, p: &mut Params) -> String {
        let c = self.col(i);
        let v = &row.values[i];
        if *v == Value::Null {
            return format!("{c} IS NULL");
        }
        let class = match v {
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Blob(_) => "blob",
            _ => "text",
        };
        format!(
            "(typeof({c}) = '{class}' AND {c} = {} COLLATE BINARY)",
            p.value(row, i)
        )
    }

    /// Selects the one row the step acts on. With `guard`, a row that equals `row` exactly (and,
    /// without a key, only when no other row does); without, the row at `row`'s key (or, without
    /// a key, one equal row, preferring the recorded rowid).
    fn one_row(&self, row: Row<'_>, rowid: Option<i64>, guard: bool, p: &mut Params) -> String {
        if self.t.key().is_some() {
            return if guard {
                self.matches(row, p)
            } else {
                self.key_equals(row, p)
            };
        }
        let table = self.table();
        let prefer = rowid.map_or(String::new(), |r| format!("rowid = {r} DESC, "));
        let pick = format!(
            "rowid = (SELECT rowid FROM {table} WHERE {} ORDER BY {prefer}rowid LIMIT 1)",
            self.matches(row, p)
        );
        if guard {
            format!(
                "{pick} AND (SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {} LIMIT 2)) = 1",
                self.matches(row, p)
            )
        } else {
            pick
        }
    }

    fn nothing_changed(&self) -> &'static str {
        "changes() = 0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Column, Ident, TableName};

    /// A three-column table with a hostile name, keyed on the columns `key` (none: no key).
    pub(super) fn table(key: Vec<usize>) -> Table {
        let col = |n: &str, t: &str| Column::new(Ident::new(n).unwrap(), t, true);
        Table {
            name: TableName::bare(Ident::new("we\"ird").unwrap()),
            columns: vec![col("id", "INTEGER"), col("v", ""), col("it's", "TEXT")],
            primary_key: key,
            unique_keys: vec![],
            rowid: true,
        }
    }

    #[test]
    fn guarded_update_matches_every_column_by_class_and_bytes() {
        let t = table(vec![0]);
        let before = [Value::Integer(1), Value::Real(1.0), Value::text("a'b")];
        let after = [Value::Integer(1), Value::text("1"), Value::Null];
        let step = Step {
            table: &t,
            expect: Some(&after),
            target: Some(&before),
            rowid: Some(1),
        };
        let r = render(&step, Values::Inline, None).unwrap();
        assert_eq!(
            r.guarded.sql,
            "UPDATE \"we\"\"ird\" SET \"id\" = 1, \"v\" = 1.0, \"it's\" = 'a''b' WHERE \
             (typeof(\"id\") = 'integer' AND \"id\" = 1 COLLATE BINARY) AND \
             (typeof(\"v\") = 'text' AND \"v\" = '1' COLLATE BINARY) AND \"it's\" IS NULL"
        );
        assert!(r.matching.is_none());
        let b = render(&step, Values::Bound, None).unwrap();
        assert_eq!(b.guarded.params.len(), 5);
        assert!(b.guarded.sql.contains("\"v\" = ?2") && b.guarded.sql.contains("?5 COLLATE"));
    }

    #[test]
    fn reinsert_requires_a_free_key_and_force_upserts() {
        let t = table(vec![0]);
        let row = [
            Value::Integer(7),
            Value::Blob(vec![0, 255]),
            Value::Text(vec![0xff]),
        ];
        let step = Step {
            table: &t,
            expect: None,
            target: Some(&row),
            rowid: None,
        };
        let r = render(&step, Values::Inline, Some("1 = 1")).unwrap();
        assert_eq!(
            r.guarded.sql,
            "INSERT INTO \"we\"\"ird\" (\"id\", \"v\", \"it's\") SELECT 7, x'00ff', CAST(x'ff' AS TEXT) \
             WHERE NOT EXISTS (SELECT 1 FROM \"we\"\"ird\" WHERE \"id\" = 7)"
        );
        assert_eq!(r.forced.len(), 2);
        assert!(r.forced[0].sql.starts_with("UPDATE") && r.forced[0].sql.ends_with("AND 1 = 1"));
        assert!(r.forced[1].sql.contains("WHERE changes() = 0 AND 1 = 1"));
    }

    #[test]
    fn keyless_rows_are_touched_only_when_exactly_one_matches() {
        let t = table(vec![]);
        let row = [Value::Integer(1), Value::Null, Value::text("x")];
        let step = Step {
            table: &t,
            expect: Some(&row),
            target: None,
            rowid: Some(9),
        };
        let r = render(&step, Values::Inline, None).unwrap();
        assert!(r
            .guarded
            .sql
            .starts_with("DELETE FROM \"we\"\"ird\" WHERE rowid = (SELECT rowid"));
        assert!(r
            .guarded
            .sql
            .contains("ORDER BY rowid = 9 DESC, rowid LIMIT 1)"));
        assert!(r.guarded.sql.ends_with("LIMIT 2)) = 1"));
        assert!(r
            .matching
            .unwrap()
            .sql
            .starts_with("SELECT count(*) FROM (SELECT 1"));
        assert!(
            !r.forced[0].sql.contains("LIMIT 2"),
            "force skips the ambiguity check"
        );
    }

    #[test]
    fn literals_are_exact_and_typed() {
        let lit = |v: Value| literal(&v);
        assert_eq!(lit(Value::Real(1.0)), "1.0");
        assert_eq!(lit(Value::Real(1e300)), "1e300");
        assert_eq!(lit(Value::Real(f64::NEG_INFINITY)), "-9e999");
        assert_eq!(lit(Value::Real(f64::NAN)), "NULL");
        assert_eq!(lit(Value::Integer(i64::MIN)), "-9223372036854775808");
        assert_eq!(lit(Value::text("a\0b")), "CAST(x'610062' AS TEXT)");
        assert_eq!(lit(Value::Blob(vec![])), "x''");
    }
}
