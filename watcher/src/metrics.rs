//! An optional Prometheus text endpoint (`GET /metrics`) on a loopback address.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `rowtrail_changes_archived_total` | counter | changes archived since the watcher started |
//! | `rowtrail_passes_total` | counter | reader passes run |
//! | `rowtrail_pass_duration_seconds_sum` / `_count` | summary | time spent in passes |
//! | `rowtrail_backlog_rows` | gauge | images waiting in staging |
//! | `rowtrail_backlog_oldest_age_seconds` | gauge | age of the oldest staged image (0 when empty) |
//! | `rowtrail_source_up` | gauge | 1 when the source answers heartbeats |
//! | `rowtrail_last_error_timestamp_seconds` | gauge | when the last error happened (0: never) |
//! | `rowtrail_last_pass_timestamp_seconds` | gauge | when the last pass succeeded (0: never) |
//! | `rowtrail_archive_free_bytes` | gauge | free bytes on the archive's file system |
//! | `rowtrail_alert_firing{alert="…"}` | gauge | 1 while that alert fires |

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::status::Status;
use crate::WatcherError;

/// Binds `addr` (which must be a loopback address) and serves metrics on a background thread.
pub(crate) fn serve(
    addr: SocketAddr,
    status: Arc<Mutex<Status>>,
) -> Result<SocketAddr, WatcherError> {
    let io = |context: &str, cause| WatcherError::Socket {
        socket: addr.to_string().into(),
        context: context.into(),
        cause,
    };
    if !addr.ip().is_loopback() {
        return Err(io(
            "metrics are served on loopback addresses only",
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let listener = TcpListener::bind(addr).map_err(|e| io("cannot listen for metrics", e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| io("cannot read the metrics address", e))?;
    std::thread::Builder::new()
        .name("rowtrail-metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let status = Arc::clone(&status);
                let _ = std::thread::Builder::new()
                    .name("rowtrail-metrics-client".into())
                    .spawn(move || answer(conn, &status));
            }
        })
        .expect("spawn the metrics thread");
    Ok(bound)
}

fn answer(conn: TcpStream, status: &Mutex<Status>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&conn);
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (code, body) = if method == "GET" && (path == "/metrics" || path == "/") {
        let s = status.lock().map(|s| s.clone()).unwrap_or_default();
        ("200 OK", render(&s))
    } else {
        (
            "404 Not Found",
            "only GET /metrics is served here\n".to_string(),
        )
    };
    let _ = write!(
        &conn,
        "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The metrics in Prometheus text format.
pub fn render(s: &Status) -> String {
    let secs = |us: Option<i64>| us.map_or(0.0, |u| u as f64 / 1e6);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "rowtrail_changes_archived_total",
        "counter",
        "Changes archived since the watcher started.",
        s.archived.to_string(),
    );
    metric(
        "rowtrail_passes_total",
        "counter",
        "Reader passes run.",
        s.passes.to_string(),
    );
    metric(
        "rowtrail_backlog_rows",
        "gauge",
        "Change images waiting in staging.",
        s.backlog.to_string(),
    );
    metric(
        "rowtrail_backlog_oldest_age_seconds",
        "gauge",
        "Age of the oldest staged change image.",
        s.backlog_oldest_age_secs.unwrap_or(0.0).to_string(),
    );
    metric(
        "rowtrail_source_up",
        "gauge",
        "1 when the source answers heartbeats.",
        u8::from(s.source_up).to_string(),
    );
    metric(
        "rowtrail_last_error_timestamp_seconds",
        "gauge",
        "When the last error happened.",
        secs(s.last_error_us).to_string(),
    );
    metric(
        "rowtrail_last_pass_timestamp_seconds",
        "gauge",
        "When the last pass succeeded.",
        secs(s.last_pass_us).to_string(),
    );
    metric(
        "rowtrail_archive_free_bytes",
        "gauge",
        "Free bytes on the archive's file system.",
        s.archive_free_bytes.unwrap_or(0).to_string(),
    );
    out.push_str(&format!(
        "# HELP rowtrail_pass_duration_seconds Time spent in reader passes.\n# TYPE rowtrail_pass_duration_seconds summary\n\
         rowtrail_pass_duration_seconds_sum {}\nrowtrail_pass_duration_seconds_count {}\n",
        s.pass_seconds_total, s.passes
    ));
    out.push_str("# HELP rowtrail_alert_firing 1 while the alert fires.\n# TYPE rowtrail_alert_firing gauge\n");
    for alert in ["source_down", "backlog_age", "disk_free"] {
        let firing = s.alerts.iter().any(|a| a.alert == alert);
        out.push_str(&format!(
            "rowtrail_alert_firing{{alert=\"{alert}\"}} {}\n",
            u8::from(firing)
        ));
    }
    out
}
