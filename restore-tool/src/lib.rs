//! rowtrail-restore: answering audit questions from the archive, and undoing changes.
//!
//! * [`history`]: one row's life, with what changed in each step.
//! * [`audit`]: filtered, streamed listings of changes, as a table, JSON lines or CSV.
//! * [`scope`]: what an undo covers.
//! * [`conflict`]: dependencies between changes, found from the archive; [`plan`]: ordered
//!   undo and redo steps under a conflict mode (pure), and the apply layer's job they become.
//! * [`staged`]: the refusal to undo a transaction that is still partly in staging.
//! * [`run`]: the whole undo/redo with its journal entry; [`session`]: the source, the lock,
//!   the archive and pending runs, as the command line uses them.
//!
//! Archived changes are read through [`rowtrail_reader::archive`]; plans are applied to the
//! source through [`rowtrail_apply`].

pub mod audit;
pub mod conflict;
pub mod error;
pub mod history;
pub mod plan;
pub mod run;
pub mod scope;
pub mod session;
pub mod staged;

pub use error::RestoreError;
