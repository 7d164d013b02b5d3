//! SQL Server errors, classified: transient (try again) or fatal.
//!
//! Transient: the server chose this session as a deadlock victim (1205), a lock or memory wait
//! timed out, the connection was lost or timed out (any I/O error), or the server is busy
//! (Azure SQL's throttling and failover codes). Everything else — a login failure, a permission
//! or syntax error, a TLS certificate the client refuses — is fatal: trying again changes
//! nothing, so it is reported at once.

use crate::ReaderError;

/// Server error numbers worth retrying.
const TRANSIENT_CODES: &[u32] = &[
    1205,  // deadlock victim
    1222,  // lock request time out
    1204,  // the instance cannot obtain a lock resource now
    8645,  // timeout waiting for memory resources
    8651,  // low memory condition
    3960,  // snapshot isolation update conflict
    3961,  // snapshot isolation: the object was modified by another transaction
    233,   // no process on the other end of the pipe
    64,    // the specified network name is no longer available
    10053, // transport-level error: connection aborted
    10054, // transport-level error: connection reset by peer
    10060, // network timeout
    10928, // Azure SQL: resource limit reached
    10929, // Azure SQL: too busy
    40143, // Azure SQL: failover in progress
    40197, // Azure SQL: service error processing the request
    40501, // Azure SQL: service busy
    40613, // Azure SQL: database unavailable
    49918, // Azure SQL: not enough resources
    49919, // Azure SQL: too many create/update operations
    49920, // Azure SQL: too many operations
    41302, // in-memory OLTP: update conflict
    41305, // in-memory OLTP: repeatable read validation failure
    41325, // in-memory OLTP: serializable validation failure
    41839, // in-memory OLTP: too many dependencies
];

/// Whether a server error number is worth retrying.
pub fn is_transient_code(code: u32) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// Whether `e` is worth retrying.
pub fn is_transient(e: &tiberius::error::Error) -> bool {
    use tiberius::error::Error;
    match e {
        // A lost, reset or timed-out connection (tiberius reports its command and handshake
        // timeouts as I/O errors of kind TimedOut).
        Error::Io { .. } => true,
        Error::Server(t) => is_transient_code(t.code()),
        Error::Routing { .. } => true,
        _ => false,
    }
}

/// Whether `e` leaves the connection unusable (it is dropped and opened again next time). A
/// value the driver could not decode leaves the rest of its result unread, so the connection
/// goes too.
pub fn breaks_connection(e: &tiberius::error::Error) -> bool {
    use tiberius::error::Error;
    matches!(
        e,
        Error::Io { .. }
            | Error::Protocol(_)
            | Error::Tls(_)
            | Error::Routing { .. }
            | Error::Encoding(_)
            | Error::Utf8
            | Error::Utf16
    )
}

/// Whether `e` says the driver could not decode a value of a result: text in a code page it
/// does not know, bytes invalid in their code page, or UTF-16 with an unpaired surrogate.
pub fn is_undecodable(e: &tiberius::error::Error) -> bool {
    use tiberius::error::Error;
    match e {
        Error::Encoding(_) | Error::Utf8 | Error::Utf16 => true,
        Error::Protocol(m) => m.contains("UTF-16") || m.contains("collation"),
        _ => false,
    }
}

/// The server's own message, or the driver's, without the wrapper text.
pub fn message(e: &tiberius::error::Error) -> String {
    match e {
        tiberius::error::Error::Server(t) => {
            format!("Msg {}, Level {}: {}", t.code(), t.class(), t.message())
        }
        other => other.to_string(),
    }
}

/// An error the server itself reported (not the driver or the network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The error number (`Msg 50003`).
    pub code: u32,
    /// The line of the batch it was raised on (1-based; 0 when unknown).
    pub line: u32,
    /// The server's message.
    pub message: String,
}

/// The server's own error inside `e`, if `e` is one.
pub fn server_error(e: &ReaderError) -> Option<ServerError> {
    match e {
        ReaderError::Mssql { cause, .. } => match cause.as_ref() {
            tiberius::error::Error::Server(t) => Some(ServerError {
                code: t.code(),
                line: t.line(),
                message: t.message().to_string(),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// Wraps a driver error with where and what, classifying it.
pub fn wrap(location: &str, context: &str, cause: tiberius::error::Error) -> ReaderError {
    ReaderError::Mssql {
        location: location.to_string(),
        context: context.to_string(),
        transient: is_transient(&cause),
        cause: Box::new(cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiberius::error::Error;

    #[test]
    fn deadlocks_timeouts_and_lost_connections_are_transient() {
        assert!(is_transient_code(1205), "deadlock victim");
        assert!(is_transient_code(1222), "lock timeout");
        assert!(is_transient_code(40613), "Azure failover");
        for kind in [
            std::io::ErrorKind::TimedOut,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            let e: Error = std::io::Error::new(kind, "x").into();
            assert!(is_transient(&e), "{kind:?}");
            assert!(breaks_connection(&e));
        }
    }

    #[test]
    fn logins_permissions_syntax_and_tls_are_fatal() {
        for code in [18456, 229, 102, 208, 2627, 547, 50000] {
            assert!(!is_transient_code(code), "{code}");
        }
        assert!(!is_transient(&Error::Tls("bad certificate".into())));
        assert!(!is_transient(&Error::Conversion("x".into())));
        assert!(!breaks_connection(&Error::Conversion("x".into())));
    }

    #[test]
    fn wrapped_errors_keep_their_cause_and_say_whether_they_retry() {
        let e = wrap(
            "db1 on sql1:1433",
            "cannot read staging",
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset").into(),
        );
        assert!(e.is_transient());
        assert!(e.to_string().contains("transient"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        let fatal = wrap("x", "y", Error::Tls("nope".into()));
        assert!(!fatal.is_transient());
        assert_eq!(
            server_error(&fatal),
            None,
            "a TLS failure is not the server's error"
        );
    }
}
