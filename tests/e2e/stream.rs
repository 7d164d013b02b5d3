//! The change stream end to end: the real watcher publishing to a real `nats-server -js` on a
//! loopback port, read back by a consumer; crashes of either side; and the refusals.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use rowtrail_sql::Value;
use rowtrail_stream::envelope::value_from_json;
use rowtrail_stream::subject::Subjects;
use rowtrail_stream::{Connection, Credentials, Settings, Storage};
use rowtrail_tests::nats::{free_port, NatsOptions, NatsServer};
use rowtrail_tests::{wait_until, Proc, Sandbox};

const BIN: &str = env!("CARGO_BIN_EXE_rowtrail");

const DDL: &str = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, r REAL, b BLOB);";

/// How long a test waits for the watcher to catch up.
const CATCH_UP: Duration = Duration::from_secs(240);

fn stream_section(url: &str) -> String {
    format!("\n[stream]\nurl = \"{url}\"\nwindow = 1024\n")
}

/// A consumer's view of the sandbox's source on `url`.
fn consumer(url: &str) -> Connection {
    Connection::open(&Settings {
        url: url.to_string(),
        subjects: Subjects::new("rowtrail", "source").unwrap(),
        stream: Settings::default_stream_name("rowtrail", "source"),
        max_age: None,
        replicas: 1,
        storage: Storage::File,
        duplicate_window: Duration::from_secs(120),
        window: 1024,
        timeout: Duration::from_secs(10),
        ca_file: None,
        credentials: Credentials::None,
    })
    .expect("the consumer connects")
}

/// `n` changes to `t`: inserts, then updates and deletes of some of them, in a few
/// transactions.
fn write_changes(sb: &Sandbox, inserts: i64) {
    let c = sb.connect();
    c.execute_batch("BEGIN").unwrap();
    {
        let mut ins = c.prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4)").unwrap();
        for i in 1..=inserts {
            let v = (i % 7 != 0).then(|| format!("row {i} 'q' \u{e9}"));
            ins.execute(rusqlite::params![
                i,
                v,
                i as f64 / 3.0,
                vec![i as u8, 0, 255]
            ])
            .unwrap();
        }
    }
    c.execute_batch(&format!(
        "COMMIT; UPDATE t SET v = 'updated', r = -0.0 WHERE id % 5 = 0; \
         DELETE FROM t WHERE id % 10 = 3 AND id <= {inserts};"
    ))
    .unwrap();
}

/// The status as JSON.
fn status(sb: &Sandbox) -> serde_json::Value {
    let out = sb.run(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The archive's published position, read from the archive file.
fn recorded_position(sb: &Sandbox) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        sb.archive(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.busy_timeout(Duration::from_secs(20)).unwrap();
    c.query_row(
        "SELECT coalesce(max(published_id), 0) FROM stream_positions",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// Waits until the watcher reports the stream caught up with `total` archived changes.
fn wait_published(sb: &Sandbox, total: i64) {
    wait_until(CATCH_UP, "the stream has every archived change", || {
        let s = status(sb);
        s["stream"]["published_id"].as_i64() == Some(total)
            && s["stream"]["lag_changes"].as_u64() == Some(0)
    });
}

/// Every message of the source, checked against the archive: one per archived change, in
/// archive order, each with its change's message id and subject; and the rows they rebuild
/// equal the source's table.
fn check_stream(sb: &Sandbox, url: &str) -> usize {
    let archived = rowtrail_tests::replay::archived_changes(&sb.archive());
    let got = consumer(url)
        .read_messages(
            1,
            usize::MAX,
            Duration::from_secs(2),
            Duration::from_secs(180),
        )
        .unwrap();
    let ids: Vec<String> = got.iter().map(|m| m.id.clone().unwrap()).collect();
    let want: Vec<String> = archived
        .iter()
        .map(|c| format!("{}:{}", c.incarnation, c.seq))
        .collect();
    if ids != want {
        let first = ids.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "the stream holds {} messages, the archive {} changes; first difference at {first:?}",
            ids.len(),
            want.len()
        );
    }
    // Rebuild the table from the envelopes alone, as a consumer would.
    let mut rows: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    let image = |e: &serde_json::Value| -> Option<Vec<Value>> {
        let m = e.as_object()?;
        Some(
            ["id", "v", "r", "b"]
                .iter()
                .map(|c| value_from_json(&m[*c]).expect("a typed value"))
                .collect(),
        )
    };
    for (m, c) in got.iter().zip(&archived) {
        assert!(m.subject.ends_with(".source.main.t"), "{}", m.subject);
        let e: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(e["id"], c.id);
        assert_eq!(e["seq"], c.seq);
        assert_eq!(e["source"]["table"], "t");
        assert_eq!(e["source"]["engine"], "sqlite");
        let key = |img: &Option<Vec<Value>>| match img.as_ref().map(|r| &r[0]) {
            Some(Value::Integer(i)) => Some(*i),
            _ => None,
        };
        let (before, after) = (image(&e["before"]), image(&e["after"]));
        match e["op"].as_str().unwrap() {
            "c" => assert!(rows.insert(key(&after).unwrap(), after.unwrap()).is_none()),
            "u" => {
                rows.remove(&key(&before).unwrap())
                    .expect("updated row exists");
                rows.insert(key(&after).unwrap(), after.unwrap());
            }
            "d" => {
                rows.remove(&key(&before).unwrap())
                    .expect("deleted row exists");
            }
            op => panic!("op {op}"),
        }
    }
    let src = sb.connect();
    let mut stmt = src
        .prepare("SELECT id, v, r, b FROM t ORDER BY id")
        .unwrap();
    let conv = |v: rusqlite::types::Value| match v {
        rusqlite::types::Value::Null => Value::Null,
        rusqlite::types::Value::Integer(i) => Value::Integer(i),
        rusqlite::types::Value::Real(r) => Value::Real(r),
        rusqlite::types::Value::Text(t) => Value::text(&t),
        rusqlite::types::Value::Blob(b) => Value::Blob(b),
    };
    let source: BTreeMap<i64, Vec<Value>> = stmt
        .query_map([], |r| {
            let row: Vec<Value> = (0..4).map(|i| conv(r.get(i).unwrap())).collect();
            Ok((r.get(0)?, row))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), source.len(), "rows rebuilt from the stream");
    for (k, row) in &source {
        let rebuilt = &rows[k];
        assert!(
            row.iter().zip(rebuilt).all(|(a, b)| a.same(b)),
            "row {k}: {row:?} vs {rebuilt:?}"
        );
    }
    got.len()
}

#[test]
fn a_hundred_thousand_changes_reach_the_stream_once_each_in_archive_order() {
    let nats = NatsServer::start();
    let sb = Sandbox::new(BIN);
    sb.write_config(&stream_section(&nats.url()));
    sb.create_and_install(DDL);
    let _w = sb.start_watcher();
    write_changes(&sb, 80_000);
    sb.ok(&["signal", "--wait"]);
    let total = sb.archived();
    assert_eq!(total, 80_000 + 16_000 + 8_000);
    wait_published(&sb, total);
    assert_eq!(recorded_position(&sb), total);
    assert_eq!(check_stream(&sb, &nats.url()), total as usize);
    let human = sb.ok(&["status"]);
    assert!(
        human.contains("ROWTRAIL_SOURCE") && human.contains("0 behind"),
        "{human}"
    );
}

#[test]
fn a_watcher_killed_and_a_server_restarted_while_publishing_leave_no_gap_and_no_duplicate() {
    let mut nats = NatsServer::start();
    let sb = Sandbox::new(BIN);
    sb.write_config(&stream_section(&nats.url()));
    sb.create_and_install(DDL);
    write_changes(&sb, 60_000);
    let mut w = sb.start_watcher();
    sb.ok(&["signal", "--wait"]);
    let total = sb.archived();
    // Killed while publishing: some changes acknowledged, not all.
    wait_until(CATCH_UP, "publishing has begun", || {
        recorded_position(&sb) > 0
    });
    let at_kill = recorded_position(&sb);
    w.kill9();
    assert!(at_kill < total, "the kill came too late to test anything");
    let _w = sb.start_watcher();
    // The server restarted while the new watcher publishes.
    wait_until(CATCH_UP, "publishing goes on", || {
        recorded_position(&sb) > at_kill
    });
    let before_restart = recorded_position(&sb);
    nats.restart();
    assert!(
        before_restart < total,
        "the restart came too late to test anything"
    );
    wait_published(&sb, total);
    assert_eq!(check_stream(&sb, &nats.url()), total as usize);
    let s = status(&sb);
    assert!(s["stream"]["last_error"].is_null(), "{s}");
}

#[test]
fn a_server_down_at_start_delays_the_stream_and_loses_nothing() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let sb = Sandbox::new(BIN);
    let metrics = free_port();
    sb.write_config(&format!(
        "metrics_listen = \"127.0.0.1:{metrics}\"\n{}",
        stream_section(&url)
    ));
    let scrape = || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", metrics)).unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).unwrap();
        body
    };
    let c = sb.create_and_install(DDL);
    let _w = sb.start_watcher();
    c.execute("INSERT INTO t VALUES (1, 'a', 1.5, x'00')", [])
        .unwrap();
    sb.ok(&["signal", "--wait"]);
    wait_until(
        Duration::from_secs(30),
        "the status shows the stream's error",
        || {
            let s = status(&sb);
            s["stream"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("does not answer"))
                && s["health"] == "degraded"
        },
    );
    let human = String::from_utf8_lossy(&sb.fails(&["status"], 1).into_bytes()).into_owned();
    assert!(human.contains("NOT CONNECTED"), "{human}");
    wait_until(Duration::from_secs(30), "the metrics show the lag", || {
        let m = scrape();
        m.contains("rowtrail_stream_connected 0") && m.contains("rowtrail_stream_lag_changes 1\n")
    });
    let _nats = NatsServer::start_on(port, NatsOptions::default());
    wait_published(&sb, 1);
    wait_until(
        Duration::from_secs(30),
        "the metrics show the stream caught up",
        || {
            let m = scrape();
            m.contains("rowtrail_stream_connected 1")
                && m.contains("rowtrail_stream_published_position 1\n")
                && m.contains("rowtrail_stream_lag_changes 0\n")
                && m.contains("rowtrail_stream_published_total 1\n")
        },
    );
    assert_eq!(check_stream(&sb, &url), 1);
    wait_until(
        Duration::from_secs(30),
        "the watcher is healthy again",
        || status(&sb)["health"] == "healthy",
    );
}

#[test]
fn bad_stream_settings_are_refused_with_clear_errors() {
    let sb = Sandbox::new(BIN);
    sb.create_and_install(DDL);
    for (section, want) in [
        (
            "url = \"nats://pub:hunter2@127.0.0.1:4222\"",
            "holds credentials",
        ),
        ("url = \"http://127.0.0.1:4222\"", "must start with nats://"),
        (
            "url = \"nats://127.0.0.1:1\"\nsubject = \"a b\"",
            "stream.subject",
        ),
        (
            "url = \"nats://127.0.0.1:1\"\nstorage = \"disk\"",
            "stream.storage",
        ),
        (
            "url = \"nats://127.0.0.1:1\"\npassword = \"x\"",
            "unknown field",
        ),
    ] {
        sb.write_config(&format!("\n[stream]\n{section}\n"));
        let e = sb.fails(&["watch"], 1);
        assert!(e.contains(want), "{section}: {e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[test]
fn wrong_stream_credentials_and_no_jetstream_show_in_the_status_and_never_the_password() {
    let locked = NatsServer::start_with(NatsOptions {
        user: Some(("publisher".into(), "right-pass".into())),
        ..Default::default()
    });
    let sb = Sandbox::new(BIN);
    sb.write_config(&stream_section(&locked.url()));
    let c = sb.create_and_install(DDL);
    let log = sb.path().join("watcher.log");
    let start = |password: &str| {
        let mut cmd = sb.cmd(&["watch"]);
        cmd.env("ROWTRAIL_STREAM_USER", "publisher")
            .env("ROWTRAIL_STREAM_PASSWORD", password)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        Proc {
            child: cmd.spawn().unwrap(),
        }
    };
    let mut w = start("wrong-pass");
    c.execute("INSERT INTO t VALUES (1, 'a', 1.5, x'00')", [])
        .unwrap();
    wait_until(
        Duration::from_secs(30),
        "the status shows refused credentials",
        || {
            status(&sb)["stream"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("refused the credentials"))
        },
    );
    let text = sb.fails(&["status", "--json"], 1);
    assert!(!text.contains("wrong-pass"), "{text}");
    w.terminate();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("refused the credentials"), "{logged}");
    assert!(!logged.contains("wrong-pass"), "{logged}");

    let _w = start("right-pass");
    wait_until(Duration::from_secs(30), "the watcher answers", || {
        status(&sb)["pid"].is_u64()
    });
    sb.ok(&["signal", "--wait"]);
    wait_published(&sb, 1);

    let plain = NatsServer::start_with(NatsOptions {
        no_jetstream: true,
        ..Default::default()
    });
    let sb2 = Sandbox::new(BIN);
    sb2.write_config(&stream_section(&plain.url()));
    sb2.create_and_install(DDL);
    let _w2 = sb2.start_watcher();
    wait_until(
        Duration::from_secs(30),
        "the status says JetStream is missing",
        || {
            status(&sb2)["stream"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("has no JetStream"))
        },
    );
}

#[test]
fn subjects_taken_by_another_stream_are_refused_by_name() {
    let nats = NatsServer::start();
    let mut other = consumer(&nats.url()).settings().clone();
    drop(Connection::open(&other).unwrap());
    // The default stream now exists; a second watcher config naming another stream for the
    // same subjects is refused.
    other.stream = "ANOTHER".into();
    let sb = Sandbox::new(BIN);
    sb.write_config(&format!(
        "{}stream = \"ANOTHER\"\n",
        stream_section(&nats.url())
    ));
    sb.create_and_install(DDL);
    let _w = sb.start_watcher();
    wait_until(
        Duration::from_secs(30),
        "the status names the stream that holds the subjects",
        || {
            status(&sb)["stream"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("taken by the stream \"ROWTRAIL_SOURCE\""))
        },
    );
}
