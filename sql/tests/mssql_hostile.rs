//! Hostile identifiers (issue 4, part 5): more than a thousand names made of `]`, `'`, `"`, `[`,
//! spaces, newlines, comment markers, unicode and 128-character runs. Every generated script
//! parses in ScriptDom, and every name appears only correctly quoted. Names sqlcmd would read as
//! a command (a line that reads `GO`, `:r`, `!!`, …) or a variable (`$(`) are refused by name.

mod common;

use std::collections::HashSet;

use rowtrail_sql::mssql::script::{check_name, is_go_line};
use rowtrail_sql::mssql::{Deployment, Script};
use rowtrail_sql::{Column, Ident, SqlError, Table, TableName};
use sqlparser::dialect::MsSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

const PIECES: &[&str] = &[
    "]", "]]", "[", "'", "''", "\"", " ", "  ", "\n", "\r\n", "\t", "GO", "go", "--", "/*", "*/",
    ";", "N'", ")", "(", ",", ".", "@", "#", "%", "\\", "é", "中文", "😀", "ß", "Ω", "\u{200b}",
    "a", "Z", "_", "0", "select", "END", "$", "!", ":", "=",
];

/// A deterministic supply of hostile names.
fn hostile_names(n: usize) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(4);
    let mut fixed: Vec<String> = [
        "]",
        "[",
        "'",
        "\"",
        " ",
        "]]",
        "[]",
        "a]b",
        "a'b",
        "a\"b",
        "a b",
        "a\nb",
        "a\r\nb",
        " GO ",
        "go",
        "x\nGO",
        "GO\nx",
        "-- not a comment",
        "/* not a comment */",
        "*/",
        "'; DROP TABLE t; --",
        "N'x'",
        "'",
        "ünïcödé",
        "中文名",
        "😀",
        "\u{feff}bom",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    fixed.push("é".repeat(128));
    fixed.push("]".repeat(128));
    fixed.push(format!("{}\n{}", "'".repeat(60), "\"".repeat(67)));
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for f in fixed {
        if seen.insert(f.to_lowercase()) {
            out.push(f);
        }
    }
    while out.len() < n {
        let parts = rng.usize(1..8);
        let mut s = String::new();
        for _ in 0..parts {
            s.push_str(PIECES[rng.usize(..PIECES.len())]);
        }
        if s.chars().count() > 128
            || s.contains('\0')
            || rowtrail_sql::staging::is_reserved_column(&s)
        {
            continue;
        }
        if s.trim().eq_ignore_ascii_case("rowtrail") {
            continue;
        }
        if seen.insert(s.to_lowercase()) {
            out.push(s);
        }
    }
    out
}

const TYPES: &[&str] = &[
    "int",
    "nvarchar(20)",
    "decimal(9,2)",
    "varbinary(max)",
    "datetime2(7)",
    "uniqueidentifier",
    "xml",
    "sql_variant",
];

struct Fixture {
    tables: Vec<Table>,
    names: Vec<String>,
    refused: Vec<String>,
}

/// 40 tables of 25 columns, every name hostile and accepted by sqlcmd.
fn fixture() -> Fixture {
    let all = hostile_names(1500);
    let (ok, refused): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|n| check_name(n).is_ok());
    let mut pool = ok.clone().into_iter();
    let mut tables = Vec::new();
    let mut names = Vec::new();
    for t in 0..40 {
        let schema = pool.next().unwrap();
        // A name starting with `#` is a temporary table: SQL Server cannot capture it.
        let name = pool.by_ref().find(|n| !n.starts_with('#')).unwrap();
        names.push(schema.clone());
        names.push(name.clone());
        let mut columns = Vec::new();
        for c in 0..25 {
            let col = pool.next().unwrap();
            names.push(col.clone());
            let ty = if c < 2 {
                ["int", "nvarchar(20)"][c]
            } else {
                TYPES[(t + c) % TYPES.len()]
            };
            columns.push(Column::new(Ident::new(col).unwrap(), ty, c >= 2));
        }
        tables.push(Table {
            name: TableName {
                schema: Some(Ident::new(schema).unwrap()),
                name: Ident::new(name).unwrap(),
            },
            columns,
            primary_key: if t % 5 == 4 { vec![] } else { vec![0, 1] },
            unique_keys: vec![],
            rowid: false,
        });
    }
    Fixture {
        tables,
        names,
        refused,
    }
}

fn scripts(f: &Fixture) -> Vec<Script> {
    let opts = common::options();
    let d = Deployment::generate(&f.tables, &opts).expect("hostile names deploy");
    let login = Ident::new(f.names[7].clone()).unwrap();
    let mut out = vec![
        d.install.clone(),
        d.uninstall.clone(),
        d.permissions(&login).unwrap(),
    ];
    for (i, old) in f.tables.iter().take(3).enumerate() {
        let mut new = old.clone();
        new.columns.push(Column::new(
            Ident::new(format!("]new'\"col {i}")).unwrap(),
            "nvarchar(max)",
            true,
        ));
        new.columns[2].sql_type = "bigint".into();
        let mut s = Deployment::upgrade(old, &new, &opts).unwrap();
        s.name = format!("upgrade-{i}");
        out.push(s);
    }
    out
}

#[test]
fn at_least_a_thousand_hostile_names_are_used() {
    let f = fixture();
    assert!(f.names.len() >= 1000, "{}", f.names.len());
    let joined: String = f.names.concat();
    for piece in ["]", "'", "\"", "[", " ", "\n", "中文"] {
        assert!(joined.contains(piece), "no name holds {piece:?}");
    }
    assert!(f.names.iter().any(|n| n.chars().count() == 128));
}

#[test]
fn names_sqlcmd_would_misread_are_refused_by_name() {
    let f = fixture();
    assert!(
        f.refused.iter().any(|n| n.lines().skip(1).any(is_go_line)),
        "no GO-line name was generated"
    );
    for bad in f.refused.iter().take(50) {
        let t = Table {
            name: TableName {
                schema: Some(Ident::new("dbo").unwrap()),
                name: Ident::new("t").unwrap(),
            },
            columns: vec![Column::new(Ident::new(bad.clone()).unwrap(), "int", false)],
            primary_key: vec![0],
            unique_keys: vec![],
            rowid: false,
        };
        match Deployment::generate(&[t], &common::options()) {
            Err(SqlError::Uncapturable { table, reason }) => {
                assert_eq!(table, "dbo.t");
                assert!(reason.contains("sqlcmd"), "{reason}");
            }
            other => panic!("{bad:?} was not refused: {other:?}"),
        }
    }
    assert!(Ident::new("x".repeat(129)).is_err());
}

/// Every bracketed identifier in `sql` is one of `allowed`; returns those seen.
fn quoted_identifiers(sql: &str) -> Vec<String> {
    let toks = Tokenizer::new(&MsSqlDialect {}, sql)
        .tokenize()
        .expect("tokenizes");
    toks.into_iter()
        .filter_map(|t| match t {
            Token::Word(w) if w.quote_style == Some('[') => Some(w.value),
            _ => None,
        })
        .collect()
}

#[test]
fn every_name_appears_only_correctly_quoted() {
    let f = fixture();
    let d = Deployment::generate(&f.tables, &common::options()).unwrap();
    let mut allowed: HashSet<String> = f.names.iter().cloned().collect();
    for c in &d.tables {
        allowed.insert(c.staging.as_str().into());
        allowed.insert(c.trigger.as_str().into());
    }
    for own in [
        "rowtrail",
        "dbo",
        "rowtrail_seq",
        "rowtrail_meta",
        "rowtrail_registry",
        "rowtrail_versions",
        "key",
        "value",
        "table_schema",
        "table_name",
        "staging_name",
        "trigger_name",
        "definition",
        "installed_at",
        "first_seq",
        "recorded_at",
        "rowtrail_columns",
        "rowtrail_ddl_guard",
        "column_name",
        "system_type_id",
        "user_type_id",
        "max_length",
        "precision",
        "scale",
        "collation_name",
    ] {
        allowed.insert(own.into());
    }
    allowed.extend(
        rowtrail_sql::staging::METADATA_COLUMNS
            .iter()
            .map(|s| s.to_string()),
    );
    allowed.extend((0..3).map(|i| format!("]new'\"col {i}")));
    let mut seen = HashSet::new();
    for s in scripts(&f) {
        for (i, b) in s.batches().iter().enumerate() {
            for q in quoted_identifiers(&b.sql) {
                assert!(
                    allowed.contains(&q),
                    "{} batch {}: unexpected quoted name {q:?}",
                    s.file_name(),
                    i + 1
                );
                seen.insert(q);
            }
        }
    }
    for n in &f.names[..f.names.len() - 25] {
        assert!(seen.contains(n), "{n:?} never appears quoted");
    }
}

#[test]
fn quote_following_splitters_see_the_same_batches() {
    // go-sqlcmd follows '…', "…" and comments but not […]: each batch must end in plain text.
    for s in scripts(&fixture()) {
        let text = s.render();
        let mut quote: Option<char> = None;
        let mut block = false;
        let mut batches = 0;
        for line in text.lines() {
            if quote.is_none() && !block && is_go_line(line) {
                batches += 1;
                continue;
            }
            let ch: Vec<char> = line.chars().collect();
            let mut i = 0;
            while i < ch.len() {
                let next = ch.get(i + 1).copied();
                match (quote, block) {
                    (Some(q), _) => {
                        if ch[i] == q {
                            if next == Some(q) {
                                i += 1
                            } else {
                                quote = None
                            }
                        }
                    }
                    (None, true) => {
                        if ch[i] == '*' && next == Some('/') {
                            block = false;
                            i += 1
                        }
                    }
                    (None, false) => {
                        if ch[i] == '\'' || ch[i] == '"' {
                            quote = Some(ch[i])
                        } else if ch[i] == '-' && next == Some('-') {
                            break;
                        } else if ch[i] == '/' && next == Some('*') {
                            block = true;
                            i += 1
                        }
                    }
                }
                i += 1;
            }
        }
        assert_eq!(batches, s.batches().len(), "{}", s.file_name());
    }
}

#[test]
fn every_hostile_script_parses_in_scriptdom() {
    let scripts = scripts(&fixture());
    let batches: usize = scripts.iter().map(|s| s.batches().len()).sum();
    let summary = common::scriptdom("hostile", &scripts);
    eprintln!("ScriptDom: {summary}");
    assert!(
        summary.starts_with(&format!(
            "validated {} scripts, {batches} batches, 0 errors",
            scripts.len()
        )),
        "{summary}"
    );
}

#[test]
fn hostile_names_round_trip_through_the_ddl_reader() {
    let f = fixture();
    let mut ddl = String::new();
    for t in &f.tables {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| {
                format!(
                    "{} {} {}",
                    c.name.mssql(),
                    c.sql_type,
                    if c.nullable { "NULL" } else { "NOT NULL" }
                )
            })
            .collect();
        ddl.push_str(&format!(
            "CREATE TABLE {} (\n    {}",
            t.name.quoted(rowtrail_sql::Dialect::Mssql),
            cols.join(",\n    ")
        ));
        if !t.primary_key.is_empty() {
            let key: Vec<String> = t
                .primary_key
                .iter()
                .map(|&k| t.columns[k].name.mssql().to_string())
                .collect();
            ddl.push_str(&format!(
                ",\n    CONSTRAINT [pk]]'] PRIMARY KEY CLUSTERED ({})",
                key.join(", ")
            ));
        }
        ddl.push_str("\n)\nGO\n");
    }
    let parsed = rowtrail_sql::ddl::parse_mssql(&ddl).expect("hostile DDL parses");
    assert_eq!(parsed.len(), f.tables.len());
    for (p, t) in parsed.iter().zip(&f.tables) {
        assert_eq!(p.name, t.name);
        for (pc, tc) in p.columns.iter().zip(&t.columns) {
            assert_eq!(pc, tc, "in {}", t.name);
        }
        assert_eq!(p.columns.len(), t.columns.len(), "{}", t.name);
        assert_eq!(p.primary_key, t.primary_key, "{}", t.name);
    }
}
