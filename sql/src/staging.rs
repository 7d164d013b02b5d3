//! The staging contract shared by every engine (DESIGN §3).
//!
//! Each captured table gets a staging table with the source table's columns plus the metadata
//! columns below. One staging row is one row image:
//!
//! | op  | images                                                         |
//! |-----|----------------------------------------------------------------|
//! | `I` | one after-image (`A`)                                          |
//! | `D` | one before-image (`B`)                                         |
//! | `U` | a before-image with seq `s` and its after-image with seq `s+1` |
//! | `K` | an image of an update that could not be paired (a multi-row    |
//! |     | key-changing statement); undone by statement, as a whole       |
//!
//! Sequence numbers come from one counter per source database; they may have gaps.

use sha2::{Digest, Sha256};

use crate::{Ident, TableName};

/// The prefix of every object rowtrail creates in a source database.
pub const PREFIX: &str = "rowtrail_";

/// Global sequence number of the image (the staging table's key).
pub const COL_SEQ: &str = "rowtrail_seq";
/// `I`, `U`, `D` or `K` (see the module documentation).
pub const COL_OP: &str = "rowtrail_op";
/// `B` (before-image) or `A` (after-image).
pub const COL_IMAGE: &str = "rowtrail_image";
/// Transaction id, where the engine (or, on SQLite, the writer) declares one.
pub const COL_TX: &str = "rowtrail_tx";
/// Statement id, where the engine can tell one.
pub const COL_STMT: &str = "rowtrail_stmt";
/// Server UTC time of the statement (SQL Server: `datetime2(7)`; SQLite: a Julian day number).
pub const COL_TIME: &str = "rowtrail_time";
/// Original login.
pub const COL_LOGIN: &str = "rowtrail_login";
/// Client host name (client-supplied).
pub const COL_HOST: &str = "rowtrail_host";
/// Client application name (client-supplied).
pub const COL_APP: &str = "rowtrail_app";
/// Client network address.
pub const COL_CLIENT_IP: &str = "rowtrail_client_ip";
/// SQLite rowid of the source row (rowid tables only).
pub const COL_ROWID: &str = "rowtrail_rowid";

/// The metadata columns, in staging column order (before the source table's own columns).
pub const METADATA_COLUMNS: [&str; 10] = [
    COL_SEQ,
    COL_OP,
    COL_IMAGE,
    COL_TX,
    COL_STMT,
    COL_TIME,
    COL_LOGIN,
    COL_HOST,
    COL_APP,
    COL_CLIENT_IP,
];

/// Whether a source column name collides with a staging metadata column.
pub fn is_reserved_column(name: &str) -> bool {
    let lower = name.to_lowercase();
    METADATA_COLUMNS.contains(&lower.as_str()) || lower == COL_ROWID
}

/// The kind of change an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A row was inserted.
    Insert,
    /// A row was updated (images paired).
    Update,
    /// A row was deleted.
    Delete,
    /// One image of an unpaired, key-changing multi-row update.
    KeyChange,
}

impl Op {
    /// The one-letter staging code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Insert => "I",
            Op::Update => "U",
            Op::Delete => "D",
            Op::KeyChange => "K",
        }
    }

    /// Parses a staging code.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code {
            "I" => Op::Insert,
            "U" => Op::Update,
            "D" => Op::Delete,
            "K" => Op::KeyChange,
            _ => return None,
        })
    }

    /// The word used in the archive and the CLI.
    pub fn word(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::KeyChange => "keychange",
        }
    }

    /// Parses the word used in the archive and the CLI.
    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "insert" => Op::Insert,
            "update" => Op::Update,
            "delete" => Op::Delete,
            "keychange" => Op::KeyChange,
            _ => return None,
        })
    }

    /// Every op, in the order the CLI lists them.
    pub const ALL: [Op; 4] = [Op::Insert, Op::Update, Op::Delete, Op::KeyChange];
}

/// The derived, collision-free name of an object rowtrail creates for `table`.
///
/// `role` says what the object is (`s` staging, `p` pending, `ai`/`au`/`ad` triggers, ...). The
/// name is `rowtrail_<role>_<slug>_<hash>`: the slug keeps it readable (ASCII letters, digits and
/// `_` of the table name, at most 40), and the hash (the first 10 hex digits of SHA-256 over
/// schema and table) keeps two tables whose slugs agree apart.
pub fn derived_name(table: &TableName, role: &str) -> Ident {
    let mut h = Sha256::new();
    h.update(table.schema.as_ref().map_or("", |s| s.as_str()).as_bytes());
    h.update([0u8]);
    h.update(table.name.as_str().as_bytes());
    let digest = h.finalize();
    let hash: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    let slug: String = table
        .name
        .as_str()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    let name = if slug.is_empty() {
        format!("{PREFIX}{role}_{hash}")
    } else {
        format!("{PREFIX}{role}_{slug}_{hash}")
    };
    Ident::new(name).expect("derived names are short and printable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_differ_for_tables_whose_slugs_agree() {
        let a = TableName::bare(Ident::new("order items").unwrap());
        let b = TableName::bare(Ident::new("order_items").unwrap());
        let c = TableName::bare(Ident::new("orderitems").unwrap());
        let names: std::collections::HashSet<_> =
            [&a, &b, &c].iter().map(|t| derived_name(t, "s")).collect();
        assert_eq!(names.len(), 3);
        assert!(derived_name(&b, "s")
            .as_str()
            .starts_with("rowtrail_s_order_items_"));
    }

    #[test]
    fn schema_takes_part_in_the_name() {
        let t = Ident::new("t").unwrap();
        let a = TableName {
            schema: Some(Ident::new("a").unwrap()),
            name: t.clone(),
        };
        let b = TableName {
            schema: Some(Ident::new("b").unwrap()),
            name: t,
        };
        assert_ne!(derived_name(&a, "s"), derived_name(&b, "s"));
    }
}
