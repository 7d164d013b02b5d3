//! rowtrail-standby: the backup host's copy of the source, built on the archive.
//!
//! * [`baseline`]: snapshots of the captured tables taken online into the archive, each at an
//!   exact point of the change stream, resumable table by table.
//! * [`replica`]: a SQLite file holding the source's tables, built from a baseline and kept
//!   current by applying archived changes up to a cut (one replica transaction per step
//!   forward, its position recorded in the same transaction), optionally kept a delay behind;
//!   rewound to an earlier cut by applying the same changes backwards; rebuilt as of a moment
//!   ([`as_of`]: a time, a seq, or before a transaction), whole or for some tables.
//! * [`trail`]: the trail as plain tables in a replica (`--trail-tables`), for auditors.
//! * [`compare`]: a replica against its live source by key-range checksums, narrowed down to
//!   rows where they differ, rows still changing set apart; repair makes the replica's
//!   differing rows equal the source's.
//!
//! Every write goes through the apply layer ([`rowtrail_apply`]); every read of the archive
//! through its change stream ([`rowtrail_reader::archive`]).

pub mod as_of;
pub mod baseline;
pub mod compare;
mod error;
pub mod replica;
mod steps;
mod tables;
pub mod trail;

pub use error::StandbyError;
pub use steps::FAILPOINTS;
