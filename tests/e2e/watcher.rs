//! The watcher process: its socket, its wake sources, its clients, and stopping it.

use std::time::{Duration, Instant};

use rowtrail_tests::{wait_until, Sandbox};

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

#[test]
fn clients_fail_fast_and_clearly_when_no_watcher_runs() {
    let sb = Sandbox::new(BIN);
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    // `status` says "down" with a code of its own (5); the others fail as errors (1).
    for (args, code) in [
        (&["status"][..], 5),
        (&["signal"], 1),
        (&["signal", "--wait"], 1),
    ] {
        let started = Instant::now();
        let e = sb.fails(args, code);
        assert!(
            e.contains("no watcher is running") && e.contains("rowtrail watch"),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} hung");
    }
}

#[test]
fn signal_wait_drains_and_status_reports_it() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v);");
    let _w = sb.start_watcher();
    c.execute_batch("INSERT INTO t VALUES (1, 'a'), (2, 'b'); UPDATE t SET v = 'c';")
        .unwrap();
    let out = sb.ok(&["signal", "--wait"]);
    assert!(out.contains("staging drained"), "{out}");
    assert_eq!(sb.archived(), 4);
    assert_eq!(sb.staged(), 0);
    let json: serde_json::Value = serde_json::from_str(&sb.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["archived"], 4);
    assert_eq!(json["source_up"], true);
    assert!(json["passes"].as_u64().unwrap() >= 1);
    let human = sb.ok(&["status"]);
    assert!(human.contains("source") && human.contains("up"), "{human}");
}

#[test]
fn a_second_watcher_on_the_same_archive_refuses_to_start() {
    let sb = Sandbox::new(BIN);
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let _w = sb.start_watcher();
    let e = sb.fails(&["watch"], 1);
    assert!(e.contains("already working on archive"), "{e}");
    let e = sb.fails(&["read"], 1);
    assert!(
        e.contains("already working on archive") && e.contains("signal --wait"),
        "{e}"
    );
    // The first one is unharmed.
    sb.ok(&["status"]);
}

#[test]
fn with_every_signal_and_probe_lost_the_poll_timer_still_moves_changes() {
    let sb = Sandbox::new(BIN);
    // The probe runs only every 10 minutes: only the 200 ms poll timer can wake the watcher.
    sb.write_config("probe_interval_ms = 600000");
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let _w = sb.start_watcher();
    let committed = Instant::now();
    c.execute("INSERT INTO t VALUES (1)", []).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the change is archived without any signal",
        || sb.archived() == 1,
    );
    assert!(committed.elapsed() < Duration::from_secs(5));
    let json: serde_json::Value = serde_json::from_str(&sb.ok(&["status", "--json"])).unwrap();
    assert_eq!(json["wakeups"]["signal"], 0);
    assert!(json["wakeups"]["poll"].as_u64().unwrap() >= 1);
}

#[test]
fn the_probe_wakes_the_watcher_without_any_signal() {
    let sb = Sandbox::new(BIN);
    // A poll of 10 minutes: only the data_version probe can find the commit quickly.
    sb.write_config("poll_interval_ms = 600000");
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let _w = sb.start_watcher();
    wait_until(Duration::from_secs(10), "the start-up pass is done", || {
        let json: serde_json::Value = serde_json::from_str(&sb.ok(&["status", "--json"])).unwrap();
        json["passes"].as_u64().unwrap() >= 1
    });
    c.execute("INSERT INTO t VALUES (1)", []).unwrap();
    wait_until(
        Duration::from_secs(10),
        "the probe finds the commit",
        || sb.archived() == 1,
    );
    let json: serde_json::Value = serde_json::from_str(&sb.ok(&["status", "--json"])).unwrap();
    assert!(json["wakeups"]["probe"].as_u64().unwrap() >= 1, "{json}");
}

#[test]
fn sigterm_and_shutdown_stop_it_cleanly_and_a_killed_one_is_replaced() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let socket = sb.path().join(".trail.db.rowtrail/watcher.sock");

    let mut w = sb.start_watcher();
    c.execute("INSERT INTO t VALUES (1)", []).unwrap();
    let status = w.terminate();
    assert!(
        status.success(),
        "SIGTERM should stop it cleanly, got {status}"
    );
    assert!(!socket.exists(), "a clean stop removes the socket");

    let mut w = sb.start_watcher();
    sb.ok(&["signal", "--shutdown"]);
    assert!(w.child.wait().unwrap().success());
    assert_eq!(sb.archived(), 1);

    // SIGKILL leaves a dead socket file behind; the next watcher replaces it.
    let mut w = sb.start_watcher();
    w.kill9();
    assert!(socket.exists());
    let e = sb.fails(&["status"], 5);
    assert!(e.contains("no watcher is running"), "{e}");
    c.execute("INSERT INTO t VALUES (2)", []).unwrap();
    let _w = sb.start_watcher();
    sb.ok(&["signal", "--wait"]);
    assert_eq!(sb.archived(), 2);
}

#[test]
fn the_socket_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new(BIN);
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let _w = sb.start_watcher();
    let dir = sb.path().join(".trail.db.rowtrail");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("watcher.sock")), 0o600);
    assert_eq!(mode(&sb.archive()), 0o600, "the archive is private too");
}

fn status_json(sb: &Sandbox) -> serde_json::Value {
    serde_json::from_slice(&sb.run(&["status", "--json"]).stdout).unwrap_or_default()
}

/// Issue 20, item 8: a deleted (or replaced) socket file left a healthy watcher unreachable.
#[test]
fn a_deleted_or_replaced_socket_is_bound_again_and_status_recovers() {
    let sb = Sandbox::new(BIN);
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let socket = sb.path().join(".trail.db.rowtrail/watcher.sock");
    let _w = sb.start_watcher();
    sb.ok(&["status"]);

    std::fs::remove_file(&socket).unwrap();
    wait_until(
        Duration::from_secs(10),
        "status answers again after the socket file was deleted",
        || sb.run(&["status"]).status.code() == Some(0),
    );
    c.execute("INSERT INTO t VALUES (1)", []).unwrap();
    sb.ok(&["signal", "--wait"]);
    assert_eq!(sb.archived(), 1);

    // Replaced by something that is not the watcher's socket.
    std::fs::remove_file(&socket).unwrap();
    std::fs::write(&socket, "not a socket").unwrap();
    wait_until(
        Duration::from_secs(10),
        "status answers again after the socket file was replaced",
        || sb.run(&["status"]).status.code() == Some(0),
    );
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "still private");
    c.execute("INSERT INTO t VALUES (2)", []).unwrap();
    sb.ok(&["signal", "--wait"]);
    assert_eq!(sb.archived(), 2);
    let log = std::fs::read_to_string(sb.path().join("watcher.log")).unwrap();
    assert!(log.contains("socket file was deleted"), "{log}");
    assert!(log.contains("socket file was replaced"), "{log}");
}

/// Issue 20, item 8: with no socket answering, `status` said no watcher runs (and suggested
/// starting one) while a process held the archive, and `watch` was refused.
#[test]
fn status_signal_and_watch_agree_when_the_archive_is_held_by_a_process_that_does_not_answer() {
    let sb = Sandbox::new(BIN);
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    // This test process holds the reader lock, as a watcher whose socket is gone would.
    let lock = rowtrail_reader::lock::ArchiveLock::acquire(&sb.archive()).unwrap();
    let pid = std::process::id().to_string();

    let e = sb.fails(&["status"], 1);
    assert!(
        e.contains(&format!("a watcher (pid {pid}) holds archive"))
            && e.contains("does not answer on its socket"),
        "{e}"
    );
    assert!(!e.contains("start one with"), "{e}");
    for args in [&["signal"][..], &["signal", "--wait"]] {
        let e = sb.fails(args, 1);
        assert!(
            e.contains(&format!("a watcher (pid {pid}) holds archive")),
            "{args:?}: {e}"
        );
    }
    let e = sb.fails(&["watch"], 1);
    assert!(
        e.contains(&format!("(pid {pid}) is already working on archive")),
        "{e}"
    );
    drop(lock);
    let e = sb.fails(&["status"], 5);
    assert!(e.contains("no watcher is running"), "{e}");
}

/// Issue 20, item 12: `signal --wait` reported only the last pass, so a flush that arrived during
/// a long pass said "0 change(s) archived" after thousands were archived while it waited.
#[test]
fn signal_wait_counts_everything_archived_while_it_waited() {
    let sb = Sandbox::new(BIN);
    sb.write_config("batch_size = 100");
    let c = sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);");
    let made = c
        .execute(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 60000)
             INSERT INTO t SELECT i, 'v' || i FROM s",
            [],
        )
        .unwrap() as u64;
    let _w = sb.start_watcher();
    wait_until(
        Duration::from_secs(60),
        "the long pass has archived a batch",
        || sb.archived() > 0,
    );
    let before = status_json(&sb)["archived"].as_u64().unwrap();
    let staged = sb.staged();
    assert!(
        staged >= 5000,
        "the backlog must outlast the request: {staged} images left"
    );
    let out = sb.ok(&["signal", "--wait", "--timeout", "300"]);
    let reported: u64 = out
        .trim()
        .strip_prefix("staging drained: ")
        .and_then(|r| r.strip_suffix(" change(s) archived"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {out}"));
    let after = status_json(&sb)["archived"].as_u64().unwrap();
    assert_eq!(after, made, "the watcher archived everything");
    assert_eq!(sb.staged(), 0);
    assert!(
        reported <= after - before,
        "reported {reported}, but only {} were archived after the status before the request",
        after - before
    );
    // Everything archived after the request is counted; only what was archived between the
    // status call and the request (milliseconds of a pass of many seconds) may be missing.
    assert!(
        reported * 2 >= after - before,
        "reported {reported} of the {} archived while it waited",
        after - before
    );
}

/// Socket input that is not UTF-8 is answered with a JSON error like any other garbage.
#[test]
fn bytes_that_are_not_utf8_get_a_json_error() {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let sb = Sandbox::new(BIN);
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let _w = sb.start_watcher();
    let socket = sb.path().join(".trail.db.rowtrail/watcher.sock");
    let mut conn = UnixStream::connect(&socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.write_all(b"\xff\xfe{\"cmd\":\"status\"}\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&conn).read_line(&mut reply).unwrap();
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("a JSON reply");
    assert_eq!(reply["ok"], false);
    assert!(reply["error"].as_str().unwrap().contains("not a request"));
    // The connection still takes requests.
    conn.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&conn).read_line(&mut reply).unwrap();
    assert!(reply.contains("\"ok\":true"), "{reply}");
}

/// One shutdown ends every wait: with a poll of 10 minutes and a heartbeat of a minute, SIGTERM
/// and `signal --shutdown` stop the watcher at once.
#[test]
fn every_wait_ends_at_once_on_shutdown() {
    let sb = Sandbox::new(BIN);
    sb.write_config("poll_interval_ms = 600000\nheartbeat_interval_ms = 60000");
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    let mut w = sb.start_watcher();
    let asked = Instant::now();
    assert!(w.terminate().success());
    let by_signal = asked.elapsed();
    let mut w = sb.start_watcher();
    let asked = Instant::now();
    sb.ok(&["signal", "--shutdown"]);
    assert!(w.child.wait().unwrap().success());
    let by_request = asked.elapsed();
    assert!(
        by_signal < Duration::from_secs(3) && by_request < Duration::from_secs(3),
        "SIGTERM took {by_signal:?}, a shutdown request {by_request:?}"
    );
    eprintln!("stopped in {by_signal:?} (SIGTERM) and {by_request:?} (request)");
}
