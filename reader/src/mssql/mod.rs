//! SQL Server: the one place rowtrail talks to it (tiberius over rustls, driven by a
//! current-thread tokio runtime behind blocking calls).
//!
//! * [`settings`]: the ADO.NET connection string, the password kept apart, certificate trust.
//! * [`client`]: the connection, transactions that roll back on drop, retry with backoff.
//! * [`error`]: transient or fatal.
//! * [`convert`]: every captured type to its exact archive value.
//! * [`source`]: [`MssqlSource`], the [`crate::source::Source`] the mover drains; [`probe`]: its
//!   adaptive probe.
//! * [`queries`]: every fixed statement the reader sends.
//! * [`catalog`]: registry, incarnation, live table definitions, triggers.
//! * [`output_clause`]: statements that `OUTPUT` without `INTO` into captured tables (Msg 334).
//! * [`install`]: runs generated scripts batch by batch; [`check`]: drift between what is
//!   installed and what should be.
//! * [`versions`]: staged rows labelled with the table version they were staged under.
//! * [`barrier`]: which seqs are settled (no transaction holding one is still open); [`cut`]:
//!   the consistent cut it establishes; [`baseline`]: online baselines at an exact position.
//! * [`quarantine`]: staged rows that cannot be decoded, kept in staging while reading goes on.
//! * [`undo`]: what undo and redo need: foreign keys (grouped by [`foreign_keys`]), the undo's
//!   transaction id, staged writes of a transaction, running a rendered undo script.

pub mod barrier;
pub mod baseline;
pub mod catalog;
pub mod check;
pub mod client;
pub mod convert;
pub mod cut;
pub mod error;
pub mod foreign_keys;
pub mod install;
pub mod output_clause;
pub mod probe;
pub mod quarantine;
pub mod queries;
pub mod settings;
pub mod source;
pub mod undo;
pub mod versions;

pub use client::MssqlClient;
pub use settings::Settings;
pub use source::MssqlSource;
