//! The client end of the watcher's socket.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use interprocess::local_socket::prelude::*;
use interprocess::local_socket::Stream;

use crate::protocol::{Request, Response};
use crate::WatcherError;

/// Sends one request and waits at most `timeout` for the reply.
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, WatcherError> {
    let name = crate::endpoint::socket_name(socket).map_err(|cause| WatcherError::Socket {
        socket: socket.to_path_buf(),
        context: "not a usable socket name".into(),
        cause,
    })?;
    let conn = Stream::connect(name).map_err(|cause| match cause.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            WatcherError::NotRunning {
                socket: socket.to_path_buf(),
            }
        }
        _ => WatcherError::Socket {
            socket: socket.to_path_buf(),
            context: "cannot connect".into(),
            cause,
        },
    })?;
    let io = |context: &str| {
        let context = context.to_string();
        move |cause: std::io::Error| {
            if matches!(
                cause.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                WatcherError::Timeout {
                    socket: socket.to_path_buf(),
                    seconds: timeout.as_secs().max(1),
                }
            } else {
                WatcherError::Socket {
                    socket: socket.to_path_buf(),
                    context,
                    cause,
                }
            }
        }
    };
    conn.set_recv_timeout(Some(timeout))
        .map_err(io("cannot set a timeout"))?;
    conn.set_send_timeout(Some(timeout))
        .map_err(io("cannot set a timeout"))?;
    let mut conn = BufReader::new(conn);
    let mut line = serde_json::to_string(req).map_err(|e| WatcherError::Protocol(e.to_string()))?;
    line.push('\n');
    conn.get_mut()
        .write_all(line.as_bytes())
        .map_err(io("cannot send"))?;
    let mut reply = String::new();
    let n = conn
        .read_line(&mut reply)
        .map_err(io("cannot read the reply"))?;
    if n == 0 {
        return Err(WatcherError::Protocol(
            "the watcher closed the connection without answering".into(),
        ));
    }
    let resp: Response = serde_json::from_str(&reply)
        .map_err(|e| WatcherError::Protocol(format!("bad reply: {e}")))?;
    match (&resp.ok, &resp.error) {
        (false, Some(e)) => Err(WatcherError::Remote(e.clone())),
        (false, None) => Err(WatcherError::Remote("request failed".into())),
        _ => Ok(resp),
    }
}
