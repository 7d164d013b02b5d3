//! Undo plans as T-SQL: one transaction, guarded statements, typed literals, identity inserts
//! and an order foreign keys accept.
//!
//! The steps come from the restore tool's planner ([`crate::undo::ScriptStep`]: what a row must
//! be now, what it must become). This module writes them for SQL Server:
//!
//! * **One transaction, in batches of at most [`STEPS_PER_BATCH`] steps**: `SET XACT_ABORT ON;
//!   BEGIN TRANSACTION; …` `GO` … `COMMIT`. Any error, or a guard that does not hold in refuse
//!   mode (`THROW`), rolls everything back; the batches after it do not run.
//! * **Guards**: a statement changes the row only if it equals the archived image exactly:
//!   text compared as UTF-16 code units with a binary collation and equal byte length (so case,
//!   accents and trailing spaces count), `datetimeoffset` by instant *and* offset, `xml` by its
//!   text (as code units too), CLR types by their serialisation, binary by bytes and length. Key columns are also
//!   compared plainly first so the key's index is used. A re-insert needs its key free
//!   (`UPDLOCK, HOLDLOCK`, so no one takes it meanwhile); a table without a key is touched only
//!   when exactly one row matches.
//! * **Typed literals** that convert back to the same value: `CAST(N'…' AS datetime2(7))`,
//!   `CAST(12.3400 AS decimal(19,4))`, `CAST(1.0000000000000002E0 AS float)` (the shortest digits
//!   that read back to the same double), `CAST(N'…' AS uniqueidentifier)`, `0x…` for bytes, control
//!   characters as `NCHAR(n)` so no editor or line-ending conversion can change them.
//! * **Identity**: re-inserts into a table with an `IDENTITY` column run between
//!   `SET IDENTITY_INSERT … ON` and `OFF` (one table at a time, as SQL Server requires);
//!   updates never assign an identity column (SQL Server forbids it, and it never changes).
//! * **Never written**: computed columns, `rowversion` and `GENERATED ALWAYS` columns (temporal
//!   periods, ledger columns: the server assigns them; writing one is Msg 13536/13537). Computed
//!   columns take part in guards (their value follows from the others); a `rowversion` or a
//!   `GENERATED ALWAYS` column does not: every write gives the row a new one, the undo's own earlier steps on the same row
//!   included, so a guard on it would refuse multi-level undo of a row and any redo.
//! * **Foreign keys and unique keys**: SQL Server cannot defer constraints.
//!   [`order_for_foreign_keys`] keeps the planner's newest-first order, which the constraints
//!   (unique keys included) accepted when the changes were made, and moves a step only where a
//!   foreign key needs it: re-inserts into parents before re-inserts into their children,
//!   deletes from children before deletes from their parents ([`dependency_order`]). In refuse
//!   mode consecutive re-inserts into one table are one statement, whose foreign keys SQL
//!   Server checks at its end, so a self-referencing table's rows go back whatever their order.
//! * **Outcomes**: in skip and force modes the script ends with one result set, `[step]` and
//!   `[outcome]` (`skipped` or `forced`), naming each step whose guard did not hold; every other
//!   step applied. `rowtrail undo --apply` journals each step's outcome from it.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::types::MssqlType;
use super::{Captured, Script};
use crate::literal::Literal;
use crate::undo::{OnConflict, ScriptStep, Step};
pub use crate::ForeignKey;
use crate::{Column, SqlError, Table, TableName, Value};

fn depth(t: &TableName, fks: &[ForeignKey], seen: &mut Vec<TableName>) -> usize {
    if seen.contains(t) || seen.len() > 64 {
        return 0; // a cycle (or a self-reference): no order between its members
    }
    seen.push(t.clone());
    let d = fks
        .iter()
        .filter(|fk| &fk.child == t && &fk.parent != t)
        .map(|fk| 1 + depth(&fk.parent, fks, seen))
        .max()
        .unwrap_or(0);
    seen.pop();
    d
}

/// The identity of the row a step acts on: its table and key (the whole row without a key).
fn row_identity(step: &Step<'_>) -> String {
    let row = step.expect.or(step.target).unwrap_or(&[]);
    let cols: Vec<usize> = match step.table.key() {
        Some(k) => k.to_vec(),
        None => (0..row.len()).collect(),
    };
    let mut s = step.table.name.quoted(crate::Dialect::Mssql);
    for i in cols {
        let _ = write!(s, "|{:?}", row.get(i));
    }
    s
}

/// The order in which SQL Server's immediate foreign-key checks accept every statement, as
/// indices into `steps`, moving as few steps as the foreign keys need.
///
/// The planner's order (newest first) is itself one the constraints accepted when the changes
/// were made, unique keys included: a row deleted and then replaced by another with the same
/// natural key is undone by deleting the new row before re-inserting the old. So that order
/// stands, and a step moves only where a foreign key needs it: a re-insert into a referenced
/// (parent) table goes before the re-inserts into the tables referencing it, and a delete from
/// a referencing (child) table before the deletes from the tables it references. Among the
/// steps free to go, the planner's earliest goes first (a stable topological order). When a row
/// has more than one step (multi-level undo of one row, or a key-changing update), the
/// planner's order is kept as it is. (Consecutive re-inserts into one table are written as one
/// statement in refuse mode, see [`script`], so a self-referencing table's rows go back whole.)
pub fn dependency_order(steps: &[ScriptStep<'_>], fks: &[ForeignKey]) -> Vec<usize> {
    let mut rows = HashSet::new();
    let keyless_tables = steps
        .iter()
        .filter(|s| s.step.table.key().is_none())
        .count();
    let repeated = steps.iter().any(|s| !rows.insert(row_identity(&s.step)));
    let planner: Vec<usize> = (0..steps.len()).collect();
    if repeated || fks.is_empty() || keyless_tables > 1 {
        return planner;
    }
    let mut depths: HashMap<TableName, usize> = HashMap::new();
    for s in steps {
        let n = &s.step.table.name;
        if !depths.contains_key(n) {
            let d = depth(n, fks, &mut Vec::new());
            depths.insert(n.clone(), d);
        }
    }
    // Steps fall in classes by action and depth (deeper tables reference shallower ones): a
    // re-insert waits for the re-inserts into shallower tables, a delete for the deletes from
    // deeper ones; updates never wait. Each class keeps the planner's order.
    use std::collections::{BTreeMap, VecDeque};
    let mut classes: BTreeMap<(u8, usize), VecDeque<usize>> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        let kind = match s.step.action() {
            "insert" => 0,
            "delete" => 2,
            _ => 1,
        };
        classes
            .entry((kind, depths[&s.step.table.name]))
            .or_default()
            .push_back(i);
    }
    let mut order = Vec::with_capacity(steps.len());
    while order.len() < steps.len() {
        let free = |&(kind, d): &(u8, usize)| -> bool {
            classes.iter().all(|(&(k, e), q)| {
                q.is_empty()
                    || match (kind, k) {
                        (0, 0) => e >= d,
                        (2, 2) => e <= d,
                        _ => true,
                    }
            })
        };
        let pick = classes
            .iter()
            .filter(|(c, q)| !q.is_empty() && free(c))
            .min_by_key(|(_, q)| q[0])
            .map(|(c, _)| *c)
            .expect("the shallowest re-inserts and the deepest deletes are always free");
        let q = classes.get_mut(&pick).expect("picked");
        order.push(q.pop_front().expect("not empty"));
    }
    order
}

/// The phase order: re-inserts (parents first), updates, deletes (children first), as
/// indices into `steps`. Superseded by [`dependency_order`]: moving every re-insert before
/// every delete cannot undo a delete followed by an insert of another row with the same
/// unique key (Msg 2627). Kept, unchanged, for the restore tool's SQL Server target until it
/// moves to [`dependency_order`]. Steps of
/// one table keep their order. When a row has more than one step (multi-level undo of one row,
/// or a key-changing update), the planner's order is kept as it is.
pub fn foreign_key_order(steps: &[ScriptStep<'_>], fks: &[ForeignKey]) -> Vec<usize> {
    let mut rows = HashSet::new();
    let keyless_tables = steps
        .iter()
        .filter(|s| s.step.table.key().is_none())
        .count();
    let repeated = steps.iter().any(|s| !rows.insert(row_identity(&s.step)));
    let mut order: Vec<usize> = (0..steps.len()).collect();
    if repeated || fks.is_empty() || keyless_tables > 1 {
        return order;
    }
    let mut depths: HashMap<TableName, usize> = HashMap::new();
    for s in steps {
        let n = &s.step.table.name;
        if !depths.contains_key(n) {
            let d = depth(n, fks, &mut Vec::new());
            depths.insert(n.clone(), d);
        }
    }
    let phase = |s: &ScriptStep<'_>| -> (u8, i64) {
        let d = depths[&s.step.table.name] as i64;
        match s.step.action() {
            "insert" => (0, d),
            "update" => (1, 0),
            _ => (2, -d),
        }
    };
    order.sort_by_key(|&i| phase(&steps[i])); // stable: the planner's order within a phase and depth
    order
}

/// `steps` reordered by [`dependency_order`].
pub fn order_for_foreign_keys<'a>(
    steps: &[ScriptStep<'a>],
    fks: &[ForeignKey],
) -> Vec<ScriptStep<'a>> {
    dependency_order(steps, fks)
        .into_iter()
        .map(|i| steps[i])
        .collect()
}

/// Steps per batch of an undo script: a batch that holds more ends at the next step.
///
/// SQL Server answers a batch under `NOCOUNT` only when it ends, so one batch holding a large
/// undo sends nothing back for as long as it runs, and a command timeout cannot tell a slow
/// undo from a stuck one. Batches of at most this many steps each end (and answer) quickly; the
/// transaction spans them all.
pub const STEPS_PER_BATCH: usize = 100;

/// Bytes of T-SQL per batch past which a batch ends at the next step (rows with large values).
pub const BATCH_BYTES: usize = 1 << 20;

/// The whole undo (or redo) script for `steps`, in order, as one transaction over as many
/// batches as it needs.
///
/// The first batch sets `XACT_ABORT ON` and begins the transaction; each batch holds at most
/// [`STEPS_PER_BATCH`] steps (or [`BATCH_BYTES`] of text; consecutive re-inserts into one table
/// written as one statement are never split); every later batch starts with
/// `IF @@TRANCOUNT = 0 SET NOEXEC ON`, so after a failure (which rolled everything back) nothing
/// runs outside the transaction, even under a `sqlcmd` without `-b`; the last batch commits. In
/// skip and force modes each batch ends with its own outcome rows. Step numbers run on across
/// batches (`-- step N:` comments, the guards' messages).
pub fn script(
    header: &str,
    steps: &[ScriptStep<'_>],
    on_conflict: OnConflict,
) -> Result<Script, SqlError> {
    let mut h: Vec<String> = header.lines().map(str::to_string).collect();
    h.push("Run with: sqlcmd -b -I -S <server> -d <database> -i <this file>".into());
    h.push("One transaction: any conflict or error rolls every step back.".into());
    let outcomes = on_conflict != OnConflict::Stop;
    let declare = |s: &mut String| {
        s.push_str("DECLARE @n int;\n");
        if outcomes {
            s.push_str(&format!(
                "DECLARE {OUTCOMES} TABLE ([step] int NOT NULL PRIMARY KEY, [outcome] nvarchar(8) NOT NULL);\n"
            ));
        }
    };
    let end_batch = |s: &mut String| {
        if outcomes {
            s.push_str(&format!(
                "\nSELECT [step], [outcome] FROM {OUTCOMES} ORDER BY [step];"
            ));
        }
    };
    let mut script = Script::new("undo", h);
    let mut s = String::from("SET XACT_ABORT ON;\nSET NOCOUNT ON;\nBEGIN TRANSACTION;\n");
    declare(&mut s);
    let mut in_batch = 0;
    let mut i = 0;
    while i < steps.len() {
        // In refuse mode, consecutive re-inserts into one table are one INSERT: SQL Server
        // checks a statement's foreign keys when it ends, so rows of a self-referencing table
        // (one statement's delete, undone) go back whatever their order; any conflict rolls
        // everything back anyway.
        let run = if on_conflict == OnConflict::Stop {
            steps[i..]
                .iter()
                .take_while(|st| {
                    st.step.action() == "insert" && st.step.table.name == steps[i].step.table.name
                })
                .count()
        } else {
            1
        };
        if in_batch > 0 && (in_batch + run.max(1) > STEPS_PER_BATCH || s.len() >= BATCH_BYTES) {
            end_batch(&mut s);
            script.push(std::mem::take(&mut s));
            s.push_str("IF @@TRANCOUNT = 0 SET NOEXEC ON;\n");
            declare(&mut s);
            in_batch = 0;
        }
        for (k, st) in steps[i..i + run.max(1)].iter().enumerate() {
            let _ = writeln!(
                s,
                "\n-- step {}: {}",
                i + k + 1,
                super::script::comment_text(st.comment)
            );
        }
        if run > 1 {
            reinsert_together(&mut s, i + 1, &steps[i..i + run])?;
            i += run;
            in_batch += run;
        } else {
            step(&mut s, i + 1, &steps[i].step, on_conflict)?;
            i += 1;
            in_batch += 1;
        }
    }
    end_batch(&mut s);
    s.push_str("\nCOMMIT TRANSACTION;\nPRINT N'rowtrail undo: applied';");
    script.push(s);
    Ok(script)
}

/// The table variable the outcomes of skip and force modes collect in.
const OUTCOMES: &str = "@outcome";

/// What a script's outcome row says of a step whose guard did not hold (skip mode).
pub const OUTCOME_SKIPPED: &str = "skipped";
/// What a script's outcome row says of a step whose guard did not hold (force mode).
pub const OUTCOME_FORCED: &str = "forced";

/// A table's columns as captured, with their types checked.
struct Shape<'a> {
    t: &'a Table,
    types: Vec<Option<MssqlType>>,
}

impl<'a> Shape<'a> {
    fn new(t: &'a Table) -> Result<Self, SqlError> {
        // The same checks as capture (names sqlcmd would act on are refused here too).
        Captured::new(t)?;
        let types = t
            .columns
            .iter()
            .map(|c| MssqlType::parse(&c.sql_type).ok())
            .collect();
        Ok(Self { t, types })
    }
    fn name(&self) -> String {
        let mut n = self.t.name.clone();
        if n.schema.is_none() {
            n.schema = Some(super::ident("dbo"));
        }
        n.quoted(crate::Dialect::Mssql)
    }
    fn col(&self, i: usize) -> String {
        self.t.columns[i].name.mssql().to_string()
    }
    fn base(&self, i: usize) -> &str {
        self.types[i].as_ref().map_or("", |t| t.base.as_str())
    }
    fn ty(&self, i: usize) -> String {
        let c: &Column = &self.t.columns[i];
        match &self.types[i] {
            Some(t) if t.is_rowversion() => "binary(8)".into(),
            Some(t) => t.canonical(),
            None => c.sql_type.clone(),
        }
    }
    fn rowversion(&self, i: usize) -> bool {
        self.t.columns[i].server_assigned()
            || self.types[i].as_ref().is_some_and(|t| t.is_rowversion())
    }
    fn insertable(&self) -> Vec<usize> {
        (0..self.t.columns.len())
            .filter(|&i| self.t.columns[i].writable())
            .collect()
    }
    fn assignable(&self) -> Vec<usize> {
        self.insertable()
            .into_iter()
            .filter(|&i| !self.t.columns[i].identity)
            .collect()
    }
    fn has_identity(&self) -> bool {
        self.t.columns.iter().any(|c| c.identity && c.writable())
    }
}

/// `N'…'` with control characters as `NCHAR(n)`.
///
/// A concatenation of operands none of which is `nvarchar(max)` is itself limited to 4,000
/// characters and truncated silently, before any outer `CONVERT` could widen it; `+` evaluates
/// left to right, so the first operand is made `nvarchar(max)` and every partial result is one.
/// (One literal needs no conversion: a constant longer than 4,000 characters is already
/// `nvarchar(max)`.)
fn text_literal(t: &[u8]) -> String {
    let s = String::from_utf8_lossy(t);
    let mut parts = Vec::new();
    let mut run = String::new();
    for ch in s.chars() {
        if ch.is_control() {
            if !run.is_empty() {
                parts.push(Literal::mssql(&run).to_string());
                run.clear();
            }
            parts.push(format!("NCHAR({})", ch as u32));
        } else {
            run.push(ch);
        }
    }
    if !run.is_empty() || parts.is_empty() {
        parts.push(Literal::mssql(&run).to_string());
    }
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        let first = parts.remove(0);
        format!("CONVERT(nvarchar(max), {first}) + {}", parts.join(" + "))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::from("0x"), |mut s, x| {
        let _ = write!(s, "{x:02X}");
        s
    })
}

/// A double as text that reads back to the same bits, in float notation (`…E…`).
fn float_text(r: f64) -> String {
    let s = format!("{r:e}");
    s.replace('e', "E")
}

/// The digits of a decimal text as `decimal(p,s)`.
fn decimal_type(d: &str) -> String {
    let digits = d.trim_start_matches('-');
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let s = frac.len();
    let p = (int.trim_start_matches('0').len() + s).clamp(1, 38);
    format!("decimal({},{})", p.max(s), s)
}

/// `v` as a literal of column `i`'s type.
fn literal(shape: &Shape<'_>, i: usize, v: &Value) -> String {
    literal_as(shape.base(i), &shape.ty(i), v)
}

/// `v` as a literal of type `ty` (base name `base`).
fn literal_as(base: &str, ty: &str, v: &Value) -> String {
    let ty = ty.to_string();
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(n) if base == "bit" => format!("CAST({n} AS bit)"),
        Value::Integer(n) => n.to_string(),
        Value::Real(r) if base == "real" || ty == "real" => {
            format!("CAST({} AS real)", float_text(*r))
        }
        Value::Real(r) => format!("CAST({} AS float)", float_text(*r)),
        Value::Decimal(d) => {
            let target = match base {
                "decimal" | "numeric" | "money" | "smallmoney" => ty,
                _ => decimal_type(d),
            };
            format!("CAST({d} AS {target})")
        }
        Value::DateTime(d) => {
            let target = match base {
                "date" | "time" | "datetime" | "datetime2" | "smalldatetime" | "datetimeoffset" => {
                    ty
                }
                _ if d.ends_with('Z') || d.rfind(['+', '-']).is_some_and(|p| p > 10) => {
                    "datetimeoffset(7)".into()
                }
                _ if d.contains('T') => "datetime2(7)".into(),
                _ if d.contains(':') => "time(7)".into(),
                _ => "date".into(),
            };
            format!("CAST({} AS {target})", Literal::mssql(d))
        }
        Value::Uuid(_) => format!(
            "CAST({} AS uniqueidentifier)",
            Literal::mssql(&v.to_string())
        ),
        Value::Text(t) => text_literal(t),
        Value::Blob(b) if matches!(base, "hierarchyid" | "geometry" | "geography") => {
            format!("CAST({} AS {base})", hex(b))
        }
        Value::Blob(b) => hex(b),
        Value::Variant(x) => variant_literal(x),
    }
}

/// A `sql_variant` value as a literal of its own base type, made a `sql_variant` explicitly
/// (`CONVERT(sql_variant, CAST(12.5000 AS money))`), so it goes back with that base type and
/// a `UNION ALL` of rows of other base types cannot convert it to theirs. Character values
/// carry their collation, whose code page the conversion to `char`/`varchar` uses.
fn variant_literal(x: &crate::value::Variant) -> String {
    if x.check().is_err() {
        // Never from the archive (its decoder refuses such a variant): its base type and
        // collation do not reach the script, the value goes back as a bare value.
        return literal_as("", "", &x.value);
    }
    let ty = x.declared_type();
    let inner = literal_as(&x.base_type, &ty, &x.value);
    let inner = match (&x.value, &x.collation) {
        (Value::Text(_), Some(c)) => format!("({inner}) COLLATE {c}"),
        _ => inner,
    };
    format!("CONVERT(sql_variant, CAST({inner} AS {ty}))")
}

/// `v` as a literal of key column `i`'s own type, so the comparison converts the literal and
/// not the column: an `N'…'` against a `char`/`varchar` key would convert every row's key
/// (`CONVERT_IMPLICIT`), scan the index and, under `UPDLOCK, HOLDLOCK`, lock far more than the
/// row. The text converts under the column's collation, whose code page holds it (it came from
/// that column).
fn key_literal(shape: &Shape<'_>, i: usize, v: &Value) -> String {
    match (v, shape.base(i)) {
        (Value::Text(_), "char" | "varchar") => {
            let lit = literal(shape, i, v);
            match &shape.t.columns[i].collation {
                Some(coll) => format!("CAST(({lit}) COLLATE {coll} AS {})", shape.ty(i)),
                None => format!("CAST({lit} AS {})", shape.ty(i)),
            }
        }
        _ => literal(shape, i, v),
    }
}

/// `v` as a literal of key column `i` of `t`, in the column's own type and collation (see
/// the private `key_literal`): what a keyset page of a baseline compares a key column with.
pub fn key_literal_of(t: &Table, i: usize, v: &Value) -> Result<String, SqlError> {
    let shape = Shape::new(t)?;
    if i >= t.columns.len() {
        return Err(SqlError::Uncapturable {
            table: t.name.to_string(),
            reason: format!("it has no column number {i}"),
        });
    }
    Ok(key_literal(&shape, i, v))
}

/// Column `i` equals `v` exactly.
fn exactly(shape: &Shape<'_>, i: usize, v: &Value, plain_first: bool) -> String {
    let c = shape.col(i);
    let base = shape.base(i);
    let lit = literal(shape, i, v);
    match v {
        Value::Null => format!("{c} IS NULL"),
        // The same base type and the same bytes: a value of another base type that compares
        // equal (an int 5 and a bigint 5, money and decimal, varchar and nvarchar) is another
        // value.
        Value::Variant(x) => format!(
            "(SQL_VARIANT_PROPERTY({c}, 'BaseType') = {} AND CONVERT(varbinary(8000), {c}) = CONVERT(varbinary(8000), {lit}))",
            Literal::mssql(&x.base_type)
        ),
        // Text, xml's included, is compared as code units, never under the database's
        // collation (which may ignore case, accents or width): the column's side carries the
        // binary collation, so it covers the whole comparison whatever the literal is made of
        // (a literal with control characters is a concatenation, and a COLLATE after it would
        // bind to its last part only).
        Value::Text(_) => {
            let exact = format!(
                "CONVERT(nvarchar(max), {c}) COLLATE Latin1_General_100_BIN2 = {lit} AND DATALENGTH(CONVERT(nvarchar(max), {c})) = DATALENGTH({lit})"
            );
            if plain_first && !matches!(base, "sql_variant" | "xml") {
                format!("({c} = {} AND {exact})", key_literal(shape, i, v))
            } else {
                format!("({exact})")
            }
        }
        Value::Blob(b) if matches!(base, "hierarchyid" | "geometry" | "geography") => {
            format!("CONVERT(varbinary(max), {c}) = {}", hex(b))
        }
        Value::Blob(_) => format!("({c} = {lit} AND DATALENGTH({c}) = DATALENGTH({lit}))"),
        Value::DateTime(_) if base == "datetimeoffset" => {
            format!("({c} = {lit} AND DATEPART(TZOFFSET, {c}) = DATEPART(TZOFFSET, {lit}))")
        }
        _ => format!("{c} = {lit}"),
    }
}

/// The row equals `row` exactly (key columns first, for the index), `rowversion` aside.
fn matches(shape: &Shape<'_>, row: &[Value]) -> String {
    let key = shape.t.key().unwrap_or(&[]).to_vec();
    key.iter()
        .copied()
        .chain((0..shape.t.columns.len()).filter(|i| !key.contains(i) && !shape.rowversion(*i)))
        .map(|i| exactly(shape, i, &row[i], key.contains(&i)))
        .collect::<Vec<_>>()
        .join("\n      AND ")
}

/// The row's key equals `row`'s, as the unique index sees it.
fn key_equals(shape: &Shape<'_>, row: &[Value]) -> Option<String> {
    let key = shape.t.key()?;
    Some(
        key.iter()
            .map(|&i| match &row[i] {
                Value::Null => format!("{} IS NULL", shape.col(i)),
                v => format!("{} = {}", shape.col(i), key_literal(shape, i, v)),
            })
            .collect::<Vec<_>>()
            .join(" AND "),
    )
}

/// Selects the one row the step acts on: equal to `row`, and the only such row without a key.
fn one_row(shape: &Shape<'_>, row: &[Value]) -> String {
    let all = matches(shape, row);
    if shape.t.key().is_some() {
        return all;
    }
    format!(
        "{all}\n      AND (SELECT COUNT(*) FROM (SELECT TOP (2) 1 AS [x] FROM {t} WHERE {all}) AS [m]) = 1",
        t = shape.name()
    )
}

fn insert(shape: &Shape<'_>, row: &[Value], guard_key: bool) -> String {
    let cols = shape.insertable();
    let names: Vec<String> = cols.iter().map(|&i| shape.col(i)).collect();
    let vals: Vec<String> = cols.iter().map(|&i| literal(shape, i, &row[i])).collect();
    let mut sql = format!(
        "INSERT INTO {} ({})\n    SELECT {}",
        shape.name(),
        names.join(", "),
        vals.join(", ")
    );
    if let (true, Some(k)) = (guard_key, key_equals(shape, row)) {
        let _ = write!(
            sql,
            "\n    WHERE NOT EXISTS (SELECT 1 FROM {} WITH (UPDLOCK, HOLDLOCK) WHERE {k})",
            shape.name()
        );
    }
    sql
}

/// Steps `first`… (re-inserts into one table) as one guarded `INSERT … SELECT … UNION ALL …`
/// that must insert every row (refuse mode).
fn reinsert_together(s: &mut String, first: usize, run: &[ScriptStep<'_>]) -> Result<(), SqlError> {
    let table = run[0].step.table;
    let shape = Shape::new(table)?;
    let cols = shape.insertable();
    let names: Vec<String> = cols.iter().map(|&i| shape.col(i)).collect();
    let mut selects = Vec::with_capacity(run.len());
    for st in run {
        let row = st.step.target.expect("a re-insert has a target");
        if row.len() != table.columns.len() {
            return Err(SqlError::Uncapturable {
                table: table.name.to_string(),
                reason: format!(
                    "an undo image has {} values for {} columns",
                    row.len(),
                    table.columns.len()
                ),
            });
        }
        // A NULL in every branch of a UNION would be typed int, which no uniqueidentifier, xml
        // or CLR column accepts: each NULL carries its column's type.
        let vals: Vec<String> = cols
            .iter()
            .map(|&i| match &row[i] {
                Value::Null => format!("CAST(NULL AS {})", shape.ty(i)),
                v => literal(&shape, i, v),
            })
            .collect();
        let mut sel = format!("SELECT {}", vals.join(", "));
        if let Some(k) = key_equals(&shape, row) {
            let _ = write!(
                sel,
                " WHERE NOT EXISTS (SELECT 1 FROM {} WITH (UPDLOCK, HOLDLOCK) WHERE {k})",
                shape.name()
            );
        }
        selects.push(sel);
    }
    let sql = format!(
        "INSERT INTO {} ({})\n    {}",
        shape.name(),
        names.join(", "),
        selects.join("\n    UNION ALL\n    ")
    );
    s.push_str(&with_identity(&shape, &sql, ""));
    let last = first + run.len() - 1;
    let _ = writeln!(
        s,
        "IF @n <> {} THROW 50003, N'rowtrail undo: steps {first} to {last} conflict: a row''s key is taken', 1;",
        run.len()
    );
    Ok(())
}

fn update(shape: &Shape<'_>, target: &[Value], place: &str) -> String {
    let sets: Vec<String> = shape
        .assignable()
        .iter()
        .map(|&i| format!("{} = {}", shape.col(i), literal(shape, i, &target[i])))
        .collect();
    format!(
        "UPDATE {} SET {}\n    WHERE {place}",
        shape.name(),
        sets.join(", ")
    )
}

/// Wraps an insert for a table with an identity column; `@n` takes its row count.
fn with_identity(shape: &Shape<'_>, sql: &str, pad: &str) -> String {
    if shape.has_identity() {
        format!(
            "{pad}SET IDENTITY_INSERT {t} ON;\n{pad}{sql};\n{pad}SET @n = @@ROWCOUNT;\n{pad}SET IDENTITY_INSERT {t} OFF;\n",
            t = shape.name()
        )
    } else {
        format!("{pad}{sql};\n{pad}SET @n = @@ROWCOUNT;\n")
    }
}

fn step(s: &mut String, n: usize, st: &Step<'_>, on_conflict: OnConflict) -> Result<(), SqlError> {
    let shape = Shape::new(st.table)?;
    let width = st.table.columns.len();
    for row in [st.expect, st.target].into_iter().flatten() {
        if row.len() != width {
            return Err(SqlError::Uncapturable {
                table: st.table.name.to_string(),
                reason: format!("an undo image has {} values for {width} columns", row.len()),
            });
        }
    }
    match (st.expect, st.target) {
        (None, None) => {
            return Err(SqlError::Uncapturable {
                table: st.table.name.to_string(),
                reason: "an undo step must expect a row or produce one".into(),
            })
        }
        (None, Some(t)) => s.push_str(&with_identity(&shape, &insert(&shape, t, true), "")),
        (Some(e), Some(t)) => {
            let _ = writeln!(
                s,
                "{};\nSET @n = @@ROWCOUNT;",
                update(&shape, t, &one_row(&shape, e))
            );
        }
        (Some(e), None) => {
            let _ = writeln!(
                s,
                "DELETE FROM {}\n    WHERE {};\nSET @n = @@ROWCOUNT;",
                shape.name(),
                one_row(&shape, e)
            );
        }
    }
    match on_conflict {
        OnConflict::Stop => {
            let _ = writeln!(
                s,
                "IF @n <> 1 THROW 50003, N'rowtrail undo: step {n} conflicts: the row no longer equals its archived image, or its key is taken', 1;"
            );
        }
        OnConflict::Skip => {
            let _ = writeln!(
                s,
                "IF @n <> 1 PRINT N'rowtrail undo: step {n} skipped (conflict)';\n\
                 IF @n <> 1 INSERT INTO {OUTCOMES} ([step], [outcome]) VALUES ({n}, N'{OUTCOME_SKIPPED}');"
            );
        }
        OnConflict::Force => {
            s.push_str("IF @n <> 1\nBEGIN\n");
            let _ = writeln!(
                s,
                "    INSERT INTO {OUTCOMES} ([step], [outcome]) VALUES ({n}, N'{OUTCOME_FORCED}');"
            );
            match (st.expect, st.target) {
                (_, Some(t)) => {
                    let place = key_equals(&shape, t)
                        .unwrap_or_else(|| matches(&shape, st.expect.unwrap_or(t)));
                    let _ = writeln!(
                        s,
                        "    {};\n    SET @n = @@ROWCOUNT;",
                        update(&shape, t, &place)
                    );
                    s.push_str("    IF @n = 0\n    BEGIN\n");
                    s.push_str(&with_identity(
                        &shape,
                        &insert(&shape, t, false),
                        "        ",
                    ));
                    s.push_str("    END;\n");
                }
                (Some(e), None) => {
                    let place = key_equals(&shape, e).unwrap_or_else(|| matches(&shape, e));
                    let top = if shape.t.key().is_some() {
                        ""
                    } else {
                        "TOP (1) "
                    };
                    let _ = writeln!(s, "    DELETE {top}FROM {} WHERE {place};", shape.name());
                }
                (None, None) => unreachable!("refused above"),
            }
            s.push_str("END;\n");
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "undo_tests.rs"]
mod tests;
