//! `rowtrail init`: write a commented rowtrail.toml.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::config::{Overrides, DEFAULT_FILE};

/// Arguments of `rowtrail init`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rowtrail init --source app.db --archive /var/lib/rowtrail/trail.db\n  rowtrail init --engine mssql --out /etc/rowtrail/rowtrail.toml"
)]
pub struct Args {
    /// The source's engine.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub engine: crate::config::Engine,
    /// Where to write the file.
    #[arg(long, default_value = DEFAULT_FILE, value_name = "FILE")]
    pub out: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// The `[archive]`, `[watcher]` and `[alerts]` sections every config shares.
fn common(archive: &str) -> String {
    format!(
        "[archive]\n\
         # The trace archive (created on first use, mode 0600). Keep it on another disk or host.\n\
         path = {archive:?}\n\
         # Stop (without losing anything) before the archive grows past this size.\n\
         # max_bytes = 10_737_418_240\n\n\
         [watcher]\n\
         # Socket for `rowtrail signal` / `status` (default: a private folder beside the archive).\n\
         # socket = \"/run/rowtrail/watcher.sock\"\n\
         # Safety net: a pass at least this often, even if every signal and probe is missed.\n\
         poll_interval_ms = 1000\n\
         # How often the engine probe looks for new commits.\n\
         probe_interval_ms = 2\n\
         # How often the heartbeat checks the source, the backlog and the archive's disk.\n\
         heartbeat_interval_ms = 1000\n\
         # Staged images per archive transaction.\n\
         batch_size = 10000\n\
         # \"text\" or \"json\" log lines (on stderr; RUST_LOG sets the level).\n\
         log_format = \"text\"\n\
         # Prometheus metrics at http://<this>/metrics (loopback addresses only).\n\
         # metrics_listen = \"127.0.0.1:9187\"\n\n\
         [alerts]\n\
         # Raise an alert when ... (0 switches a rule off):\n\
         # the oldest change still in staging is older than this (data at risk if the source is lost)\n\
         backlog_age_seconds = 60\n\
         # the source has not answered for this long\n\
         source_down_seconds = 30\n\
         # the archive's disk has less free space than this\n\
         min_free_disk_bytes = 1_073_741_824\n\
         # a replica's oldest unapplied change is older than this, beyond its delay\n\
         rpo_max_seconds = 300\n\
         # Each alert start and clear is also piped, as one JSON object, to this command's stdin.\n\
         # command = \"/usr/local/bin/page-oncall\"\n\n\
         # Replicas the watcher keeps current (build one first: rowtrail replica create --to FILE).\n\
         # [[replica]]\n\
         # path = \"/srv/standby/app.db\"\n\
         # delay = \"1h\"     # stay this far behind on purpose (optional)\n\
         # health_listen = \"127.0.0.1:9202\"   # this node's /primary, /replica, /health\n\n\
         # The primary's heartbeat and failover (docs/failover.md).\n\
         # [takeover]\n\
         # failures = 3             # failed heartbeats in a row that mark the primary down\n\
         # idle_interval_ms = 5000  # the heartbeat's interval while nothing flows\n\
         # connect_timeout_ms = 2000\n\
         # login_timeout_ms = 5000\n\
         # query_timeout_ms = 5000\n\
         # auto_failover = false    # true: promote the most up-to-date replica once the primary is down\n\n\
         # The change stream: every archived change published to NATS JetStream, in order, exactly\n\
         # once (docs/stream.md). Credentials only from the environment: ROWTRAIL_STREAM_USER and\n\
         # ROWTRAIL_STREAM_PASSWORD, ROWTRAIL_STREAM_TOKEN, ROWTRAIL_STREAM_NKEY or ROWTRAIL_STREAM_CREDS.\n\
         # [stream]\n\
         # url = \"nats://nats1.example.net:4222\"   # tls://... for TLS; several separated by \",\"\n\
         # subject = \"rowtrail\"                    # subjects: <subject>.<source>.<schema>.<table>\n\
         # source = \"app\"                          # default: the SQLite file's stem, or the database\n\
         # max_age_seconds = 604800                # drop messages older than this (default: keep)\n\
         # replicas = 3                            # copies in a JetStream cluster (default 1)\n\
         # storage = \"file\"                        # or \"memory\"\n\n\
         # On another host, without [source] or [archive]: a replica fed from that stream. Build it\n\
         # here (rowtrail replica create --to FILE), carry the file there, and name it (one section\n\
         # per replica; one per source, selected by its subjects):\n\
         # [[remote_replica]]\n\
         # path = \"/srv/replicas/app.db\"\n\
         # url = \"nats://nats1.example.net:4222\"\n\
         # subject = \"rowtrail.app\"                # the publisher's <subject>.<source>\n\
         # stream = \"ROWTRAIL_APP\"                 # default: the stream that holds those subjects\n"
    )
}

/// The text of a config file for a SQLite source.
pub fn sqlite_config(source: &str, archive: &str) -> String {
    format!(
        "# rowtrail configuration. Relative paths are relative to this file's folder.\n\
         # Environment overrides: ROWTRAIL_SOURCE_PATH, ROWTRAIL_ARCHIVE_PATH, ROWTRAIL_SOCKET.\n\n\
         [source]\n\
         engine = \"sqlite\"\n\
         # The captured database.\n\
         path = {source:?}\n\
         # The application that owns the file, for the heartbeat (its health URL, or host:port).\n\
         # address = \"http://127.0.0.1:7001/health\"\n\
         # This node's health endpoints for load balancers (/primary, /replica, /health).\n\
         # health_listen = \"127.0.0.1:9201\"\n\n{}",
        common(archive)
    )
}

/// The text of a config file for a SQL Server source.
pub fn mssql_config(archive: &str) -> String {
    format!(
        "# rowtrail configuration. Relative paths are relative to this file's folder.\n\n\
         [source]\n\
         engine = \"mssql\"\n\
         # ADO connection string WITHOUT the password: set ROWTRAIL_SOURCE_PASSWORD in the service's\n\
         # environment (or the whole string in ROWTRAIL_SOURCE_CONNECTION). A password here is refused.\n\
         connection = \"Server=tcp:db.example.internal,1433;Database=app;User Id=rowtrail_reader;Encrypt=true\"\n\
         # Trust any server certificate (a warning is logged). Prefer installing the server's CA.\n\
         trust_server_certificate = false\n\n{}",
        common(archive)
    )
}

/// Writes the config file.
pub fn run(args: &Args, o: &Overrides) -> Result<ExitCode> {
    if args.out.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            args.out.display()
        );
    }
    let archive = o
        .archive
        .as_ref()
        .map_or("trail.db".into(), |p| p.display().to_string());
    let text = match args.engine {
        crate::config::Engine::Sqlite => {
            let source = o
                .source
                .as_ref()
                .map_or("app.db".into(), |p| p.display().to_string());
            sqlite_config(&source, &archive)
        }
        crate::config::Engine::Mssql => mssql_config(&archive),
    };
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    // Paths in the file are relative to its folder.
    let base = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let at = |p: &std::path::Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    if let (crate::config::Engine::Sqlite, Some(source)) = (args.engine, &o.source) {
        if !at(source).exists() {
            eprintln!(
                "note: the source {} does not exist yet; `rowtrail sql install` needs it",
                at(source).display()
            );
        }
    }
    if let Some(archive) = &o.archive {
        let folder = at(archive).parent().map(std::path::Path::to_path_buf);
        if let Some(f) = folder.filter(|f| !f.as_os_str().is_empty() && !f.is_dir()) {
            eprintln!(
                "note: the archive's folder {} does not exist; create it before the first `rowtrail read`",
                f.display()
            );
        }
    }
    outln!(
        "wrote {}; review it, then `rowtrail sql generate` to see what capture installs",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` with the commented section that starts with `# <header>` made live.
    fn uncommented(text: &str, header: &str) -> String {
        let mut out = String::new();
        let mut live = false;
        for line in text.lines() {
            if line == format!("# {header}") {
                live = true;
            } else if line.is_empty() {
                live = false;
            }
            match line.strip_prefix("# ").filter(|_| live) {
                Some(l) => out.push_str(l),
                None => out.push_str(line),
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_commented_stream_and_remote_replica_sections_load_once_uncommented() {
        let dir = tempfile::tempdir().unwrap();
        let text = sqlite_config("app.db", "trail.db");
        for header in ["[stream]", "[[remote_replica]]"] {
            assert!(text.contains(&format!("\n# {header}\n")), "{header}");
        }
        let live = uncommented(&uncommented(&text, "[stream]"), "[[remote_replica]]");
        let file = dir.path().join("rowtrail.toml");
        std::fs::write(&file, live).unwrap();
        let cfg = crate::config::Config::load(&Overrides {
            config: Some(file),
            ..Overrides::default()
        })
        .unwrap();
        let stream = cfg.stream.expect("[stream] is live");
        assert_eq!(stream.subjects.all(), "rowtrail.app.>");
        let remote = &cfg.remote_replicas[0];
        assert_eq!(
            remote.remote.subjects.as_ref().map(|s| s.all()).as_deref(),
            Some("rowtrail.app.>")
        );
        assert_eq!(remote.remote.stream.as_deref(), Some("ROWTRAIL_APP"));
    }
}
