//! The schema model: captured tables and their columns, the same for every engine.
//!
//! Catalog readers (in `rowtrail-reader`) and DDL parsers build these; script generators and
//! the archive consume them. The model serialises to JSON: that text is what the source's
//! registry and the archive's table versions record, so it must stay backward compatible.

use serde::{Deserialize, Serialize};

use crate::{Dialect, Ident, SqlError};

/// A table's schema-qualified name. SQLite tables have no schema (`main` is implied).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    /// The schema (SQL Server), or `None` on SQLite.
    pub schema: Option<Ident>,
    /// The table's own name.
    pub name: Ident,
}

impl TableName {
    /// A table name without a schema.
    pub fn bare(name: Ident) -> Self {
        Self { schema: None, name }
    }

    /// The name quoted for `dialect`, schema-qualified when it has a schema.
    pub fn quoted(&self, dialect: Dialect) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", s.quoted(dialect), self.name.quoted(dialect)),
            None => self.name.quoted(dialect).to_string(),
        }
    }
}

impl std::fmt::Display for TableName {
    /// Human form: `schema.table` or `table`, unquoted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// One column of a captured table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The column's name.
    pub name: Ident,
    /// The declared type exactly as the source states it (`""` when SQLite has none).
    pub sql_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Computed / generated: captured for audit, never written back by undo.
    #[serde(default)]
    pub computed: bool,
    /// SQL Server IDENTITY: re-inserts need `SET IDENTITY_INSERT`.
    #[serde(default)]
    pub identity: bool,
    /// SQL Server `rowversion`/`timestamp`: server-assigned, never written back.
    #[serde(default)]
    pub rowversion: bool,
    /// SQL Server SPARSE column.
    #[serde(default)]
    pub sparse: bool,
    /// The column's collation, where the source declares one.
    #[serde(default)]
    pub collation: Option<String>,
    /// SQL Server `GENERATED ALWAYS` (a temporal table's period columns, a ledger table's
    /// transaction and sequence columns): server-assigned, never written back and, since every
    /// write changes them, never compared by undo's guards. (Left out of the JSON when false,
    /// so definitions recorded before it existed read and compare the same.)
    #[serde(default, skip_serializing_if = "is_false")]
    pub generated: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Column {
    /// A plain column with a declared type.
    pub fn new(name: Ident, sql_type: impl Into<String>, nullable: bool) -> Self {
        Self {
            name,
            sql_type: sql_type.into(),
            nullable,
            computed: false,
            identity: false,
            rowversion: false,
            sparse: false,
            collation: None,
            generated: false,
        }
    }

    /// Whether undo may write this column (it is not computed and not server-assigned).
    pub fn writable(&self) -> bool {
        !self.computed && !self.rowversion && !self.generated
    }

    /// Whether the server assigns a new value on every write (`rowversion`, `GENERATED
    /// ALWAYS`), so that an undo's guard must not compare it.
    pub fn server_assigned(&self) -> bool {
        self.rowversion || self.generated
    }
}

/// A captured table: its columns and keys, as the source defines them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// The table's name.
    pub name: TableName,
    /// Columns in their declared order.
    pub columns: Vec<Column>,
    /// Positions (into `columns`) of the primary key, in key order; empty when there is none.
    pub primary_key: Vec<usize>,
    /// Other unique keys (positions into `columns`), used to find rows a REPLACE removes.
    #[serde(default)]
    pub unique_keys: Vec<Vec<usize>>,
    /// Whether the engine keeps a rowid for the table (SQLite rowid tables).
    #[serde(default)]
    pub rowid: bool,
}

impl Table {
    /// Checks what every engine needs before a table can be captured.
    pub fn validate(&self) -> Result<(), SqlError> {
        let refuse = |reason: String| {
            Err(SqlError::Uncapturable {
                table: self.name.to_string(),
                reason,
            })
        };
        if self.columns.is_empty() {
            return refuse("it has no columns".into());
        }
        for c in &self.columns {
            if crate::staging::is_reserved_column(c.name.as_str()) {
                return refuse(format!(
                    "its column {:?} uses a name rowtrail reserves for staging metadata; \
                     rename the column or leave the table out with --tables",
                    c.name.as_str()
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.columns {
            if !seen.insert(c.name.as_str().to_lowercase()) {
                return refuse(format!("column {:?} appears twice", c.name.as_str()));
            }
        }
        for &k in self
            .primary_key
            .iter()
            .chain(self.unique_keys.iter().flatten())
        {
            if k >= self.columns.len() {
                return refuse(format!(
                    "a key names column position {k}, which does not exist"
                ));
            }
        }
        Ok(())
    }

    /// The key columns that identify a row: the primary key, or `None` when the table has none
    /// (then the whole row is the identity).
    pub fn key(&self) -> Option<&[usize]> {
        (!self.primary_key.is_empty()).then_some(self.primary_key.as_slice())
    }

    /// The canonical JSON of this definition, as recorded in registries and archives.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a table model always serialises")
    }

    /// Reads a definition recorded with [`Table::to_json`].
    pub fn from_json(text: &str) -> Result<Self, SqlError> {
        serde_json::from_str(text).map_err(SqlError::BadDefinition)
    }
}

/// A foreign key of a source: `child (child_columns)` references `parent (parent_columns)`.
///
/// Tables are named as the archive names them (SQL Server: schema-qualified; SQLite: no
/// schema), so a key matches a change's table by [`TableName`] equality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// The referencing table.
    pub child: TableName,
    /// Its columns, in the key's order.
    pub child_columns: Vec<String>,
    /// The referenced table.
    pub parent: TableName,
    /// Its columns in the same order (the primary key's when the declaration names none).
    pub parent_columns: Vec<String>,
}
