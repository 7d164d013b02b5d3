//! The connection against a real `nats-server -js` on a loopback port: order, duplicates,
//! restarts, and every refusal the issue names.

use std::time::Duration;

use rowtrail_stream::subject::Subjects;
use rowtrail_stream::{Connection, Credentials, Outgoing, Settings, Storage, StreamError};
use rowtrail_tests::nats::{free_port, NatsOptions, NatsServer};

fn settings(url: &str, source: &str) -> Settings {
    Settings {
        url: url.to_string(),
        subjects: Subjects::new("rowtrail", source).unwrap(),
        stream: Settings::default_stream_name("rowtrail", source),
        max_age: None,
        replicas: 1,
        storage: Storage::File,
        duplicate_window: Duration::from_secs(120),
        window: 512,
        timeout: Duration::from_secs(5),
        ca_file: None,
        credentials: Credentials::None,
    }
}

fn msgs(s: &Settings, range: std::ops::RangeInclusive<u64>) -> Vec<Outgoing> {
    range
        .map(|i| Outgoing {
            subject: s
                .subjects
                .of_table(None, if i % 2 == 0 { "even" } else { "odd" }),
            id: format!("inc:{i}"),
            payload: format!("{{\"seq\":{i}}}").into(),
            cut: None,
        })
        .collect()
}

fn ids(conn: &Connection) -> Vec<String> {
    conn.read_messages(
        1,
        usize::MAX,
        Duration::from_millis(500),
        Duration::from_secs(30),
    )
    .unwrap()
    .into_iter()
    .map(|m| m.id.unwrap())
    .collect()
}

fn expect_ids(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|i| format!("inc:{i}")).collect()
}

#[test]
fn windows_land_in_order_duplicates_are_dropped_and_a_message_out_of_step_is_refused() {
    let nats = NatsServer::start();
    let s = settings(&nats.url(), "app");
    let conn = Connection::open(&s).unwrap();
    assert_eq!(conn.last_message_id().unwrap(), None);
    let out = conn.publish(msgs(&s, 1..=1000), None);
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!((out.acked, out.duplicates), (1000, 0));
    assert_eq!(conn.last_message_id().unwrap().as_deref(), Some("inc:1000"));

    // Sent again, as a publisher killed before it recorded its position would: all dropped.
    let again = conn.publish(msgs(&s, 501..=1000), Some("inc:500".into()));
    assert!(again.error.is_none(), "{:?}", again.error);
    assert_eq!((again.acked, again.duplicates), (500, 500));

    // A message whose predecessor is not the stream's last one is refused, and nothing after it
    // lands.
    let gap = conn.publish(msgs(&s, 1002..=1010), Some("inc:1001".into()));
    assert_eq!(gap.acked, 0);
    match gap.error {
        Some(StreamError::Publish { out_of_step, .. }) => assert!(out_of_step),
        other => panic!("expected an out-of-step refusal, got {other:?}"),
    }
    assert_eq!(ids(&conn), expect_ids(1..=1000));
}

#[test]
fn after_a_server_restart_the_stream_goes_on_where_it_was() {
    let mut nats = NatsServer::start();
    let s = settings(&nats.url(), "app");
    let conn = Connection::open(&s).unwrap();
    assert!(conn.publish(msgs(&s, 1..=10), None).error.is_none());
    drop(conn);
    nats.restart();
    let conn = Connection::open(&s).unwrap();
    let last = conn.last_message_id().unwrap();
    assert_eq!(last.as_deref(), Some("inc:10"));
    let out = conn.publish(msgs(&s, 8..=20), Some("inc:7".into()));
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!((out.acked, out.duplicates), (13, 3));
    assert_eq!(ids(&conn), expect_ids(1..=20));
}

#[test]
fn opening_is_idempotent_and_brings_the_stream_to_its_settings() {
    let nats = NatsServer::start();
    let mut s = settings(&nats.url(), "app");
    drop(Connection::open(&s).unwrap());
    drop(Connection::open(&s).unwrap());
    s.max_age = Some(Duration::from_secs(3600));
    drop(Connection::open(&s).unwrap());
    // Storage cannot change in place: a clear refusal.
    s.storage = Storage::Memory;
    let e = Connection::open(&s).err().unwrap().to_string();
    assert!(e.contains("storage cannot change in place"), "{e}");
}

#[test]
fn bad_servers_and_settings_get_clear_errors() {
    // Nothing listens.
    let url = format!("nats://127.0.0.1:{}", free_port());
    let e = Connection::open(&settings(&url, "app")).err().unwrap();
    assert!(matches!(e, StreamError::ServerDown { .. }), "{e:?}");
    assert!(e.to_string().contains("does not answer"), "{e}");

    // No JetStream.
    let plain = NatsServer::start_with(NatsOptions {
        no_jetstream: true,
        ..Default::default()
    });
    let e = Connection::open(&settings(&plain.url(), "app"))
        .err()
        .unwrap();
    assert!(matches!(e, StreamError::NoJetStream { .. }), "{e:?}");
    assert!(e.to_string().contains("nats-server -js"), "{e}");

    // Wrong credentials, and none; the password is never in the message.
    let locked = NatsServer::start_with(NatsOptions {
        user: Some(("rowtrail".into(), "right-password".into())),
        ..Default::default()
    });
    let mut s = settings(&locked.url(), "app");
    let e = Connection::open(&s).err().unwrap();
    assert!(matches!(e, StreamError::Credentials { .. }), "{e:?}");
    s.credentials = Credentials::UserPassword {
        user: "rowtrail".into(),
        password: "wrong-password".into(),
    };
    let e = Connection::open(&s).err().unwrap();
    assert!(matches!(e, StreamError::Credentials { .. }), "{e:?}");
    assert!(
        e.to_string().contains("ROWTRAIL_STREAM_PASSWORD")
            && !e.to_string().contains("wrong-password"),
        "{e}"
    );
    s.credentials = Credentials::UserPassword {
        user: "rowtrail".into(),
        password: "right-password".into(),
    };
    Connection::open(&s).unwrap();

    // The subjects belong to another stream.
    let nats = NatsServer::start();
    let mut other = settings(&nats.url(), "app");
    other.subjects = Subjects::new("rowtrail", "app").unwrap();
    other.stream = "SOMEONE_ELSES".into();
    drop(Connection::open(&other).unwrap());
    let e = Connection::open(&settings(&nats.url(), "app"))
        .err()
        .unwrap();
    assert!(matches!(e, StreamError::SubjectTaken { .. }), "{e:?}");
    assert!(e.to_string().contains("SOMEONE_ELSES"), "{e}");
}
