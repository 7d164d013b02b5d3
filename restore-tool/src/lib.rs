//! rowtrail-restore: answering audit questions from the archive, and undoing changes.
//!
//! * [`history`]: one row's life, with what changed in each step.
//! * [`audit`]: filtered, streamed listings of changes, as a table, JSON lines or CSV.
//! * [`scope`]: what an undo covers; [`load`]: archived changes as planning needs them.
//! * [`conflict`]: dependencies between changes, found from the archive; [`plan`]: ordered
//!   undo and redo steps under a conflict mode (pure).
//! * [`target`]: the source an undo applies to, SQLite or SQL Server; [`apply`]: a plan applied
//!   to a SQLite source in one guarded, labelled transaction; [`link`]: how a run's own writes
//!   are recognised in the capture; [`run`]: the whole undo/redo with its journal entry.

pub mod apply;
pub mod audit;
pub mod conflict;
pub mod error;
pub mod history;
pub mod link;
pub mod load;
pub mod plan;
pub mod run;
pub mod scope;
pub mod target;

pub use error::RestoreError;
