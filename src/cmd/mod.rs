//! One module per subcommand.

pub mod audit;
pub mod baseline;
pub mod compare;
pub mod demo;
pub mod failover;
pub mod history;
pub mod init;
pub mod logging;
pub mod mssql;
pub mod read;
pub mod replica;
pub mod sql;
pub mod undo;
pub mod verify;
pub mod watch;
