//! Subjects: where each change is published, `<prefix>.<source>.<schema>.<table>`.
//!
//! A NATS subject is a list of tokens separated by `.`; a token may not be empty nor hold `.`,
//! `*`, `>` or white space, and anything but printable ASCII is asking for trouble in other
//! clients. Database names may hold all of these, so each name becomes one token by
//! percent-encoding: ASCII letters, digits, `-` and `_` stay as they are; every other byte of
//! the name's UTF-8 (`%` itself among them) is written `%XX` in upper-case hex. An empty name
//! (a SQLite table has no schema; `main` stands for it) is `%00`, which no real name encodes
//! to. The encoding is one-to-one, so [`decode_token`] gives the name back, and names that
//! differ only in case stay apart.
//!
//! The prefix (`[stream] subject`) is one or more tokens of the safe characters, chosen by the
//! operator; it is checked, never encoded.

use crate::StreamError;

/// The schema token of a SQLite table (which has no schema): SQLite's own name for the main
/// database.
pub const SQLITE_SCHEMA: &str = "main";

/// `name` as one subject token (see the module documentation).
pub fn token(name: &str) -> String {
    if name.is_empty() {
        return "%00".into();
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The name a [`token`] encodes, or `None` when `token` is not one.
pub fn decode_token(token: &str) -> Option<String> {
    if token == "%00" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = token.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a subject prefix: tokens of ASCII letters, digits, `-` and `_`, joined by `.`.
pub fn check_prefix(prefix: &str) -> Result<(), StreamError> {
    let ok = !prefix.is_empty()
        && prefix.split('.').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(StreamError::Config(format!(
            "stream.subject is {prefix:?}; it must be one or more tokens of ASCII letters, digits, \
             '-' and '_' joined by '.' (such as \"rowtrail\" or \"cdc.sales\")"
        )))
    }
}

/// The subjects of one source's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    /// `<prefix>.<source>`, both parts already tokens.
    base: String,
    /// The source's name, as given.
    source: String,
}

impl Subjects {
    /// The subjects under `prefix` (checked) of the source named `source` (encoded).
    pub fn new(prefix: &str, source: &str) -> Result<Self, StreamError> {
        check_prefix(prefix)?;
        Ok(Self {
            base: format!("{prefix}.{}", token(source)),
            source: source.to_string(),
        })
    }

    /// The subjects a consumer names: `<prefix>.<source>` or `<prefix>.<source>.>`, the source
    /// token encoded as [`token`] makes it (`rowtrail.sales`, `cdc.eu.app%2Edb.>`).
    pub fn from_filter(filter: &str) -> Result<Self, StreamError> {
        let f = filter.trim();
        let base = f.strip_suffix(".>").unwrap_or(f);
        let refused = || {
            StreamError::Config(format!(
                "the subjects {filter:?} do not name one source: give <prefix>.<source> or \
                 <prefix>.<source>.> (such as rowtrail.sales.>), the source as the publisher's \
                 subjects spell it"
            ))
        };
        let (prefix, source) = base.rsplit_once('.').ok_or_else(refused)?;
        let source = decode_token(source).ok_or_else(refused)?;
        check_prefix(prefix).map_err(|_| refused())?;
        Self::new(prefix, &source)
    }

    /// The source's name, as given (not encoded).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The subject of a change to `table` in `schema` (`None` for SQLite: [`SQLITE_SCHEMA`]).
    pub fn of_table(&self, schema: Option<&str>, table: &str) -> String {
        format!(
            "{}.{}.{}",
            self.base,
            token(schema.unwrap_or(SQLITE_SCHEMA)),
            token(table)
        )
    }

    /// The wildcard that matches every change of the source: `<prefix>.<source>.>`.
    pub fn all(&self) -> String {
        format!("{}.>", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_one_safe_token_and_come_back() {
        for name in [
            "Orders",
            "order lines",
            "a.b",
            "*",
            ">",
            "%41",
            "tab\there",
            "new\nline",
            "Ünïcødé 表",
            "$SYS",
            "",
            "-_",
        ] {
            let t = token(name);
            assert!(!t.is_empty(), "{name:?}");
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_%".contains(&b)),
                "{name:?} -> {t}"
            );
            assert_eq!(decode_token(&t).as_deref(), Some(name), "{t}");
        }
        assert_ne!(token("A"), token("a"));
        assert_ne!(token("%41"), token("A"));
        assert_ne!(token(""), token("%00"));
        assert_eq!(decode_token("a.b"), None);
        assert_eq!(decode_token("%4"), None);
    }

    #[test]
    fn subjects_name_source_schema_and_table() {
        let s = Subjects::new("cdc.sales", "app.db").unwrap();
        assert_eq!(
            s.of_table(Some("dbo"), "Order Lines"),
            "cdc.sales.app%2Edb.dbo.Order%20Lines"
        );
        assert_eq!(s.of_table(None, "t"), "cdc.sales.app%2Edb.main.t");
        assert_eq!(s.all(), "cdc.sales.app%2Edb.>");
        for f in ["cdc.sales.app%2Edb", "cdc.sales.app%2Edb.>"] {
            assert_eq!(Subjects::from_filter(f).unwrap(), s);
        }
        for bad in [
            "sales",
            "rowtrail.*",
            "a b.c",
            "rowtrail.%4",
            "rowtrail.s.*",
        ] {
            let e = Subjects::from_filter(bad).unwrap_err().to_string();
            assert!(e.contains("do not name one source"), "{bad}: {e}");
        }
        for bad in ["", "a..b", "a.*", "a b", ".a", "a>"] {
            let e = Subjects::new(bad, "s").unwrap_err().to_string();
            assert!(e.contains("stream.subject"), "{e}");
        }
    }
}
