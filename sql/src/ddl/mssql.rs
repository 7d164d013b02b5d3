//! The SQL Server DDL reader behind [`parse_mssql`](super::parse_mssql): statements
//! (`CREATE TABLE`, `ALTER TABLE … ADD CONSTRAINT`), table constraints and keys.

use sqlparser::dialect::MsSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::column::column;
use super::cursor::{err, is_kw, Cursor, Tok};
use crate::{Column, Ident, SqlError, Table, TableName};

/// A column or table constraint's key list: `(a [ASC|DESC], b)`.
fn key_columns(c: &mut Cursor) -> Result<Vec<(String, u64)>, SqlError> {
    while c.eat_kw("CLUSTERED") || c.eat_kw("NONCLUSTERED") || c.eat_kw("HASH") {}
    c.expect(&Token::LParen, "( and the key's columns")?;
    let mut cols = Vec::new();
    loop {
        let line = c.line();
        cols.push((c.name_part()?, line));
        let _ = c.eat_kw("ASC") || c.eat_kw("DESC");
        if c.eat(&Token::Comma) {
            continue;
        }
        c.expect(&Token::RParen, ", or )")?;
        break;
    }
    Ok(cols)
}

/// Skips what may follow a key's column list: `WITH (…)`, `ON fg`, `WITH BUCKET_COUNT`.
pub(super) fn skip_index_options(c: &mut Cursor) -> Result<(), SqlError> {
    loop {
        if c.at_kw("WITH") && c.peek_at(1) == Some(&Token::LParen) {
            c.pos += 1;
            c.skip_group()?;
        } else if c.at_kw("ON")
            && !matches!(c.peek_at(1), Some(t) if is_kw(t, "DELETE") || is_kw(t, "UPDATE"))
        {
            c.pos += 1;
            c.name_part()?;
            if c.peek() == Some(&Token::LParen) {
                c.skip_group()?;
            }
        } else {
            return Ok(());
        }
    }
}

/// What a table definition holds before names become positions.
pub(super) struct Draft {
    pub(super) name: TableName,
    pub(super) columns: Vec<Column>,
    pub(super) lines: Vec<u64>,
    pub(super) primary_key: Vec<(String, u64)>,
    pub(super) unique_keys: Vec<Vec<(String, u64)>>,
    /// Why rowtrail cannot capture the table, found while reading it (the first reason).
    pub(super) refused: Option<SqlError>,
}

pub(super) fn parse(text: &str) -> Result<Vec<super::ParsedTable>, SqlError> {
    let dialect = MsSqlDialect {};
    let raw = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| err(e.location.line.max(1), e.message))?;
    let toks = raw
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|t| Tok {
            line: t.span.start.line.max(1),
            token: t.token,
        })
        .collect();
    let mut c = Cursor { toks, pos: 0 };
    let mut drafts: Vec<Draft> = Vec::new();
    while c.peek().is_some() {
        if c.at_kw("CREATE") && c.peek_at(1).is_some_and(|t| is_kw(t, "TABLE")) {
            c.pos += 2;
            if let Some(d) = create_table(&mut c)? {
                drafts.push(d);
            }
        } else if c.at_kw("ALTER") && c.peek_at(1).is_some_and(|t| is_kw(t, "TABLE")) {
            c.pos += 2;
            alter_table(&mut c, &mut drafts)?;
        } else {
            c.pos += 1;
        }
    }
    Ok(drafts
        .into_iter()
        .map(|d| (d.name.clone(), finish(d)))
        .collect())
}

fn table_name(parts: Vec<String>, line: u64) -> Result<TableName, SqlError> {
    let bad = |e: SqlError| err(line, e.to_string());
    let n = parts.len();
    let (schema, name) = match n {
        1 => ("dbo".to_string(), parts[0].clone()),
        2 | 3 => (parts[n - 2].clone(), parts[n - 1].clone()),
        _ => return Err(err(line, "a table name has at most three parts")),
    };
    Ok(TableName {
        schema: Some(Ident::new(schema).map_err(bad)?),
        name: Ident::new(name).map_err(bad)?,
    })
}

fn create_table(c: &mut Cursor) -> Result<Option<Draft>, SqlError> {
    let line = c.line();
    let parts = c.object_name()?;
    let temp = parts.last().is_some_and(|p| p.starts_with('#'));
    let name = table_name(parts, line)?;
    if c.at_kw("AS") {
        // CREATE TABLE … AS (FileTable / graph): not a captured shape.
        return Err(err(
            line,
            format!("table {name}: only column-list CREATE TABLE statements are read"),
        ));
    }
    c.expect(&Token::LParen, "( and the table's columns")?;
    let mut d = Draft {
        name,
        columns: Vec::new(),
        lines: Vec::new(),
        primary_key: Vec::new(),
        unique_keys: Vec::new(),
        refused: None,
    };
    loop {
        element(c, &mut d)?;
        if c.eat(&Token::Comma) {
            // SQL Server accepts a trailing comma before `)` only in some places; allow it here.
            if c.eat(&Token::RParen) {
                break;
            }
            continue;
        }
        c.expect(&Token::RParen, ", or ) after a column definition")?;
        break;
    }
    table_options(c, &mut d)?;
    Ok((!temp).then_some(d))
}

/// Refuses table options rowtrail cannot capture: memory-optimized tables accept only natively
/// compiled triggers. Other options (`ON fg`, `TEXTIMAGE_ON`, compression) are skipped with the
/// rest of the statement.
fn table_options(c: &mut Cursor, d: &mut Draft) -> Result<(), SqlError> {
    while c.at_kw("ON") || c.at_kw("TEXTIMAGE_ON") || c.at_kw("FILESTREAM_ON") {
        c.pos += 1;
        c.name_part()?;
        if c.peek() == Some(&Token::LParen) {
            c.skip_group()?;
        }
    }
    if !(c.at_kw("WITH") && c.peek_at(1) == Some(&Token::LParen)) {
        return Ok(());
    }
    let line = c.line();
    let start = c.pos;
    c.pos += 1;
    c.skip_group()?;
    let memory = c.toks[start..c.pos].windows(3).any(|w| {
        is_kw(&w[0].token, "MEMORY_OPTIMIZED")
            && w[1].token == Token::Eq
            && is_kw(&w[2].token, "ON")
    });
    if memory {
        d.refused.get_or_insert(err(
            line,
            format!(
                "table {}: memory-optimized tables accept only natively compiled triggers, which \
                 cannot capture changes the way rowtrail does; leave the table out",
                d.name
            ),
        ));
    }
    Ok(())
}

fn alter_table(c: &mut Cursor, drafts: &mut [Draft]) -> Result<(), SqlError> {
    let line = c.line();
    let name = table_name(c.object_name()?, line)?;
    let _ = c.eat_kw("WITH") && (c.eat_kw("CHECK") || c.eat_kw("NOCHECK"));
    if !c.eat_kw("ADD") {
        return Ok(());
    }
    if c.eat_kw("CONSTRAINT") {
        c.name_part()?;
    }
    let Some(d) = drafts.iter_mut().find(|d| d.name == name) else {
        return Ok(());
    };
    if c.at_kw("PRIMARY") {
        c.pos += 1;
        c.expect_kw("KEY")?;
        d.primary_key = key_columns(c)?;
    } else if c.eat_kw("UNIQUE") {
        d.unique_keys.push(key_columns(c)?);
    }
    Ok(())
}

/// One element of a column list: a column or a table constraint.
fn element(c: &mut Cursor, d: &mut Draft) -> Result<(), SqlError> {
    if c.eat_kw("CONSTRAINT") {
        c.name_part()?;
    }
    if c.at_kw("PRIMARY") {
        c.pos += 1;
        c.expect_kw("KEY")?;
        d.primary_key = key_columns(c)?;
        return skip_index_options(c);
    }
    if c.eat_kw("UNIQUE") {
        d.unique_keys.push(key_columns(c)?);
        return skip_index_options(c);
    }
    for kw in ["FOREIGN", "CHECK", "INDEX", "PERIOD", "CONNECTION"] {
        if c.at_kw(kw) {
            // Skip to the end of the element.
            let mut depth = 0;
            while let Some(t) = c.peek() {
                match t {
                    Token::LParen => depth += 1,
                    Token::RParen if depth == 0 => break,
                    Token::RParen => depth -= 1,
                    Token::Comma if depth == 0 => break,
                    _ => {}
                }
                c.pos += 1;
            }
            return Ok(());
        }
    }
    column(c, d)
}

fn finish(mut d: Draft) -> Result<Table, SqlError> {
    if let Some(why) = d.refused.take() {
        return Err(why);
    }
    let position = |(name, line): &(String, u64)| -> Result<usize, SqlError> {
        d.columns
            .iter()
            .position(|c| c.name.as_str() == name)
            .or_else(|| {
                d.columns
                    .iter()
                    .position(|c| c.name.as_str().eq_ignore_ascii_case(name))
            })
            .ok_or_else(|| {
                err(
                    *line,
                    format!(
                        "table {}: a key names column {name:?}, which it does not have",
                        d.name
                    ),
                )
            })
    };
    let primary_key = d
        .primary_key
        .iter()
        .map(position)
        .collect::<Result<Vec<_>, _>>()?;
    let unique_keys = d
        .unique_keys
        .iter()
        .map(|k| k.iter().map(position).collect::<Result<Vec<_>, _>>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut columns = d.columns;
    for &k in &primary_key {
        columns[k].nullable = false;
    }
    let t = Table {
        name: d.name,
        columns,
        primary_key,
        unique_keys,
        rowid: false,
    };
    let first = d.lines.first().copied().unwrap_or(1);
    t.validate().map_err(|e| err(first, e.to_string()))?;
    Ok(t)
}
