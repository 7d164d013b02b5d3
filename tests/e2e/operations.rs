//! Operating the watcher: config validation, health, alerts handed to `alert_command`, the
//! status verdict and its exit code, metrics — with the real watcher process.

use std::io::{Read, Write};
use std::time::Duration;

use rowtrail_tests::{wait_until, Sandbox};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

/// Alert events the sandbox's alert command has received, one JSON object per line.
fn alert_events(sb: &Sandbox) -> Vec<Value> {
    std::fs::read_to_string(sb.path().join("alerts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert_command gets one JSON object per line"))
        .collect()
}

fn status_json(sb: &Sandbox) -> Value {
    let out = sb.run(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Watcher settings for fast tests, alerts piped into `alerts.jsonl`.
fn fast(extra: &str) -> String {
    format!("heartbeat_interval_ms = 50\n{extra}\n[alerts]\ncommand = \"cat >> alerts.jsonl\"\n")
}

#[test]
fn a_source_that_disappears_is_reported_down_then_up_with_one_alert_and_one_clear_and_nothing_lost()
{
    let sb = Sandbox::new(BIN);
    sb.write_config(&fast("").replace(
        "[alerts]\n",
        "[alerts]\nsource_down_seconds = 1\nbacklog_age_seconds = 0\nmin_free_disk_bytes = 0\n",
    ));
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    c.execute("INSERT INTO t VALUES (1, 'before')", []).unwrap();
    drop(c);
    let _w = sb.start_watcher();
    wait_until(
        Duration::from_secs(10),
        "the first change is archived",
        || sb.archived() == 1,
    );
    assert_eq!(sb.run(&["status"]).status.code(), Some(0), "healthy");

    let away = sb.path().join("source.db.away");
    std::fs::rename(sb.source(), &away).unwrap();
    wait_until(
        Duration::from_secs(15),
        "status says the source is down",
        || status_json(&sb)["source_up"] == false,
    );
    wait_until(
        Duration::from_secs(15),
        "the source_down alert fires",
        || {
            alert_events(&sb)
                .iter()
                .any(|e| e["alert"] == "source_down" && e["state"] == "firing")
        },
    );
    let s = status_json(&sb);
    assert_eq!(s["health"], "down");
    assert_eq!(s["alerts"][0]["alert"], "source_down");
    let out = sb.run(&["status"]);
    assert_eq!(out.status.code(), Some(5), "down");
    assert!(String::from_utf8_lossy(&out.stdout).contains("DOWN"));

    std::fs::rename(&away, sb.source()).unwrap();
    wait_until(
        Duration::from_secs(15),
        "the source_down alert clears",
        || {
            alert_events(&sb)
                .iter()
                .any(|e| e["alert"] == "source_down" && e["state"] == "cleared")
        },
    );
    let c = sb.connect();
    c.execute("INSERT INTO t VALUES (2, 'after')", []).unwrap();
    wait_until(
        Duration::from_secs(15),
        "the change made after the outage is archived",
        || sb.archived() == 2,
    );
    assert_eq!(status_json(&sb)["source_up"], true);

    let events = alert_events(&sb);
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["firing", "cleared"],
        "exactly one alert and one clear: {events:#?}"
    );
    let e = &events[0];
    for key in [
        "alert",
        "state",
        "severity",
        "message",
        "threshold",
        "since_us",
        "at_us",
        "source",
        "archive",
        "pid",
    ] {
        assert!(!e[key].is_null(), "alert event lacks {key}: {e}");
    }
    assert_eq!(e["severity"], "critical");
    assert_eq!(
        events[1]["since_us"], e["since_us"],
        "the clear names when the alert started"
    );
    sb.ok(&["verify"]);
}

#[test]
fn a_backlog_that_ages_raises_an_alert_that_clears_once_it_drains() {
    let sb = Sandbox::new(BIN);
    sb.write_config(&fast("").replace(
        "[alerts]\n",
        "[alerts]\nbacklog_age_seconds = 1\nsource_down_seconds = 0\nmin_free_disk_bytes = 0\n",
    ));
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let _w = sb.start_watcher();
    // Hold the archive's write lock: the watcher cannot archive, so the change waits in staging.
    let archive = rusqlite::Connection::open(sb.archive()).unwrap();
    archive.execute_batch("BEGIN IMMEDIATE").unwrap();
    c.execute("INSERT INTO t VALUES (1)", []).unwrap();
    wait_until(
        Duration::from_secs(15),
        "the backlog_age alert fires",
        || {
            alert_events(&sb)
                .iter()
                .any(|e| e["alert"] == "backlog_age" && e["state"] == "firing")
        },
    );
    let s = status_json(&sb);
    assert_eq!(s["health"], "degraded");
    assert_eq!(s["backlog"], 1);
    assert!(s["backlog_oldest_age_secs"].as_f64().unwrap() >= 1.0, "{s}");
    assert_eq!(sb.run(&["status"]).status.code(), Some(1), "degraded");
    archive.execute_batch("COMMIT").unwrap();
    wait_until(
        Duration::from_secs(20),
        "the backlog_age alert clears",
        || {
            alert_events(&sb)
                .iter()
                .any(|e| e["alert"] == "backlog_age" && e["state"] == "cleared")
        },
    );
    assert_eq!(sb.archived(), 1);
    let states: Vec<String> = alert_events(&sb)
        .iter()
        .map(|e| format!("{}:{}", e["alert"], e["state"]))
        .collect();
    assert_eq!(
        states,
        ["\"backlog_age\":\"firing\"", "\"backlog_age\":\"cleared\""]
    );
    wait_until(Duration::from_secs(10), "status is healthy again", || {
        sb.run(&["status"]).status.code() == Some(0)
    });
}

#[test]
fn status_json_has_the_documented_shape() {
    let sb = Sandbox::new(BIN);
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let _w = sb.start_watcher();
    let s = status_json(&sb);
    let fields = [
        ("health", "string"),
        ("pid", "number"),
        ("version", "string"),
        ("started_us", "number"),
        ("source", "string"),
        ("archive", "string"),
        ("source_up", "bool"),
        ("source_failures", "number"),
        ("backlog", "number"),
        ("passes", "number"),
        ("pass_seconds_total", "number"),
        ("archived", "number"),
        ("wakeups", "object"),
        ("alerts", "array"),
        ("context_committed", "bool"),
    ];
    for (key, kind) in fields {
        let v = &s[key];
        let ok = match kind {
            "string" => v.is_string(),
            "number" => v.is_number(),
            "bool" => v.is_boolean(),
            "object" => v.is_object(),
            _ => v.is_array(),
        };
        assert!(ok, "status.{key} should be a {kind}: {s}");
    }
    for key in [
        "incarnation",
        "source_down_since_us",
        "backlog_oldest_age_secs",
        "archive_free_bytes",
        "last_pass_us",
        "last_error",
        "last_error_us",
    ] {
        assert!(
            s.as_object().unwrap().contains_key(key),
            "status lacks {key}: {s}"
        );
    }
    for key in ["signal", "probe", "poll"] {
        assert!(s["wakeups"][key].is_number());
    }
}

#[test]
fn metrics_are_served_on_loopback() {
    let sb = Sandbox::new(BIN);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    sb.write_config(&format!("metrics_listen = \"127.0.0.1:{port}\""));
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let _w = sb.start_watcher();
    c.execute("INSERT INTO t VALUES (1)", []).unwrap();
    sb.ok(&["signal", "--wait"]);
    let scrape = || {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).unwrap();
        body
    };
    let body = scrape();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for line in [
        "rowtrail_changes_archived_total 1",
        "rowtrail_source_up 1",
        "rowtrail_backlog_rows",
        "rowtrail_passes_total",
        "rowtrail_pass_duration_seconds_count",
        "rowtrail_alert_firing{alert=\"source_down\"} 0",
    ] {
        assert!(body.contains(line), "metrics lack {line:?}:\n{body}");
    }
}

#[test]
fn bad_configs_are_refused_with_the_key_and_what_is_allowed() {
    let sb = Sandbox::new(BIN);
    sb.connect()
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY);")
        .unwrap();
    let cases = [
        ("typo_key = 1", "unknown field `typo_key`"),
        ("poll_interval_ms = 0", "watcher.poll_interval_ms in"),
        ("poll_interval_ms = \"fast\"", "poll_interval_ms"),
        ("log_format = \"xml\"", "log_format"),
        (
            "metrics_listen = \"0.0.0.0:9187\"",
            "loopback addresses only",
        ),
        (
            "metrics_listen = \"localhost\"",
            "such as \"127.0.0.1:9187\"",
        ),
    ];
    for (line, expect) in cases {
        sb.write_config(line);
        let e = sb.fails(&["sql", "install"], 1);
        assert!(e.contains(expect), "{line:?}: expected {expect:?} in\n{e}");
    }
    std::fs::write(
        sb.config(),
        "[source]\nengine = \"mssql\"\nconnection = \"Server=db;User Id=r;Password=hunter2\"\n[archive]\npath = \"a.db\"\n",
    )
    .unwrap();
    let e = sb.fails(&["status"], 1);
    assert!(
        e.contains("holds a password") && e.contains("ROWTRAIL_SOURCE_PASSWORD"),
        "{e}"
    );
    assert!(
        !e.contains("hunter2"),
        "the password must never be printed: {e}"
    );
}

#[test]
fn init_writes_configs_that_load() {
    let sb = Sandbox::new(BIN);
    for engine in ["sqlite", "mssql"] {
        let file = format!("{engine}.toml");
        let out = std::process::Command::new(BIN)
            .args(["init", "--engine", engine, "--out", &file])
            .current_dir(sb.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", rowtrail_tests::show(&out));
        // It loads: `verify` gets as far as looking for the archive.
        let out = std::process::Command::new(BIN)
            .args(["--config", &file, "verify"])
            .current_dir(sb.path())
            .output()
            .unwrap();
        let text = rowtrail_tests::show(&out);
        assert!(text.contains("does not exist"), "{engine}: {text}");
        let again = std::process::Command::new(BIN)
            .args(["init", "--engine", engine, "--out", &file])
            .current_dir(sb.path())
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(1), "init refuses to overwrite");
    }
}

#[test]
fn a_committed_context_row_makes_the_watcher_degraded_until_it_is_deleted() {
    let sb = Sandbox::new(BIN);
    sb.write_config(&fast("").replace(
        "[alerts]\n",
        "[alerts]\nsource_down_seconds = 0\nbacklog_age_seconds = 0\nmin_free_disk_bytes = 0\n",
    ));
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let _w = sb.start_watcher();
    wait_until(Duration::from_secs(10), "healthy", || {
        sb.run(&["status"]).status.code() == Some(0)
    });
    // Inserted outside a transaction: it commits at once, and labels every later change.
    c.execute(
        "INSERT INTO rowtrail_context (id, tx, login) VALUES (1, 'oops', 'alice')",
        [],
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "status reports it", || {
        status_json(&sb)["context_committed"] == true
    });
    let out = sb.run(&["status"]);
    assert_eq!(out.status.code(), Some(1), "degraded");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rowtrail_context row is committed"),
        "{}",
        rowtrail_tests::show(&out)
    );
    c.execute("DELETE FROM rowtrail_context", []).unwrap();
    wait_until(Duration::from_secs(10), "healthy again", || {
        sb.run(&["status"]).status.code() == Some(0)
    });
    assert_eq!(status_json(&sb)["context_committed"], false);
}

/// Sends `request` as it is to the HTTP listener on `port` and returns the whole answer.
fn http(port: u16, request: &[u8]) -> String {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    conn.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn the_http_listener_answers_bad_requests_with_http_errors() {
    let sb = Sandbox::new(BIN);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    sb.write_config(&format!("metrics_listen = \"127.0.0.1:{port}\""));
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let _w = sb.start_watcher();
    let cases: [(&[u8], &str); 4] = [
        (b"NONSENSE\r\n\r\n", "HTTP/1.1 400"),
        (
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 405",
        ),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404"),
        (b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200"),
    ];
    for (request, expect) in cases {
        let answer = http(port, request);
        assert!(
            answer.starts_with(expect),
            "{:?}: expected {expect}, got:\n{answer}",
            String::from_utf8_lossy(request)
        );
    }
    let head = http(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!head.contains("# HELP"), "HEAD has no body: {head}");
    let post = http(
        port,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(post.to_lowercase().contains("allow: get, head"), "{post}");
    // The watcher is unharmed, and metrics are served as before.
    let body = http(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("rowtrail_source_up 1"), "{body}");
    sb.ok(&["status"]);
}

/// Issue 20, item 15: log lines carried ANSI colour codes into files.
#[test]
fn a_log_written_to_a_file_has_no_colour_codes() {
    let sb = Sandbox::new(BIN);
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let mut w = sb.start_watcher();
    sb.ok(&["signal", "--shutdown"]);
    assert!(w.child.wait().unwrap().success());
    let log = std::fs::read_to_string(sb.path().join("watcher.log")).unwrap();
    assert!(
        log.contains("watcher started") && log.contains("watcher stopped"),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log file: {log:?}"
    );
}

/// A table of 1 KiB rows, `n` of them staged; the config holds the archive to `max_bytes`.
fn full_archive_sandbox(n: u32, max_bytes: u64) -> Sandbox {
    let sb = Sandbox::new(BIN);
    std::fs::write(
        sb.config(),
        format!(
            "[source]\nengine = \"sqlite\"\npath = \"source.db\"\n\n[archive]\npath = \"trail.db\"\n\
             max_bytes = {max_bytes}\n\n[watcher]\nbatch_size = 100\npoll_interval_ms = 200\n\
             heartbeat_interval_ms = 50\n\n[alerts]\nmin_free_disk_bytes = 0\n"
        ),
    )
    .unwrap();
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB);");
    c.execute(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1)
         INSERT INTO t SELECT i, randomblob(1024) FROM s",
        [n],
    )
    .unwrap();
    sb
}

/// Issue 20, item 12: a pass that archived and removed batches before the archive filled up
/// said "nothing was removed from staging".
#[test]
fn a_read_that_fills_the_archive_says_how_much_it_archived_and_removed_first() {
    let sb = full_archive_sandbox(3000, 1_500_000);
    let e = sb.fails(&["read"], 1);
    let archived = sb.archived();
    assert!(archived > 0 && archived < 3000, "{archived} archived: {e}");
    assert!(e.contains("is full"), "{e}");
    assert!(
        e.contains(&format!(
            "before the failure this pass archived {archived} change(s) and removed their \
             {archived} staged image(s) from staging"
        )),
        "{e}"
    );
    assert!(!e.contains("nothing was removed"), "{e}");
    assert_eq!(
        sb.staged() + archived,
        3000,
        "staged or archived, never both"
    );
}

/// Issue 20, item 12: after a pass that archived batches and then failed on a full archive,
/// status counted nothing.
#[test]
fn status_counts_what_a_failed_pass_archived() {
    let sb = full_archive_sandbox(3000, 1_500_000);
    let _w = sb.start_watcher();
    wait_until(
        Duration::from_secs(30),
        "the pass fails on the full archive",
        || {
            status_json(&sb)["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("is full"))
        },
    );
    let s = status_json(&sb);
    let archived = sb.archived();
    assert!(archived > 0, "the limit bit before anything was archived");
    assert_eq!(s["archived"], archived, "{s}");
    assert_eq!(s["images"], archived, "inserts: one image each: {s}");
    assert_eq!(s["health"], "degraded", "{s}");
}

/// `rowtrail read` on a terminal shows a progress bar; in a pipe, a file or with `--quiet` it
/// draws nothing.
#[test]
fn read_shows_progress_only_on_a_terminal() {
    let sb = Sandbox::new(BIN);
    sb.write_config("batch_size = 500");
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    let insert = |from: u32| {
        c.execute(
            "WITH RECURSIVE s(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM s WHERE i < ?1 + 19999)
             INSERT INTO t SELECT i, 'v' || i FROM s",
            [from],
        )
        .unwrap();
    };
    // Under a pseudo-terminal (util-linux `script`): stdout and stderr both reach it.
    let on_terminal = |args: &str| {
        let command = format!("{BIN} --config {} {args}", sb.config().display());
        let out = std::process::Command::new("script")
            .args(["-q", "-e", "-c", &command, "/dev/null"])
            .current_dir(sb.path())
            .env("TERM", "xterm")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run script (util-linux)");
        let text = rowtrail_tests::show(&out);
        assert!(out.status.success(), "{text}");
        text
    };

    insert(1);
    let shown = on_terminal("read");
    assert!(shown.contains("archived 20000 change(s)"), "{shown}");
    assert!(
        shown.contains("archiving") && shown.contains("staged images"),
        "{shown}"
    );

    insert(100_001);
    let quiet = on_terminal("read --quiet");
    assert!(
        !quiet.contains("archiving"),
        "--quiet draws no bar: {quiet}"
    );
    assert_eq!(sb.archived(), 40000);

    insert(200_001);
    let out = sb.run(&["read"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", rowtrail_tests::show(&out));
    assert!(
        !stderr.contains("archiving") && !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "no bar in a pipe: {stderr:?}"
    );
    assert_eq!(sb.archived(), 60000);
}
