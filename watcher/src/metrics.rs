//! The Prometheus text the HTTP listener serves at `GET /metrics`.
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
//!
//! With `[stream]` configured, the publisher's:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `rowtrail_stream_published_position` | gauge | id of the last change the stream acknowledged |
//! | `rowtrail_stream_lag_changes` | gauge | archived changes the stream has not acknowledged |
//! | `rowtrail_stream_lag_seconds` | gauge | age in the archive of the oldest of them (0 when none) |
//! | `rowtrail_stream_published_total` | counter | changes the stream took since the watcher started |
//! | `rowtrail_stream_duplicates_total` | counter | changes sent again that the stream already held |
//! | `rowtrail_stream_connected` | gauge | 1 while the publisher holds a connection |
//! | `rowtrail_stream_last_error_timestamp_seconds` | gauge | when publishing last failed (0: never) |
//!
//! The primary's heartbeat and takeovers:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `rowtrail_primary_failures` | gauge | failed heartbeats of the primary in a row |
//! | `rowtrail_primary_slow` | gauge | 1 when the last heartbeat timed out |
//! | `rowtrail_primary_last_seen_seconds` | gauge | when the primary last answered (0: never) |
//! | `rowtrail_heartbeat_interval_seconds` | gauge | the heartbeat's interval now |
//! | `rowtrail_takeover_id` | gauge | the newest failover or handback (0: none) |
//! | `rowtrail_node_primary{node="…"}` | gauge | 1 on the node that is the primary now |
//!
//! Per `[[remote_replica]]` (label `replica`, the file):
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `rowtrail_remote_replica_position` | gauge | archive change id the replica stands at |
//! | `rowtrail_remote_replica_pending_messages` | gauge | messages of its source not yet applied (the consumer's lag) |
//! | `rowtrail_remote_replica_lag_seconds` | gauge | age in the archive of the oldest of them (0 when level) |
//! | `rowtrail_remote_replica_applied_total` | counter | changes applied since the watcher started |
//! | `rowtrail_remote_replica_connected` | gauge | 1 while it holds a connection to the stream's server |
//! | `rowtrail_remote_replica_last_error_timestamp_seconds` | gauge | when applying last failed (0: never) |
//! | `rowtrail_remote_replica_failing` | gauge | 1 while applying fails |

use crate::status::Status;

/// The metrics in Prometheus text format.
pub fn render(s: &Status) -> String {
    let secs = |us: Option<i64>| us.map_or(0.0, |u| u as f64 / 1e6);
    let mut out = String::new();
    let mut metric =
        |name: &str, kind: &str, help: &str, value: String| one(&mut out, name, kind, help, &value);
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
    if let Some(st) = &s.stream {
        metric(
            "rowtrail_stream_published_position",
            "gauge",
            "Id of the last change the stream acknowledged.",
            st.published_id.to_string(),
        );
        metric(
            "rowtrail_stream_lag_changes",
            "gauge",
            "Archived changes the stream has not acknowledged.",
            st.lag_changes.to_string(),
        );
        metric(
            "rowtrail_stream_lag_seconds",
            "gauge",
            "Age in the archive of the oldest change the stream has not acknowledged.",
            st.lag_seconds.to_string(),
        );
        metric(
            "rowtrail_stream_published_total",
            "counter",
            "Changes the stream took since the watcher started.",
            st.published.to_string(),
        );
        metric(
            "rowtrail_stream_duplicates_total",
            "counter",
            "Changes sent again that the stream already held.",
            st.duplicates.to_string(),
        );
        metric(
            "rowtrail_stream_connected",
            "gauge",
            "1 while the publisher holds a connection to the stream's server.",
            u8::from(st.connected).to_string(),
        );
        metric(
            "rowtrail_stream_last_error_timestamp_seconds",
            "gauge",
            "When publishing to the stream last failed.",
            secs(st.last_error_us).to_string(),
        );
    }
    out.push_str(&format!(
        "# HELP rowtrail_pass_duration_seconds Time spent in reader passes.\n# TYPE rowtrail_pass_duration_seconds summary\n\
         rowtrail_pass_duration_seconds_sum {}\nrowtrail_pass_duration_seconds_count {}\n",
        s.pass_seconds_total, s.passes
    ));
    out.push_str("# HELP rowtrail_alert_firing 1 while the alert fires.\n# TYPE rowtrail_alert_firing gauge\n");
    for alert in [
        "source_down",
        "backlog_age",
        "disk_free",
        "replica_lag",
        "failed_over",
        "fence_pending",
    ] {
        let firing = s.alerts.iter().any(|a| a.alert == alert);
        out.push_str(&format!(
            "rowtrail_alert_firing{{alert=\"{alert}\"}} {}\n",
            u8::from(firing)
        ));
    }
    if !s.replicas.is_empty() {
        let families: [Family<crate::status::ReplicaState>; 5] = [
            (
                "rowtrail_replica_behind_changes",
                "gauge",
                "Archived changes the replica has not applied.",
                |r| r.behind.to_string(),
            ),
            (
                "rowtrail_replica_lag_seconds",
                "gauge",
                "Age of the oldest archived change the replica has not applied (0 when level).",
                |r| r.lag_secs.to_string(),
            ),
            (
                "rowtrail_replica_applied_total",
                "counter",
                "Changes applied to the replica since the watcher started.",
                |r| r.applied.to_string(),
            ),
            (
                "rowtrail_replica_rto_estimate_seconds",
                "gauge",
                "Time the changes not yet applied would take at the last apply rate.",
                |r| r.rto_estimate_secs.to_string(),
            ),
            (
                "rowtrail_replica_failing",
                "gauge",
                "1 while applying to the replica fails.",
                |r| u8::from(r.last_error.is_some()).to_string(),
            ),
        ];
        labelled(&mut out, "replica", &s.replicas, |r| &r.path, &families);
    }
    // The primary's heartbeat and the nodes' roles (what load balancers route by).
    let slow = s.primary_state.as_deref() == Some("slow");
    for (name, help, value) in [
        (
            "rowtrail_primary_failures",
            "Failed heartbeats of the primary in a row.",
            s.source_failures.to_string(),
        ),
        (
            "rowtrail_primary_slow",
            "1 when the last heartbeat timed out (the primary accepts connections but does not answer).",
            u8::from(slow).to_string(),
        ),
        (
            "rowtrail_primary_last_seen_seconds",
            "When the primary last answered a heartbeat (seconds since the epoch).",
            secs(s.primary_last_seen_us).to_string(),
        ),
        (
            "rowtrail_heartbeat_interval_seconds",
            "The heartbeat's interval now.",
            (s.heartbeat_interval_ms as f64 / 1e3).to_string(),
        ),
        (
            "rowtrail_takeover_id",
            "The newest takeover (failover or handback) the archive records (0: none).",
            s.takeover.as_ref().map_or(0, |t| t.id).to_string(),
        ),
    ] {
        one(&mut out, name, "gauge", help, &value);
    }
    if !s.nodes.is_empty() {
        let families: [Family<crate::status::NodeState>; 1] = [(
            "rowtrail_node_primary",
            "gauge",
            "1 on the node that is the primary now.",
            |n| u8::from(n.role == "primary").to_string(),
        )];
        labelled(&mut out, "node", &s.nodes, |n| &n.target, &families);
    }
    if !s.remote_replicas.is_empty() {
        let families: [Family<crate::status::RemoteReplicaState>; 7] = [
            (
                "rowtrail_remote_replica_position",
                "gauge",
                "Archive change id the remote replica stands at.",
                |r| r.position.to_string(),
            ),
            (
                "rowtrail_remote_replica_pending_messages",
                "gauge",
                "Messages of the replica's source in the stream not yet applied.",
                |r| r.pending.to_string(),
            ),
            (
                "rowtrail_remote_replica_lag_seconds",
                "gauge",
                "Age in the archive of the oldest change the remote replica has not applied.",
                |r| r.lag_secs.to_string(),
            ),
            (
                "rowtrail_remote_replica_applied_total",
                "counter",
                "Changes applied to the remote replica since the watcher started.",
                |r| r.applied.to_string(),
            ),
            (
                "rowtrail_remote_replica_connected",
                "gauge",
                "1 while the remote replica holds a connection to the stream's server.",
                |r| u8::from(r.connected).to_string(),
            ),
            (
                "rowtrail_remote_replica_last_error_timestamp_seconds",
                "gauge",
                "When applying to the remote replica last failed.",
                |r| (r.last_error_us.unwrap_or(0) as f64 / 1e6).to_string(),
            ),
            (
                "rowtrail_remote_replica_failing",
                "gauge",
                "1 while applying to the remote replica fails.",
                |r| u8::from(r.last_error.is_some()).to_string(),
            ),
        ];
        labelled(
            &mut out,
            "replica",
            &s.remote_replicas,
            |r| &r.path,
            &families,
        );
    }
    out
}

/// One unlabelled metric: its help, its type and its value.
fn one(out: &mut String, name: &str, kind: &str, help: &str, value: &str) {
    out.push_str(&format!(
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    ));
}

/// A family of per-item samples: its name, type, help and the value of one item.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> String);

/// Families with one sample per item, labelled `label` by `key`: each family's help and type,
/// then its value for every item.
fn labelled<T>(
    out: &mut String,
    label: &str,
    items: &[T],
    key: fn(&T) -> &str,
    families: &[Family<T>],
) {
    for (name, kind, help, value) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for item in items {
            out.push_str(&format!(
                "{name}{{{label}=\"{}\"}} {}\n",
                label_value(key(item)),
                value(item)
            ));
        }
    }
}

/// A label value as the exposition format writes it: backslash, quote and newline escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{NodeState, ReplicaState};

    #[test]
    fn every_line_is_a_comment_or_a_sample_and_labelled_families_name_each_item() {
        let s = Status {
            source: "a.db".into(),
            source_up: true,
            source_failures: 2,
            primary_state: Some("slow".into()),
            heartbeat_interval_ms: 250,
            replicas: vec![ReplicaState {
                path: "b \"x\".db".into(),
                behind: 7,
                ..ReplicaState::default()
            }],
            nodes: vec![
                NodeState {
                    target: "a.db".into(),
                    kind: "source".into(),
                    role: "primary".into(),
                    health_listen: None,
                },
                NodeState {
                    target: "b.db".into(),
                    kind: "replica".into(),
                    role: "replica".into(),
                    health_listen: None,
                },
            ],
            ..Status::default()
        };
        let text = render(&s);
        for line in text.lines() {
            assert!(
                line.starts_with("# HELP rowtrail_")
                    || line.starts_with("# TYPE rowtrail_")
                    || line.starts_with("rowtrail_"),
                "not a line of the exposition format: {line:?}"
            );
        }
        for sample in [
            "rowtrail_primary_failures 2",
            "rowtrail_primary_slow 1",
            "rowtrail_heartbeat_interval_seconds 0.25",
            "rowtrail_takeover_id 0",
            "rowtrail_node_primary{node=\"a.db\"} 1",
            "rowtrail_node_primary{node=\"b.db\"} 0",
            "rowtrail_replica_behind_changes{replica=\"b \\\"x\\\".db\"} 7",
        ] {
            assert!(
                text.lines().any(|l| l == sample),
                "{sample} missing:\n{text}"
            );
        }
    }
}
