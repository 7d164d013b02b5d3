//! rowtrail-restore: answering audit questions from the archive, and undoing changes.
//!
//! * [`history`]: one row's life, with what changed in each step.

pub mod error;
pub mod history;

pub use error::RestoreError;
