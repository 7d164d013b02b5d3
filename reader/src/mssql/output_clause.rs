//! Statements the server has seen that would fail once capture is installed: `OUTPUT` without
//! `INTO` on a table with an enabled trigger is Msg 334 (EF Core 7 and later save that way by
//! default). `rowtrail sql install` looks for them in Query Store and the plan cache and warns,
//! naming the table; it never refuses, and a server that will not show either is said so.

use rowtrail_sql::Table;

use super::client::MssqlClient;

/// Query Store's texts that hold an `OUTPUT` (SQL Server 2016 and later, when it is on).
pub const FROM_QUERY_STORE: &str =
    "SELECT TOP (1000) qt.query_sql_text FROM sys.query_store_query_text AS qt \
     WHERE qt.query_sql_text LIKE N'%OUTPUT%'";

/// The plan cache's texts of this database that hold an `OUTPUT` (needs `VIEW SERVER STATE`).
/// Parameterised statements have no `dbid` of their own: the plan's attribute says it.
pub const FROM_PLAN_CACHE: &str = "SELECT TOP (1000) st.text FROM sys.dm_exec_query_stats AS qs \
     CROSS APPLY sys.dm_exec_sql_text(qs.sql_handle) AS st \
     CROSS APPLY sys.dm_exec_plan_attributes(qs.plan_handle) AS pa \
     WHERE pa.attribute = N'dbid' AND CONVERT(int, pa.value) = DB_ID() AND st.text LIKE N'%OUTPUT%'";

/// One table that statements write with `OUTPUT` but no `INTO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputWithoutInto {
    /// The captured table.
    pub table: String,
    /// How many distinct statement texts do it.
    pub statements: usize,
}

/// What the look found: the tables, and the sources that could not be read (and why).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Captured tables targeted by `OUTPUT` without `INTO`.
    pub tables: Vec<OutputWithoutInto>,
    /// Query Store or the plan cache, when they could not be read.
    pub unread: Vec<String>,
}

/// Looks through Query Store and the plan cache for statements that write one of `tables`
/// with `OUTPUT` and no `INTO`.
pub fn find(c: &mut MssqlClient, tables: &[Table]) -> Findings {
    let mut texts = Vec::new();
    let mut unread = Vec::new();
    for (what, sql) in [
        ("Query Store", FROM_QUERY_STORE),
        ("the plan cache", FROM_PLAN_CACHE),
    ] {
        match c.query("cannot read statement history", sql, &[]) {
            Ok(rows) => texts.extend(
                rows.iter()
                    .filter_map(|r| r.get::<&str, _>(0).map(str::to_string)),
            ),
            Err(e) => unread.push(format!(
                "{what}: {}",
                e.to_string().lines().next().unwrap_or_default()
            )),
        }
    }
    texts.sort();
    texts.dedup();
    let mut found: Vec<OutputWithoutInto> = Vec::new();
    for t in tables {
        let n = texts
            .iter()
            .filter(|s| {
                targets_without_into(s)
                    .iter()
                    .any(|(sch, name)| names(t, sch.as_deref(), name))
            })
            .count();
        if n > 0 {
            found.push(OutputWithoutInto {
                table: t.name.to_string(),
                statements: n,
            });
        }
    }
    Findings {
        tables: found,
        unread,
    }
}

fn names(t: &Table, schema: Option<&str>, name: &str) -> bool {
    let own = t.name.schema.as_ref().map_or("dbo", |s| s.as_str());
    t.name.name.as_str().eq_ignore_ascii_case(name)
        && schema.is_none_or(|s| s.eq_ignore_ascii_case(own))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Name(String),
    Punct(char),
}

/// Words (upper-cased), `[names]` and `"names"`, punctuation; strings and comments skipped.
fn tokens(sql: &str) -> Vec<Tok> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if ch == '\'' {
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' && chars.get(i + 1) == Some(&'\'') {
                    i += 2;
                } else if chars[i] == '\'' {
                    break;
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if ch == '[' || ch == '"' {
            let close = if ch == '[' { ']' } else { '"' };
            let mut name = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == close && chars.get(i + 1) == Some(&close) {
                    name.push(close);
                    i += 2;
                } else if chars[i] == close {
                    break;
                } else {
                    name.push(chars[i]);
                    i += 1;
                }
            }
            i += 1;
            out.push(Tok::Name(name));
        } else if ch.is_alphanumeric() || ch == '_' || ch == '@' || ch == '#' {
            let mut w = String::new();
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '@' | '#' | '$'))
            {
                w.push(chars[i]);
                i += 1;
            }
            out.push(Tok::Word(w));
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    out
}

fn is_kw(t: &Tok, k: &str) -> bool {
    matches!(t, Tok::Word(w) if w.eq_ignore_ascii_case(k))
}

/// A name of one to three parts at `toks[i..]`: its schema (if given) and table.
fn object_name(toks: &[Tok], mut i: usize) -> Option<(Option<String>, String)> {
    const NOT_NAMES: [&str; 12] = [
        "OUTPUT", "WHEN", "WHERE", "SET", "VALUES", "SELECT", "FROM", "TOP", "USING", "ON", "AS",
        "INTO",
    ];
    let part = |t: &Tok| match t {
        Tok::Name(n) => Some(n.clone()),
        Tok::Word(w)
            if !w.starts_with('@') && !NOT_NAMES.iter().any(|k| w.eq_ignore_ascii_case(k)) =>
        {
            Some(w.clone())
        }
        _ => None,
    };
    let mut parts = vec![part(toks.get(i)?)?];
    while toks.get(i + 1) == Some(&Tok::Punct('.')) {
        parts.push(part(toks.get(i + 2)?)?);
        i += 2;
    }
    let name = parts.pop()?;
    Some((parts.pop(), name))
}

/// The tables that `sql` writes with an `OUTPUT` clause that has no `INTO`.
pub fn targets_without_into(sql: &str) -> Vec<(Option<String>, String)> {
    let toks = tokens(sql);
    let mut out = Vec::new();
    let mut target: Option<(Option<String>, String)> = None;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let after = |k: &str| -> usize {
            if toks.get(i + 1).is_some_and(|n| is_kw(n, k)) {
                i + 2
            } else {
                i + 1
            }
        };
        // (A MERGE's `INSERT (cols)` and `DELETE` name no table: the MERGE's target stands.)
        if is_kw(t, "INSERT") || is_kw(t, "MERGE") {
            target = object_name(&toks, after("INTO")).or(target);
        } else if is_kw(t, "DELETE") {
            target = object_name(&toks, after("FROM")).or(target);
        } else if is_kw(t, "UPDATE") {
            let mut j = i + 1;
            if toks.get(j).is_some_and(|n| is_kw(n, "TOP")) {
                while j < toks.len() && toks[j] != Tok::Punct(')') {
                    j += 1;
                }
                j += 1;
            }
            target = object_name(&toks, j).or(target);
        } else if is_kw(t, "OUTPUT") {
            let into = toks[i + 1..]
                .iter()
                .find(|n| {
                    [
                        "INTO", "VALUES", "SELECT", "FROM", "WHERE", "DEFAULT", "INSERT", "UPDATE",
                        "DELETE", "MERGE",
                    ]
                    .iter()
                    .any(|k| is_kw(n, k))
                        || **n == Tok::Punct(';')
                })
                .is_some_and(|n| is_kw(n, "INTO"));
            if let (false, Some(tg)) = (into, target.clone()) {
                if !out.contains(&tg) {
                    out.push(tg);
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: Option<&str>, n: &str) -> (Option<String>, String) {
        (s.map(str::to_string), n.to_string())
    }

    #[test]
    fn finds_what_ef_core_sends_and_nothing_that_has_into() {
        // EF Core 7+: an insert, an update and a MERGE-based batch insert.
        assert_eq!(
            targets_without_into("SET IMPLICIT_TRANSACTIONS OFF; SET NOCOUNT ON;\nINSERT INTO [Blogs] ([Name])\nOUTPUT INSERTED.[Id]\nVALUES (@p0);"),
            [t(None, "Blogs")]
        );
        assert_eq!(
            targets_without_into(
                "UPDATE [dbo].[Blogs] SET [Name] = @p0\nOUTPUT 1\nWHERE [Id] = @p1;"
            ),
            [t(Some("dbo"), "Blogs")]
        );
        assert_eq!(
            targets_without_into("MERGE [Sales].[Order Lines] USING (VALUES (@p0, 0)) AS i ([Qty], _Position) ON 1=0\nWHEN NOT MATCHED THEN\nINSERT ([Qty]) VALUES (i.[Qty])\nOUTPUT INSERTED.[Id], i._Position;"),
            [t(Some("Sales"), "Order Lines")]
        );
        assert_eq!(
            targets_without_into("DELETE FROM t OUTPUT DELETED.* WHERE id = 1"),
            [t(None, "t")]
        );
        // With INTO (EF's trigger-aware form), in a string, in a comment: nothing.
        assert!(targets_without_into("DECLARE @x TABLE (id int); INSERT INTO [Blogs] ([Name]) OUTPUT INSERTED.[Id] INTO @x VALUES (@p0);").is_empty());
        assert!(targets_without_into(
            "INSERT INTO t (c) VALUES (N'OUTPUT inserted.x') -- OUTPUT 1"
        )
        .is_empty());
        assert!(
            targets_without_into("UPDATE TOP (5) [t] SET c = 1 OUTPUT inserted.c INTO #o")
                .is_empty()
        );
    }

    #[test]
    fn matches_captured_tables_by_name_with_or_without_schema() {
        let table = rowtrail_sql::ddl::parse_mssql(
            "CREATE TABLE [dbo].[Blogs] (Id int NOT NULL PRIMARY KEY);",
        )
        .unwrap()
        .remove(0);
        assert!(names(&table, None, "blogs"));
        assert!(names(&table, Some("DBO"), "Blogs"));
        assert!(!names(&table, Some("sales"), "Blogs"));
    }
}
