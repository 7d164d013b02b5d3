//! A table's rows by key range, as a comparison asks for them: a checksum of the rows in a
//! range (computed where the rows are, so an equal range is never read row by row), the keys
//! that split a range into parts of about equal size, and, once a range is small, its rows.
//!
//! Ranges follow the table's key order (for a table without a key, the order of all its
//! columns, so rows equal in every column fall in one range). Both sides of a comparison must
//! order keys alike: values compare as SQLite compares them with the BINARY collation, NULL
//! lowest, whatever collation a column declares.

use rowtrail_sql::Value;

use crate::archive::BaselineRow;
use crate::ReaderError;

/// The rows whose key is above `after` (every row when `None`) and at or below `upto` (every
/// row when `None`). A key is the key columns' values (all columns for a table without key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyRange {
    /// The exclusive lower bound.
    pub after: Option<Vec<Value>>,
    /// The inclusive upper bound.
    pub upto: Option<Vec<Value>>,
}

impl KeyRange {
    /// Every row.
    pub fn all() -> Self {
        Self::default()
    }
}

/// What a range holds, in brief: how many rows, and a checksum of them that does not depend on
/// the order they are read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeSum {
    /// Rows in the range.
    pub rows: u64,
    /// The wrapping sum of each row's hash (the first 16 bytes of the SHA-256 of its canonical
    /// image, every column), little-endian.
    pub hash: [u8; 16],
}

/// One table, read in one consistent snapshot, by key range.
pub trait TableRanges {
    /// The rows in `range`: how many, and their checksum.
    fn sum(&mut self, range: &KeyRange) -> Result<RangeSum, ReaderError>;
    /// The keys of the `every`-th, `2 × every`-th, … row of `range` in key order: bounds that cut
    /// it into parts of at most `every` rows.
    fn split(&mut self, range: &KeyRange, every: u64) -> Result<Vec<Vec<Value>>, ReaderError>;
    /// The rows of `range` in key order (rowid first for rowid tables).
    fn rows(&mut self, range: &KeyRange) -> Result<Vec<BaselineRow>, ReaderError>;
    /// How many rows [`TableRanges::rows`] has handed out so far.
    fn rows_read(&self) -> u64;
}
