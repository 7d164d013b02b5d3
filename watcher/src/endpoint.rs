//! The server end of the watcher's socket, served on the daemon's I/O runtime: one task accepts,
//! one short-lived task per client.
//!
//! The endpoint also keeps its socket file: if the file is deleted or replaced while the watcher
//! runs (a cleanup script, a careless `rm`), it notices within [`SOCKET_CHECK`] and binds the
//! socket again, so clients can always reach a running watcher. The archive lock the watcher
//! holds makes the path its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use interprocess::local_socket::tokio::{prelude::*, Listener, Stream};
use interprocess::local_socket::{ListenerOptions, Name};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::control::{Bus, Event, Flush, Shutdown, Totals};
use crate::protocol::{Request, Response, MAX_LINE};
use crate::status::Board;
use crate::WatcherError;

/// How often the endpoint checks that its socket file is still the one it bound.
pub(crate) const SOCKET_CHECK: Duration = Duration::from_millis(500);

/// How long a client may take to send a request line.
const CLIENT_IDLE: Duration = Duration::from_secs(30);

/// The platform name for a socket path: the file itself on Unix; on Windows, a named pipe
/// derived from the path.
pub(crate) fn socket_name(path: &Path) -> std::io::Result<Name<'static>> {
    #[cfg(windows)]
    {
        use interprocess::local_socket::GenericNamespaced;
        let flat: String = path
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("rowtrail-{flat}")
            .to_ns_name::<GenericNamespaced>()
            .map(|n| n.into_owned())
    }
    #[cfg(not(windows))]
    {
        use interprocess::local_socket::GenericFilePath;
        path.to_path_buf()
            .to_fs_name::<GenericFilePath>()
            .map(|n| n.into_owned())
    }
}

/// What the endpoint's tasks share.
#[derive(Clone)]
pub(crate) struct Served {
    /// Where requests for the jobs go.
    pub bus: Bus,
    /// What `status` answers from.
    pub board: Board,
    /// What a `shutdown` request triggers.
    pub shutdown: Shutdown,
}

/// The bound socket; removes its file when dropped.
pub(crate) struct Endpoint {
    path: PathBuf,
    listener: Listener,
    /// The socket file's identity when bound (device, inode), to notice a replacement.
    bound: Option<(u64, u64)>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Only our own file: a replacement put there is someone else's.
        #[cfg(unix)]
        if file_id(&self.path) == self.bound {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn socket_error(path: &Path, context: &str) -> impl FnOnce(std::io::Error) -> WatcherError {
    let (socket, context) = (path.to_path_buf(), context.to_string());
    move |cause| WatcherError::Socket {
        socket,
        context,
        cause,
    }
}

/// The socket file's identity (device, inode), or `None` when there is no file.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Binds the socket (the caller holds the archive lock, so a socket file already there is a dead
/// watcher's, or a stranger's in our private folder). Must run inside the I/O runtime.
pub(crate) fn bind(path: &Path) -> Result<Endpoint, WatcherError> {
    let err = |context: &str| socket_error(path, context);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(err("cannot create the socket's private folder"))?;
            }
        }
        if std::fs::symlink_metadata(path).is_ok() {
            std::fs::remove_file(path).map_err(err("cannot remove a dead watcher's socket"))?;
        }
        let listener = ListenerOptions::new()
            .name(socket_name(path).map_err(err("not a usable socket name"))?)
            .reclaim_name(false)
            .create_tokio()
            .map_err(err(
                "cannot listen (a path over ~100 bytes is too long: set watcher.socket)",
            ))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(err("cannot make the socket private"))?;
        Ok(Endpoint {
            path: path.to_path_buf(),
            listener,
            bound: file_id(path),
        })
    }
    #[cfg(not(unix))]
    {
        let listener = ListenerOptions::new()
            .name(socket_name(path).map_err(err("not a usable socket name"))?)
            .create_tokio()
            .map_err(err("cannot listen"))?;
        Ok(Endpoint {
            path: path.to_path_buf(),
            listener,
            bound: None,
        })
    }
}

/// Serves `endpoint` until the runtime stops; binds the socket again whenever its file is gone
/// or replaced.
pub(crate) async fn serve(mut endpoint: Endpoint, served: Served) {
    let mut check = tokio::time::interval(SOCKET_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            conn = endpoint.listener.accept() => match conn {
                Ok(conn) => {
                    tokio::spawn(handle(conn, served.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a socket client failed to connect");
                    // Do not spin on a persistent error.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = check.tick(), if cfg!(unix) => {
                if file_id(&endpoint.path) != endpoint.bound {
                    endpoint = rebind(endpoint).await;
                }
            }
        }
    }
}

/// Binds the socket again after its file vanished or was replaced; keeps the old endpoint (and
/// tries again at the next check) if that fails.
async fn rebind(old: Endpoint) -> Endpoint {
    let path = old.path.clone();
    let missing = std::fs::symlink_metadata(&path).is_err();
    tracing::warn!(
        socket = %path.display(),
        "the watcher's socket file was {}; binding it again",
        if missing { "deleted" } else { "replaced" }
    );
    // The old file, if any, is not ours any more: forget it so dropping `old` leaves it alone.
    let mut old = old;
    old.bound = None;
    match bind(&path) {
        Ok(new) => {
            tracing::info!(socket = %path.display(), "socket bound again");
            new
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot bind the socket again; trying again shortly");
            // An identity no file has: the next check tries again.
            old.bound = Some((u64::MAX, u64::MAX));
            old
        }
    }
}

async fn handle(conn: Stream, served: Served) {
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = Vec::new();
        let mut limited = (&mut reader).take(MAX_LINE as u64);
        match tokio::time::timeout(CLIENT_IDLE, limited.read_until(b'\n', &mut line)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        let reply = match serde_json::from_slice::<Request>(line.trim_ascii_end()) {
            Err(e) => Response::error(format!("not a request: {e}")),
            Ok(Request::Signal) => {
                served.bus.post(Event::Wake);
                Response::ok()
            }
            Ok(Request::Status) => Response {
                ok: true,
                status: Some(served.board.snapshot()),
                ..Response::default()
            },
            Ok(Request::Shutdown) => {
                // Answer first: the watcher may exit as soon as the shutdown is seen.
                let _ = write_reply(&mut reader, &Response::ok()).await;
                tracing::info!("stopping after the batch in hand (a shutdown request)");
                served.shutdown.trigger();
                return;
            }
            Ok(Request::Flush { timeout_ms }) => flush(&served, timeout_ms).await,
            Ok(Request::Failover { to, force }) => {
                let order = crate::control::FailoverOrder {
                    to: to.map(std::path::PathBuf::from),
                    force,
                    ..Default::default()
                };
                failover(&served, order).await
            }
            Ok(Request::Handback { to, conflicts }) => {
                let order = crate::control::FailoverOrder {
                    handback_to: Some(std::path::PathBuf::from(to)),
                    conflicts,
                    ..Default::default()
                };
                failover(&served, order).await
            }
        };
        if write_reply(&mut reader, &reply).await.is_err() {
            return;
        }
    }
}

async fn flush(served: &Served, timeout_ms: Option<u64>) -> Response {
    let wait = Duration::from_millis(timeout_ms.unwrap_or(60_000));
    let status = served.board.snapshot();
    let (reply, mut answer) = tokio::sync::mpsc::unbounded_channel();
    let request = Flush {
        reply,
        since: Totals {
            archived: status.archived,
            images: status.images,
        },
    };
    if served.shutdown.is_triggered() || served.bus.post(Event::Flush(request)) == 0 {
        return Response::error("the watcher is stopping");
    }
    match tokio::time::timeout(wait, answer.recv()).await {
        Ok(Some(r)) => r,
        Ok(None) => Response::error("the watcher is stopping"),
        Err(_) => Response::error(format!(
            "staging was not drained within {} ms",
            wait.as_millis()
        )),
    }
}

/// A failover or handback, carried out by the mover (it holds the archive and the source).
async fn failover(served: &Served, order: crate::control::FailoverOrder) -> Response {
    let (reply, mut answer) = tokio::sync::mpsc::unbounded_channel();
    let ask = crate::control::FailoverAsk {
        order,
        reply: Some(reply),
    };
    if served.shutdown.is_triggered() || served.bus.post(Event::Failover(ask)) == 0 {
        return Response::error("the watcher is stopping");
    }
    // A failover applies the backlog to the replica: it may take a while, and the client
    // waits as long as it likes.
    match answer.recv().await {
        Some(r) => r,
        None => Response::error("the watcher is stopping"),
    }
}

async fn write_reply(conn: &mut BufReader<Stream>, reply: &Response) -> std::io::Result<()> {
    let mut text = serde_json::to_string(reply).unwrap_or_else(|_| "{\"ok\":false}".into());
    text.push('\n');
    let conn = conn.get_mut();
    conn.write_all(text.as_bytes()).await?;
    conn.flush().await
}
