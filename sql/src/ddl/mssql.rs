//! The SQL Server DDL reader behind [`parse_mssql`](super::parse_mssql).

use sqlparser::dialect::MsSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::mssql::types::{MssqlType, TypeClass};
use crate::{Column, Ident, SqlError, Table, TableName};

/// A token and the line it starts on.
struct Tok {
    token: Token,
    line: u64,
}

/// A cursor over the significant tokens of a script.
struct Cursor {
    toks: Vec<Tok>,
    pos: usize,
}

fn err(line: u64, message: impl Into<String>) -> SqlError {
    SqlError::BadDdl {
        line,
        message: message.into(),
    }
}

/// Whether `t` is the unquoted keyword `kw` (any case).
fn is_kw(t: &Token, kw: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

impl Cursor {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos).map(|t| &t.token)
    }
    fn peek_at(&self, n: usize) -> Option<&Token> {
        self.toks.get(self.pos + n).map(|t| &t.token)
    }
    fn line(&self) -> u64 {
        self.toks
            .get(self.pos)
            .or_else(|| self.toks.last())
            .map_or(1, |t| t.line)
    }
    fn at_kw(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| is_kw(t, kw))
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.at_kw(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }
    fn eat(&mut self, t: &Token) -> bool {
        let yes = self.peek() == Some(t);
        if yes {
            self.pos += 1;
        }
        yes
    }
    fn expect(&mut self, t: &Token, what: &str) -> Result<(), SqlError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(err(
                self.line(),
                format!("expected {what}, found {}", self.describe()),
            ))
        }
    }
    fn expect_kw(&mut self, kw: &str) -> Result<(), SqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(err(
                self.line(),
                format!("expected {kw}, found {}", self.describe()),
            ))
        }
    }
    fn describe(&self) -> String {
        match self.peek() {
            None => "the end of the script".into(),
            Some(t) => format!("{t:?}").chars().take(60).collect(),
        }
    }
    /// A name part: a bracketed, double-quoted or plain word.
    fn name_part(&mut self) -> Result<String, SqlError> {
        match self.peek() {
            Some(Token::Word(w)) => {
                let v = w.value.clone();
                self.pos += 1;
                Ok(v)
            }
            _ => Err(err(
                self.line(),
                format!("expected a name, found {}", self.describe()),
            )),
        }
    }
    /// A dotted name: `a`, `a.b`, `db.a.b` (parts in order).
    fn object_name(&mut self) -> Result<Vec<String>, SqlError> {
        let mut parts = vec![self.name_part()?];
        while self.eat(&Token::Period) {
            parts.push(self.name_part()?);
        }
        Ok(parts)
    }
    /// Skips a balanced parenthesised group starting at `(`.
    fn skip_group(&mut self) -> Result<(), SqlError> {
        let line = self.line();
        self.expect(&Token::LParen, "(")?;
        let mut depth = 1;
        while depth > 0 {
            match self.peek() {
                None => return Err(err(line, "a parenthesis opened here is never closed")),
                Some(Token::LParen) => depth += 1,
                Some(Token::RParen) => depth -= 1,
                _ => {}
            }
            self.pos += 1;
        }
        Ok(())
    }
}

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
fn skip_index_options(c: &mut Cursor) -> Result<(), SqlError> {
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
struct Draft {
    name: TableName,
    columns: Vec<Column>,
    lines: Vec<u64>,
    primary_key: Vec<(String, u64)>,
    unique_keys: Vec<Vec<(String, u64)>>,
}

pub(super) fn parse(text: &str) -> Result<Vec<Table>, SqlError> {
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
    drafts.into_iter().map(finish).collect()
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
    Ok((!temp).then_some(d))
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

fn column(c: &mut Cursor, d: &mut Draft) -> Result<(), SqlError> {
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
            return Err(refuse(why));
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
        } else if c.eat_kw("ROWGUIDCOL") || c.eat_kw("PERSISTED") || c.eat_kw("HIDDEN") {
        } else if c.eat_kw("CONSTRAINT") {
            c.name_part()?;
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
        } else if c.at_kw("FILESTREAM") {
            return Err(refuse("it is a FILESTREAM column: capture would copy every file into staging on each change; leave the table out".into()));
        } else if c.at_kw("ENCRYPTED") {
            return Err(refuse("it uses Always Encrypted: a trigger cannot copy its values into staging; leave the table out".into()));
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

fn finish(d: Draft) -> Result<Table, SqlError> {
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
