//! The server end of the watcher's socket: a listener thread, one short-lived thread per client.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{ListenerOptions, Name, Stream};

use crate::daemon::Event;
use crate::protocol::{Request, Response, MAX_LINE};
use crate::status::Status;
use crate::WatcherError;

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

/// The bound socket; removes its file when dropped.
pub(crate) struct Endpoint {
    path: PathBuf,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        #[cfg(unix)]
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket (the caller already holds the archive lock, so a socket file left there is
/// a dead watcher's) and serves it on a background thread.
pub(crate) fn serve(
    path: &Path,
    events: Sender<Event>,
    status: Arc<Mutex<Status>>,
) -> Result<Endpoint, WatcherError> {
    let err = |context: &str| {
        let context = context.to_string();
        move |cause| WatcherError::Socket {
            socket: path.to_path_buf(),
            context,
            cause,
        }
    };
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
        if path.exists() {
            std::fs::remove_file(path).map_err(err("cannot remove a dead watcher's socket"))?;
        }
        let listener = ListenerOptions::new()
            .name(socket_name(path).map_err(err("not a usable socket name"))?)
            .reclaim_name(false)
            .create_sync()
            .map_err(err(
                "cannot listen (a path over ~100 bytes is too long: set watcher.socket)",
            ))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(err("cannot make the socket private"))?;
        spawn_accept(listener, events, status);
    }
    #[cfg(not(unix))]
    {
        let listener = ListenerOptions::new()
            .name(socket_name(path).map_err(err("not a usable socket name"))?)
            .create_sync()
            .map_err(err("cannot listen"))?;
        spawn_accept(listener, events, status);
    }
    Ok(Endpoint {
        path: path.to_path_buf(),
    })
}

fn spawn_accept(
    listener: interprocess::local_socket::Listener,
    events: Sender<Event>,
    status: Arc<Mutex<Status>>,
) {
    std::thread::Builder::new()
        .name("rowtrail-socket".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(conn) => {
                        let events = events.clone();
                        let status = Arc::clone(&status);
                        let _ = std::thread::Builder::new()
                            .name("rowtrail-client".into())
                            .spawn(move || handle(conn, &events, &status));
                    }
                    Err(e) => tracing::warn!(error = %e, "a socket client failed to connect"),
                }
            }
        })
        .expect("spawn the socket thread");
}

fn handle(conn: Stream, events: &Sender<Event>, status: &Mutex<Status>) {
    let _ = conn.set_recv_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        match (&mut reader).take(MAX_LINE as u64).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = match serde_json::from_str::<Request>(line.trim_end()) {
            Err(e) => Response::error(format!("not a request: {e}")),
            Ok(Request::Signal) => {
                let _ = events.send(Event::Wake);
                Response::ok()
            }
            Ok(Request::Status) => Response {
                ok: true,
                status: Some(status.lock().map(|s| s.clone()).unwrap_or_default()),
                ..Response::default()
            },
            Ok(Request::Shutdown) => {
                // Answer first: the watcher may exit as soon as it sees the event.
                let mut text = serde_json::to_string(&Response::ok()).unwrap_or_default();
                text.push('\n');
                let _ = reader.get_mut().write_all(text.as_bytes());
                let _ = events.send(Event::Shutdown);
                return;
            }
            Ok(Request::Flush { timeout_ms }) => {
                let (tx, rx) = mpsc::channel();
                let wait = Duration::from_millis(timeout_ms.unwrap_or(60_000));
                if events.send(Event::Flush(tx)).is_err() {
                    Response::error("the watcher is stopping")
                } else {
                    rx.recv_timeout(wait).unwrap_or_else(|_| {
                        Response::error(format!(
                            "staging was not drained within {} ms",
                            wait.as_millis()
                        ))
                    })
                }
            }
        };
        let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| "{\"ok\":false}".into());
        text.push('\n');
        if reader.get_mut().write_all(text.as_bytes()).is_err() {
            return;
        }
    }
}
