//! The one place rowtrail talks to SQL Server: a tiberius client driven by a current-thread
//! tokio runtime, behind blocking calls.
//!
//! * A lost connection is dropped and opened again on the next request.
//! * Every request is bounded by the command timeout ([`Settings::command_timeout`]): when it
//!   runs out, the request is cancelled on the server with a TDS attention (tiberius's
//!   `cancel_query`, once the request's own future is dropped), so the server stops working and
//!   releases what it holds; when the cancel itself goes unanswered (within
//!   [`CANCEL_TIMEOUT`]), the connection is closed, which ends the request too. Either way the
//!   caller gets [`ReaderError::MssqlTimeout`], and an open [`Transaction`] rolls back.
//! * [`Transaction`] rolls back when dropped without [`Transaction::commit`].
//! * Every error is classified transient or fatal ([`super::error`]); [`Backoff`] spaces the
//!   retries of transient ones, doubling up to a cap, and resets on success.

use std::time::Duration;

use tiberius::{Client, Row, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::error::{breaks_connection, wrap};
use super::settings::Settings;
use crate::ReaderError;

/// How long opening the TCP connection may take (the TLS handshake and login have their own
/// 15 s limit in the driver, and every request a 30 s one).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a cancelled request's server may take to acknowledge the cancel before its
/// connection is closed instead.
pub const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

type Conn = Client<Compat<TcpStream>>;

/// A blocking SQL Server connection.
pub struct MssqlClient {
    rt: tokio::runtime::Runtime,
    conn: Option<Conn>,
    settings: Settings,
    location: String,
    command_timeout: Option<Duration>,
}

/// What became of a request run under the command timeout.
enum Timed<T> {
    /// It ended (well or not) in time.
    Done(Result<T, tiberius::error::Error>),
    /// It ran out of time; `cancelled` when the server acknowledged the cancel.
    TimedOut { cancelled: bool },
}

/// Runs `$work` (a future borrowing `$conn`) under `$limit`; when the limit runs out, the future
/// is dropped (which releases its borrow of the connection) and the request is cancelled on the
/// server with an attention, itself bounded by [`CANCEL_TIMEOUT`].
macro_rules! timed {
    ($limit:expr, $conn:ident, $work:expr) => {
        async {
            match $limit {
                None => Timed::Done($work.await),
                Some(limit) => {
                    let outcome = tokio::time::timeout(limit, $work).await;
                    match outcome {
                        Ok(r) => Timed::Done(r),
                        Err(_) => {
                            let cancel =
                                tokio::time::timeout(CANCEL_TIMEOUT, $conn.cancel_query()).await;
                            Timed::TimedOut {
                                cancelled: matches!(cancel, Ok(Ok(()))),
                            }
                        }
                    }
                }
            }
        }
    };
}

impl MssqlClient {
    /// Connects (and logs in) now, so bad settings fail at once.
    pub fn connect(settings: &Settings) -> Result<Self, ReaderError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|cause| ReaderError::Connection {
                reason: format!("cannot start the I/O runtime: {cause}"),
            })?;
        let mut c = Self {
            rt,
            conn: None,
            location: settings.location(),
            command_timeout: settings.command_timeout,
            settings: settings.clone(),
        };
        c.conn()?;
        Ok(c)
    }

    /// Server and database, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// How long one request may run before it is cancelled (`None`: for ever).
    pub fn command_timeout(&self) -> Option<Duration> {
        self.command_timeout
    }

    fn open(&self) -> Result<Conn, ReaderError> {
        let config = self.settings.config()?;
        let addr = config.get_addr();
        let location = self.location.clone();
        self.rt.block_on(async move {
            let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))
                .and_then(|r| r)
                .map_err(|e| wrap(&location, "cannot connect", e.into()))?;
            tcp.set_nodelay(true)
                .map_err(|e| wrap(&location, "cannot connect", e.into()))?;
            Client::connect(config, tcp.compat_write())
                .await
                .map_err(|e| wrap(&location, "cannot log in", e))
        })
    }

    fn conn(&mut self) -> Result<&mut Conn, ReaderError> {
        if self.conn.is_none() {
            let c = self.open()?;
            tracing::debug!(source = %self.location, "connected to SQL Server");
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("just opened"))
    }

    /// Classifies a failed request and forgets a connection it broke.
    fn fail(&mut self, context: &str, e: tiberius::error::Error) -> ReaderError {
        if breaks_connection(&e) {
            self.conn = None;
        }
        wrap(&self.location, context, e)
    }

    /// The outcome of a request run under the command timeout, as the caller sees it.
    fn settle<T>(&mut self, context: &str, r: Timed<T>) -> Result<T, ReaderError> {
        match r {
            Timed::Done(r) => r.map_err(|e| self.fail(context, e)),
            Timed::TimedOut { cancelled } => {
                if !cancelled {
                    // The server ends the request, and rolls back its transaction, when the
                    // connection goes.
                    self.conn = None;
                }
                tracing::warn!(source = %self.location, context, cancelled, "SQL Server request timed out");
                Err(ReaderError::MssqlTimeout {
                    location: self.location.clone(),
                    context: context.to_string(),
                    after: self.command_timeout.unwrap_or_default(),
                    cancelled,
                })
            }
        }
    }

    /// Runs a parameterised query (`@P1`, `@P2`, …) and returns the rows of its first result.
    pub fn query(
        &mut self,
        context: &str,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<Vec<Row>, ReaderError> {
        self.conn()?;
        let (rt, limit) = (&self.rt, self.command_timeout);
        let conn = self.conn.as_mut().expect("connected above");
        let r = rt.block_on(timed!(limit, conn, async {
            conn.query(sql, params).await?.into_first_result().await
        }));
        self.settle(context, r)
    }

    /// Runs a parameterised statement and returns the rows it affected.
    pub fn execute(
        &mut self,
        context: &str,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<u64, ReaderError> {
        self.conn()?;
        let (rt, limit) = (&self.rt, self.command_timeout);
        let conn = self.conn.as_mut().expect("connected above");
        let r = rt.block_on(timed!(limit, conn, async {
            conn.execute(sql, params).await.map(|r| r.total())
        }));
        self.settle(context, r)
    }

    /// Sends one batch as it is (no parameters: for generated scripts, which may hold
    /// `CREATE TRIGGER`, which must start its batch). Returns every result set.
    pub fn batch(&mut self, context: &str, sql: &str) -> Result<Vec<Vec<Row>>, ReaderError> {
        self.conn()?;
        let (rt, limit) = (&self.rt, self.command_timeout);
        let conn = self.conn.as_mut().expect("connected above");
        let r = rt.block_on(timed!(limit, conn, async {
            conn.simple_query(sql).await?.into_results().await
        }));
        self.settle(context, r)
    }

    /// Like [`MssqlClient::batch`], but hands the driver's error back unwrapped (the install
    /// reports the failing batch itself); a timeout comes back as an I/O error of kind
    /// `TimedOut`, after the cancel.
    pub fn batch_raw(&mut self, sql: &str) -> Result<(), tiberius::error::Error> {
        if self.conn.is_none() {
            self.conn = Some(self.open().map_err(|e| match e {
                ReaderError::Mssql { cause, .. } => *cause,
                other => tiberius::error::Error::Conversion(other.to_string().into()),
            })?);
        }
        let (rt, limit) = (&self.rt, self.command_timeout);
        let conn = self.conn.as_mut().expect("connected above");
        let r = rt.block_on(timed!(limit, conn, async {
            conn.simple_query(sql).await?.into_results().await
        }));
        let r = match r {
            Timed::Done(r) => r,
            Timed::TimedOut { cancelled } => {
                if !cancelled {
                    self.conn = None;
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "no answer within {} s (the command timeout); the batch was {}",
                        limit.unwrap_or_default().as_secs_f64(),
                        if cancelled {
                            "cancelled on the server"
                        } else {
                            "abandoned and its connection closed"
                        }
                    ),
                )
                .into());
            }
        };
        if let Err(e) = &r {
            if breaks_connection(e) {
                self.conn = None;
            }
        }
        r.map(|_| ())
    }

    /// Starts a transaction that rolls back unless committed.
    pub fn transaction(&mut self) -> Result<Transaction<'_>, ReaderError> {
        self.batch("cannot start a transaction", super::queries::BEGIN)?;
        Ok(Transaction {
            client: self,
            open: true,
        })
    }
}

/// A transaction on an [`MssqlClient`]; rolled back on drop unless committed.
pub struct Transaction<'a> {
    client: &'a mut MssqlClient,
    open: bool,
}

impl Transaction<'_> {
    /// The connection, for requests inside the transaction.
    pub fn client(&mut self) -> &mut MssqlClient {
        self.client
    }

    /// Commits.
    pub fn commit(mut self) -> Result<(), ReaderError> {
        self.open = false;
        self.client
            .batch("cannot commit", super::queries::COMMIT)
            .map(|_| ())
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open && self.client.conn.is_some() {
            let r = self.client.batch(
                "cannot roll back",
                "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;",
            );
            if r.is_err() {
                // A connection that cannot roll back is not reused: the server rolls the
                // transaction back when it goes away.
                self.client.conn = None;
            }
        }
    }
}

/// Capped exponential backoff between retries of transient errors; reset on success.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, doubles up to `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            next: first,
        }
    }

    /// The pause before the next try; the one after is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Runs `op` on `client`, retrying transient errors up to `attempts` times in all with `backoff`
/// between tries; resets `backoff` on success.
pub fn with_retry<T>(
    client: &mut MssqlClient,
    backoff: &mut Backoff,
    attempts: u32,
    mut op: impl FnMut(&mut MssqlClient) -> Result<T, ReaderError>,
) -> Result<T, ReaderError> {
    let mut tried = 0;
    loop {
        tried += 1;
        match op(client) {
            Ok(v) => {
                backoff.reset();
                return Ok(v);
            }
            Err(e) if e.is_transient() && tried < attempts => {
                let pause = backoff.next_delay();
                tracing::warn!(source = %client.location(), error = %e, retry_in_ms = pause.as_millis() as u64, "transient SQL Server error; retrying");
                std::thread::sleep(pause);
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets_on_success() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let d: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn an_unreachable_server_is_a_transient_connection_error() {
        // Port 1 on loopback: nothing listens, so the connection is refused at once.
        let s = Settings {
            connection: "Server=tcp:127.0.0.1,1;Database=d;User ID=u".into(),
            password: Some("p".into()),
            trust_server_certificate: false,
            command_timeout: Some(crate::mssql::settings::DEFAULT_COMMAND_TIMEOUT),
        };
        let Err(e) = MssqlClient::connect(&s) else {
            panic!("connected to port 1")
        };
        assert!(e.is_transient(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("d on 127.0.0.1,1") && !text.contains("User"),
            "{text}"
        );
    }
}
