//! The watcher process: its socket, its wake sources, its clients, and stopping it.

use std::time::{Duration, Instant};

use rowtrail_tests::{wait_until, Sandbox};

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

#[test]
fn clients_fail_fast_and_clearly_when_no_watcher_runs() {
    let sb = Sandbox::new(BIN);
    sb.create_and_install("CREATE TABLE t (id INTEGER PRIMARY KEY);");
    // `status` says "down" the way monitoring plugins do (2); the others fail as errors (1).
    for (args, code) in [
        (&["status"][..], 2),
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
    let e = sb.fails(&["status"], 2);
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
