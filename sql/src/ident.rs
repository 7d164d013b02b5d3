//! Identifiers, and the only way they are ever written into SQL text.
//!
//! An [`Ident`] is a validated name. It reaches SQL only through [`Ident::quoted`] (or the
//! [`Ident::sqlite`] / [`Ident::mssql`] shorthands), which always quote: `"..."` with `"` doubled for
//! SQLite, `[...]` with `]` doubled for SQL Server. No code path formats a raw name into SQL.

use std::fmt;

use crate::SqlError;

/// The longest identifier rowtrail accepts, in characters (SQL Server's `sysname` limit).
pub const MAX_IDENT_CHARS: usize = 128;

/// The SQL dialect a piece of text is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// SQLite, the embedded engine.
    Sqlite,
    /// Microsoft SQL Server (T-SQL).
    Mssql,
}

/// A validated identifier: non-empty, at most [`MAX_IDENT_CHARS`] characters, no NUL.
///
/// Any other character is allowed (quotes, brackets, spaces, newlines, unicode): quoting makes
/// them safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Ident(String);

impl Ident {
    /// Validates `name` as an identifier.
    pub fn new(name: impl Into<String>) -> Result<Self, SqlError> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.chars().count() > MAX_IDENT_CHARS {
            Some("it is longer than 128 characters")
        } else if name.contains('\0') {
            Some("it contains a NUL character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(SqlError::InvalidIdentifier { name, reason }),
            None => Ok(Self(name)),
        }
    }

    /// The name as the engine stores it (unquoted). For messages and catalogs, never for SQL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This name quoted for `dialect`.
    pub fn quoted(&self, dialect: Dialect) -> Quoted<'_> {
        Quoted(self, dialect)
    }

    /// This name quoted for SQLite: `"..."` with `"` doubled.
    pub fn sqlite(&self) -> Quoted<'_> {
        Quoted(self, Dialect::Sqlite)
    }

    /// This name quoted for SQL Server: `[...]` with `]` doubled.
    pub fn mssql(&self) -> Quoted<'_> {
        Quoted(self, Dialect::Mssql)
    }
}

impl<'de> serde::Deserialize<'de> for Ident {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ident::new(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Ident {
    /// Shows the bare name, for humans. Use [`Ident::quoted`] for SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An identifier quoted for one dialect; its `Display` is the SQL text.
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a>(&'a Ident, Dialect);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (open, close) = match self.1 {
            Dialect::Sqlite => ('"', '"'),
            Dialect::Mssql => ('[', ']'),
        };
        let mut out = String::with_capacity(self.0 .0.len() + 2);
        out.push(open);
        for c in self.0 .0.chars() {
            if c == close {
                out.push(close);
            }
            out.push(c);
        }
        out.push(close);
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_double_the_closing_character() {
        let id = Ident::new("a\"b]c'd").unwrap();
        assert_eq!(id.sqlite().to_string(), "\"a\"\"b]c'd\"");
        assert_eq!(id.mssql().to_string(), "[a\"b]]c'd]");
    }

    #[test]
    fn refuses_empty_long_and_nul() {
        assert!(Ident::new("").is_err());
        assert!(Ident::new("x".repeat(129)).is_err());
        assert!(Ident::new("é".repeat(128)).is_ok());
        assert!(Ident::new("a\0b").is_err());
    }
}
