//! Column definitions of a SQL Server `CREATE TABLE`: names, data types, computed columns and
//! column options (NULL, IDENTITY, COLLATE, SPARSE, DEFAULT, inline keys and references).

use sqlparser::tokenizer::Token;

use super::cursor::{err, is_kw, Cursor, Tok};
use super::mssql::{skip_index_options, Draft};
use crate::mssql::types::{MssqlType, TypeClass};
use crate::{Column, Ident, SqlError};

pub(super) fn column(c: &mut Cursor, d: &mut Draft) -> Result<(), SqlError> {
    let line = c.line();
    let name = c.name_part()?;
    let context = format!("table {}, column {name:?}: ", d.name);
    column_rest(c, d, line, name).map_err(|e| match e {
        SqlError::BadDdl { line, message } if !message.starts_with("table ") => SqlError::BadDdl {
            line,
            message: format!("{context}{message}"),
        },
        other => other,
    })
}

fn column_rest(c: &mut Cursor, d: &mut Draft, line: u64, name: String) -> Result<(), SqlError> {
    let table = d.name.to_string();
    let refuse = |why: String| err(line, format!("table {table}, column {name:?}: {why}"));
    let ident = Ident::new(name.as_str()).map_err(|e| refuse(e.to_string()))?;
    let mut col;
    if c.eat_kw("AS") {
        let ty = computed_type(c)?
            .and_then(|t| MssqlType::parse(&t).ok())
            .map(|t| t.canonical());
        col = Column::new(ident, ty.unwrap_or_default(), true);
        col.computed = true;
    } else {
        let ty = data_type(c)?;
        let parsed = MssqlType::parse(&ty).map_err(&refuse)?;
        if let TypeClass::Refused(why) = parsed.classify() {
            // Refused, but read on: the rest of the script may still be captured.
            d.refused.get_or_insert(refuse(why));
        }
        col = Column::new(
            ident,
            if parsed.is_rowversion() {
                "rowversion".into()
            } else {
                parsed.canonical()
            },
            true,
        );
        col.rowversion = parsed.is_rowversion();
        // A rowversion column is NOT NULL unless declared NULL; SQL Server's default otherwise.
        col.nullable = !col.rowversion;
    }
    let mut persisted = false;
    loop {
        if c.eat_kw("NOT") {
            if c.eat_kw("NULL") {
                col.nullable = false;
            } else {
                c.expect_kw("FOR")?;
                c.expect_kw("REPLICATION")?;
            }
        } else if c.eat_kw("NULL") {
            col.nullable = true;
        } else if c.eat_kw("IDENTITY") {
            col.identity = true;
            if c.peek() == Some(&Token::LParen) {
                c.skip_group()?;
            }
        } else if c.eat_kw("COLLATE") {
            col.collation = Some(c.name_part()?);
        } else if c.eat_kw("SPARSE") {
            col.sparse = true;
        } else if c.eat_kw("PERSISTED") {
            persisted = true;
        } else if c.eat_kw("ROWGUIDCOL") || c.eat_kw("HIDDEN") {
        } else if c.eat_kw("CONSTRAINT") {
            c.name_part()?;
        } else if c.eat_kw("INDEX") {
            // An inline index: `INDEX ix [CLUSTERED|NONCLUSTERED] [(cols)]`.
            c.name_part()?;
            while c.eat_kw("CLUSTERED") || c.eat_kw("NONCLUSTERED") {}
            if c.peek() == Some(&Token::LParen) {
                c.skip_group()?;
            }
        } else if c.eat_kw("DEFAULT") {
            skip_value(c)?;
            if c.eat_kw("WITH") {
                c.expect_kw("VALUES")?;
            }
        } else if c.at_kw("PRIMARY") {
            c.pos += 1;
            c.expect_kw("KEY")?;
            while c.eat_kw("CLUSTERED") || c.eat_kw("NONCLUSTERED") {}
            skip_index_options(c)?;
            d.primary_key = vec![(name.clone(), line)];
        } else if c.eat_kw("UNIQUE") {
            while c.eat_kw("CLUSTERED") || c.eat_kw("NONCLUSTERED") {}
            skip_index_options(c)?;
            d.unique_keys.push(vec![(name.clone(), line)]);
        } else if c.eat_kw("CHECK") {
            let _ = c.eat_kw("NOT") && c.eat_kw("FOR") && c.eat_kw("REPLICATION");
            c.skip_group()?;
        } else if c.eat_kw("FOREIGN") {
            c.expect_kw("KEY")?;
        } else if c.eat_kw("REFERENCES") {
            c.object_name()?;
            if c.peek() == Some(&Token::LParen) {
                c.skip_group()?;
            }
            while c.at_kw("ON") {
                c.pos += 1;
                let _ = c.eat_kw("DELETE") || c.eat_kw("UPDATE");
                if !(c.eat_kw("CASCADE") || (c.eat_kw("NO") && c.eat_kw("ACTION"))) {
                    c.expect_kw("SET")?;
                    let _ = c.eat_kw("NULL") || c.eat_kw("DEFAULT");
                }
            }
        } else if c.eat_kw("MASKED") {
            c.expect_kw("WITH")?;
            c.skip_group()?;
        } else if c.eat_kw("GENERATED") {
            c.expect_kw("ALWAYS")?;
            c.expect_kw("AS")?;
            // A period or ledger column: the server assigns it on every write.
            col.generated = true;
            while let Some(Token::Word(w)) = c.peek() {
                if w.quote_style.is_some()
                    || !["ROW", "TRANSACTION_ID", "SEQUENCE_NUMBER", "START", "END"]
                        .iter()
                        .any(|k| w.value.eq_ignore_ascii_case(k))
                {
                    break;
                }
                c.pos += 1;
            }
        } else if c.eat_kw("FILESTREAM") {
            d.refused.get_or_insert(refuse(
                "it is a FILESTREAM column: capture would copy every file into staging on each \
                 change; leave the table out"
                    .into(),
            ));
        } else if c.eat_kw("ENCRYPTED") {
            c.expect_kw("WITH")?;
            c.skip_group()?;
            d.refused.get_or_insert(refuse(
                "it uses Always Encrypted: a trigger cannot copy its values into staging; leave \
                 the table out"
                    .into(),
            ));
        } else if matches!(c.peek(), Some(Token::Comma) | Some(Token::RParen)) {
            break;
        } else {
            return Err(err(
                c.line(),
                format!(
                    "table {table}, column {name:?}: unexpected {}",
                    c.describe()
                ),
            ));
        }
    }
    if col.computed {
        col.nullable = true;
        if !persisted {
            // Evaluated on every read: reading it in the trigger could fail (say, on a division
            // by zero) where the user's statement did not. Recorded without a type: not captured.
            col.sql_type.clear();
        }
    }
    d.columns.push(col);
    d.lines.push(line);
    Ok(())
}

/// A data type: `int`, `[nvarchar](50)`, `decimal(19, 4)`, `varchar(max)`, `dbo.Phone`,
/// `xml(CONTENT dbo.Schema)`, `double precision`.
fn data_type(c: &mut Cursor) -> Result<String, SqlError> {
    let mut ty = c.object_name()?.join(".");
    if ty.eq_ignore_ascii_case("double") && c.eat_kw("PRECISION") {
        ty = "float".into();
    }
    // ISO spellings: `char varying`, `character varying`, `national char[acter] varying`.
    let national = ty.eq_ignore_ascii_case("national");
    if national {
        let _ = c.eat_kw("CHAR") || c.eat_kw("CHARACTER");
        ty = "nchar".into();
    }
    if (national || ty.eq_ignore_ascii_case("character") || ty.eq_ignore_ascii_case("char"))
        && c.eat_kw("VARYING")
    {
        ty = if national {
            "nvarchar".into()
        } else {
            "varchar".into()
        };
    } else if ty.eq_ignore_ascii_case("character") {
        ty = "char".into();
    }
    if c.peek() == Some(&Token::LParen) {
        c.pos += 1;
        let mut args = Vec::new();
        let mut cur = String::new();
        loop {
            match c.peek() {
                None => return Err(err(c.line(), "a type's arguments are never closed")),
                Some(Token::RParen) => {
                    c.pos += 1;
                    break;
                }
                Some(Token::Comma) => args.push(std::mem::take(&mut cur)),
                Some(Token::Number(n, _)) => cur.push_str(n),
                Some(Token::Word(w)) => {
                    if !cur.is_empty() {
                        cur.push(' ');
                    }
                    cur.push_str(&w.value);
                }
                Some(Token::Period) => cur.push('.'),
                Some(_) => {
                    return Err(err(
                        c.line(),
                        format!("unexpected {} in a type", c.describe()),
                    ))
                }
            }
            if c.peek() != Some(&Token::RParen) {
                c.pos += 1;
            }
        }
        args.push(cur);
        ty = format!("{ty}({})", args.join(","));
    }
    Ok(ty)
}

/// A computed column's type when its expression states one (`CAST(… AS t)`, `CONVERT(t, …)`,
/// `TRY_CAST`, `TRY_CONVERT`, in optional parentheses, as the whole expression); `None`
/// otherwise. Leaves the cursor after the expression.
fn computed_type(c: &mut Cursor) -> Result<Option<String>, SqlError> {
    let start = c.pos;
    skip_expression(c)?;
    let end = c.pos;
    let toks: Vec<Tok> = c.toks[start..end]
        .iter()
        .map(|t| Tok {
            token: t.token.clone(),
            line: t.line,
        })
        .collect();
    let mut sub = Cursor { toks, pos: 0 };
    let mut lo = 0;
    let mut hi = sub.toks.len();
    // Strip parentheses that enclose the whole expression.
    while hi > lo + 1
        && sub.toks[lo].token == Token::LParen
        && matching(&sub.toks, lo) == Some(hi - 1)
    {
        lo += 1;
        hi -= 1;
    }
    if hi < lo + 3
        || sub.toks[lo + 1].token != Token::LParen
        || matching(&sub.toks, lo + 1) != Some(hi - 1)
    {
        return Ok(None);
    }
    let func = &sub.toks[lo].token;
    sub.pos = lo + 2;
    let ty = if is_kw(func, "CAST") || is_kw(func, "TRY_CAST") {
        let mut depth = 0;
        let mut found = None;
        while sub.pos < hi - 1 {
            match &sub.toks[sub.pos].token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                t if depth == 0 && is_kw(t, "AS") => {
                    sub.pos += 1;
                    let ty = data_type(&mut sub)?;
                    found = (sub.pos == hi - 1).then_some(ty);
                    break;
                }
                _ => {}
            }
            sub.pos += 1;
        }
        found
    } else if is_kw(func, "CONVERT") || is_kw(func, "TRY_CONVERT") {
        let ty = data_type(&mut sub)?;
        (sub.peek() == Some(&Token::Comma)).then_some(ty)
    } else {
        None
    };
    Ok(ty
        .filter(|t| MssqlType::parse(t).is_ok_and(|p| matches!(p.classify(), TypeClass::Exact(_)))))
}

/// The position of the `)` that closes the `(` at `open`.
fn matching(toks: &[Tok], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Skips one value: a parenthesised group, or a signed literal/word, or a call `f(…)`.
fn skip_value(c: &mut Cursor) -> Result<(), SqlError> {
    if c.peek() == Some(&Token::LParen) {
        return c.skip_group();
    }
    while matches!(c.peek(), Some(Token::Minus) | Some(Token::Plus)) {
        c.pos += 1;
    }
    if c.peek().is_none() {
        return Err(err(
            c.line(),
            "expected a value, found the end of the script",
        ));
    }
    c.pos += 1;
    while c.eat(&Token::Period) {
        c.name_part()?;
    }
    if c.peek() == Some(&Token::LParen) {
        c.skip_group()?;
    }
    Ok(())
}

/// Skips a computed column's expression up to the first column option or the element's end.
fn skip_expression(c: &mut Cursor) -> Result<(), SqlError> {
    loop {
        match c.peek() {
            None | Some(Token::Comma) | Some(Token::RParen) => return Ok(()),
            Some(Token::LParen) => c.skip_group()?,
            Some(t)
                if [
                    "PERSISTED",
                    "NOT",
                    "NULL",
                    "CONSTRAINT",
                    "PRIMARY",
                    "UNIQUE",
                ]
                .iter()
                .any(|k| is_kw(t, k)) =>
            {
                return Ok(())
            }
            _ => c.pos += 1,
        }
    }
}
