//! The archived change: the one type every reader of the archive gets back (history, audit,
//! undo planning, verification, the replica, the stream), decoded once.

use std::sync::Arc;

use rowtrail_sql::printable::printable;
use rowtrail_sql::staging::Op;
use rowtrail_sql::{Table, Value};

/// One archived change, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedChange {
    /// Archive position (the chain order). The number a user reads and types for a change.
    pub id: i64,
    /// The archive's id of the source incarnation.
    pub source_id: i64,
    /// The source's incarnation.
    pub incarnation: Arc<str>,
    /// Sequence number in that incarnation (an update's first image's).
    pub seq: i64,
    /// The archive's id of the table.
    pub table_id: i64,
    /// The table's definition when the change was archived.
    pub table: Arc<Table>,
    /// What happened.
    pub op: Op,
    /// Transaction id, if known.
    pub tx: Option<Value>,
    /// Statement id, if known.
    pub stmt: Option<Value>,
    /// Server UTC time of the statement.
    pub at: Option<String>,
    /// Login.
    pub login: Option<String>,
    /// Client host (client-supplied).
    pub host: Option<String>,
    /// Client application (client-supplied).
    pub app: Option<String>,
    /// Client address.
    pub client_ip: Option<String>,
    /// SQLite rowid of the row, for rowid tables.
    pub rowid: Option<i64>,
    /// The archive's row key of the main image (after-image, else before-image).
    pub row_key: Vec<u8>,
    /// The before-image's row key when it differs from `row_key`.
    pub prev_key: Option<Vec<u8>>,
    /// The row before.
    pub before: Option<Vec<Value>>,
    /// The row after.
    pub after: Option<Vec<Value>>,
    /// When the archive received it (µs since the epoch).
    pub archived_us: i64,
    /// Its link in the hash chain.
    pub hash: [u8; 32],
}

impl ArchivedChange {
    /// The key the row had before the change (None for an insert).
    pub fn before_key(&self) -> Option<&[u8]> {
        self.before
            .as_ref()
            .map(|_| self.prev_key.as_deref().unwrap_or(&self.row_key))
    }

    /// The key the row has after the change (None for a delete).
    pub fn after_key(&self) -> Option<&[u8]> {
        self.after.as_ref().map(|_| self.row_key.as_slice())
    }

    /// The transaction as text (a label, or a number), if known.
    pub fn tx_text(&self) -> Option<String> {
        self.tx.as_ref().map(label_text)
    }

    /// A one-line description without row values: `change 17 (update of staff, seq 31) by
    /// alice at …, tx 9`, its names and labels printable (control characters escaped).
    pub fn summary(&self) -> String {
        format!(
            "change {} ({} of {}, seq {}) by {} at {}{}",
            self.id,
            self.op.word(),
            printable(&self.table.name.to_string()),
            self.seq,
            printable(self.login.as_deref().unwrap_or("(unknown login)")),
            printable(self.at.as_deref().unwrap_or("(unknown time)")),
            self.tx_text()
                .map(|t| format!(", tx {}", printable(&t)))
                .unwrap_or_default()
        )
    }
}

/// A transaction or statement label as text: text as it is, anything else in its text form.
pub fn label_text(v: &Value) -> String {
    match v {
        Value::Text(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_string(),
    }
}
