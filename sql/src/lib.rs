//! rowtrail-sql: the pure heart of rowtrail.
//!
//! It owns the schema and value model ([`model`], [`value`]), the one way identifiers and
//! literals reach SQL text ([`ident`], [`literal`]), the canonical byte form of row images
//! ([`image`]), the staging contract shared by every engine ([`staging`]), the steps an undo or
//! an apply asks of an engine ([`undo`]), and script generation for each dialect ([`sqlite`],
//! [`mssql`]), each with its one renderer of those steps. Nothing in this crate performs I/O: every function takes a
//! model and returns text or bytes, so generated scripts can be reviewed, snapshotted and tested
//! without a database.

pub mod ddl;
pub mod error;
pub mod ident;
pub mod image;
pub mod key;
pub mod literal;
pub mod model;
pub mod mssql;
pub mod printable;
pub mod sqlite;
pub mod staging;
pub mod undo;
pub mod value;

pub use error::SqlError;
pub use ident::{Dialect, Ident};
pub use model::{Column, ForeignKey, Table, TableName};
pub use value::Value;
