//! SQLite tables read value for value and type for type, and compared: how a test tells that
//! two databases (a source and a rebuild, a replica, an undone copy) hold the same rows.

use rowtrail_reader::sqlite::value_of;
use rowtrail_sql::Value;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

/// A table's columns (in order) and primary key columns (in key order).
#[derive(Debug, Clone)]
pub struct Shape {
    /// The table.
    pub name: String,
    /// Its columns.
    pub columns: Vec<String>,
    /// Positions of its primary key's columns, in key order.
    pub key: Vec<usize>,
}

/// A row as (storage class, value) per column.
pub type Row = Vec<(String, Value)>;

/// `name` quoted for SQLite.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a SQLite string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A value as rusqlite binds it (SQLite sources produce only SQLite's own kinds).
pub fn to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(*i),
        Value::Real(r) => SqlValue::Real(*r),
        Value::Text(t) => SqlValue::Text(String::from_utf8(t.clone()).expect("UTF-8 text")),
        Value::Blob(b) => SqlValue::Blob(b.clone()),
        other => panic!("a SQLite source produced a {} value", other.kind()),
    }
}

/// The user tables of `c` (rowtrail's own and SQLite's left out), by name.
pub fn shapes(c: &Connection) -> Vec<Shape> {
    let names: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table'
             AND name NOT LIKE 'rowtrail%' AND name NOT LIKE 'sqlite%' ORDER BY name",
        )
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("read the schema");
    names
        .into_iter()
        .map(|name| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT name, pk FROM pragma_table_info({})",
                    literal(&name)
                ))
                .expect("read the columns");
            let cols: Vec<(String, i64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .expect("read the columns");
            let mut key: Vec<(i64, usize)> = cols
                .iter()
                .enumerate()
                .filter(|(_, (_, pk))| *pk > 0)
                .map(|(i, (_, pk))| (*pk, i))
                .collect();
            key.sort();
            Shape {
                name,
                columns: cols.into_iter().map(|(n, _)| n).collect(),
                key: key.into_iter().map(|(_, i)| i).collect(),
            }
        })
        .collect()
}

/// Whether two rows hold the same values with the same storage classes (floats by bits).
pub fn same_row(a: &Row, b: &Row) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.same(&y.1))
}

/// `typeof(c), c` for every column of `t`.
pub fn select_list(t: &Shape) -> String {
    t.columns
        .iter()
        .map(|c| format!("typeof({0}), {0}", quote(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row read through [`select_list`].
pub fn read_row(r: &rusqlite::Row<'_>, width: usize) -> rusqlite::Result<Row> {
    (0..width)
        .map(|i| Ok((r.get::<_, String>(2 * i)?, value_of(r.get_ref(2 * i + 1)?))))
        .collect()
}

/// Every row of `t` in `c`, by primary key (by every column when it has none).
pub fn dump(c: &Connection, t: &Shape) -> Vec<Row> {
    let order: Vec<String> = if t.key.is_empty() {
        t.columns.iter().map(|c| quote(c)).collect()
    } else {
        t.key.iter().map(|&i| quote(&t.columns[i])).collect()
    };
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        select_list(t),
        quote(&t.name),
        order.join(", ")
    );
    let mut stmt = c.prepare(&sql).expect("read a table");
    let rows = stmt
        .query_map([], |r| read_row(r, t.columns.len()))
        .expect("read a table");
    rows.collect::<Result<_, _>>().expect("read a table")
}

/// `k1 = ?n AND k2 = ?n+1 …` over `t`'s key, parameters numbered from `first_param`.
pub fn key_where(t: &Shape, first_param: usize) -> String {
    t.key
        .iter()
        .enumerate()
        .map(|(n, &i)| format!("{} = ?{}", quote(&t.columns[i]), first_param + n))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Panics, naming the table and the first row that differs, unless every user table of
/// `expected` holds exactly the rows it holds in `actual`, value for value and type for type.
pub fn assert_same_tables(expected: &Connection, actual: &Connection, ctx: &str) {
    for t in &shapes(expected) {
        let want = dump(expected, t);
        let got = dump(actual, t);
        let first_diff = want.iter().zip(&got).position(|(a, b)| !same_row(a, b));
        assert!(
            want.len() == got.len() && first_diff.is_none(),
            "{ctx}: table {} differs ({} rows expected, {} found); first difference at row \
             {first_diff:?}: {:?} vs {:?}",
            t.name,
            want.len(),
            got.len(),
            first_diff.map(|i| &want[i]),
            first_diff.map(|i| &got[i]),
        );
    }
}

/// Every row of each of `tables` (its name and an `ORDER BY` list), table after table, as one
/// line each: `table: value value …`, every value with its storage class. Two databases hold the
/// same rows, type for type, exactly when these lists are equal.
pub fn rows_as_text(c: &Connection, tables: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (t, order) in tables {
        let mut s = c
            .prepare(&format!("SELECT * FROM {t} ORDER BY {order}"))
            .unwrap();
        let n = s.column_count();
        let rows = s
            .query_map([], |r| {
                let mut line = format!("{t}:");
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    line.push_str(&format!(" {v:?}"));
                }
                Ok(line)
            })
            .unwrap();
        out.extend(rows.map(Result::unwrap));
    }
    out
}
