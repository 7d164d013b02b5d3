//! String literals, and the only way text values are written into SQL.
//!
//! `'...'` with `'` doubled for SQLite; `N'...'` with `'` doubled for SQL Server, so unicode
//! survives whatever the database's code page is.

use std::fmt;

use crate::Dialect;

/// A text literal for one dialect; its `Display` is the SQL text.
#[derive(Debug, Clone, Copy)]
pub struct Literal<'a> {
    text: &'a str,
    dialect: Dialect,
}

impl<'a> Literal<'a> {
    /// `text` as a literal of `dialect`.
    pub fn new(text: &'a str, dialect: Dialect) -> Self {
        Self { text, dialect }
    }

    /// `text` as a SQLite literal.
    pub fn sqlite(text: &'a str) -> Self {
        Self::new(text, Dialect::Sqlite)
    }

    /// `text` as a SQL Server unicode literal.
    pub fn mssql(text: &'a str) -> Self {
        Self::new(text, Dialect::Mssql)
    }
}

impl fmt::Display for Literal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(self.text.len() + 3);
        if self.dialect == Dialect::Mssql {
            out.push('N');
        }
        out.push('\'');
        for c in self.text.chars() {
            if c == '\'' {
                out.push('\'');
            }
            out.push(c);
        }
        out.push('\'');
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_single_quotes() {
        assert_eq!(Literal::sqlite("it's").to_string(), "'it''s'");
        assert_eq!(Literal::mssql("it's é").to_string(), "N'it''s é'");
    }
}
