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
        type Field = fn(&crate::status::ReplicaState) -> String;
        let families: [(&str, &str, &str, Field); 5] = [
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
        for (name, kind, help, value) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for r in &s.replicas {
                out.push_str(&format!(
                    "{name}{{replica=\"{}\"}} {}\n",
                    label_value(&r.path),
                    value(r)
                ));
            }
        }
    }
    // The primary's heartbeat and the nodes' roles (what load balancers route by).
    let probe_state = |want: &str| u8::from(s.primary_state.as_deref() == Some(want)).to_string();
    out.push_str(&format!(
        "# HELP rowtrail_primary_failures Failed heartbeats of the primary in a row.
         # TYPE rowtrail_primary_failures gauge
rowtrail_primary_failures {}
         # HELP rowtrail_primary_slow 1 when the last heartbeat timed out (the primary accepts connections but does not answer).
         # TYPE rowtrail_primary_slow gauge
rowtrail_primary_slow {}
         # HELP rowtrail_primary_last_seen_seconds When the primary last answered a heartbeat (seconds since the epoch).
         # TYPE rowtrail_primary_last_seen_seconds gauge
rowtrail_primary_last_seen_seconds {}
         # HELP rowtrail_heartbeat_interval_seconds The heartbeat's interval now.
         # TYPE rowtrail_heartbeat_interval_seconds gauge
rowtrail_heartbeat_interval_seconds {}
         # HELP rowtrail_takeover_id The newest takeover (failover or handback) the archive records (0: none).
         # TYPE rowtrail_takeover_id gauge
rowtrail_takeover_id {}
",
        s.source_failures,
        probe_state("slow"),
        secs(s.primary_last_seen_us),
        s.heartbeat_interval_ms as f64 / 1e3,
        s.takeover.as_ref().map_or(0, |t| t.id),
    ));
    if !s.nodes.is_empty() {
        out.push_str(
            "# HELP rowtrail_node_primary 1 on the node that is the primary now.
# TYPE rowtrail_node_primary gauge
",
        );
        for n in &s.nodes {
            out.push_str(&format!(
                "rowtrail_node_primary{{node=\"{}\"}} {}\n",
                label_value(&n.target),
                u8::from(n.role == "primary")
            ));
        }
    }
    if !s.remote_replicas.is_empty() {
        type Field = fn(&crate::status::RemoteReplicaState) -> String;
        let families: [(&str, &str, &str, Field); 7] = [
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
        for (name, kind, help, value) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for r in &s.remote_replicas {
                out.push_str(&format!(
                    "{name}{{replica=\"{}\"}} {}\n",
                    label_value(&r.path),
                    value(r)
                ));
            }
        }
    }
    out
}

/// A label value as the exposition format writes it: backslash, quote and newline escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
