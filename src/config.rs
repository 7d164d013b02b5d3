//! `rowtrail.toml`: where the source and the archive are, how the watcher behaves, when it alerts.
//!
//! Relative paths are relative to the config file's folder. Unknown keys are errors. Environment
//! variables override the file: `ROWTRAIL_SOURCE_PATH`, `ROWTRAIL_ARCHIVE_PATH`, `ROWTRAIL_SOCKET`,
//! `ROWTRAIL_SOURCE_CONNECTION`, `ROWTRAIL_LOG_FORMAT`, `ROWTRAIL_METRICS_LISTEN`,
//! `ROWTRAIL_STREAM_URL`. Secrets come only from the environment (`ROWTRAIL_SOURCE_PASSWORD`;
//! the stream's `ROWTRAIL_STREAM_USER`/`_PASSWORD`, `_TOKEN`, `_NKEY`, `_CREDS`): a password in the file is refused, and
//! nothing rowtrail prints contains one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rowtrail_reader::archive::ArchiveOptions;
use rowtrail_reader::source::SourceSpec;
use rowtrail_watcher::AlertRules;
use serde::Deserialize;

/// The engine of the source database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// SQLite, the embedded engine.
    Sqlite,
    /// Microsoft SQL Server.
    Mssql,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    source: Option<SourceSection>,
    archive: Option<ArchiveSection>,
    #[serde(default)]
    watcher: WatcherSection,
    #[serde(default)]
    alerts: AlertsSection,
    /// `[[replica]]` sections: replicas the watcher keeps current.
    #[serde(default)]
    replica: Vec<ReplicaSection>,
    stream: Option<StreamSection>,
    #[serde(default)]
    takeover: TakeoverSection,
    /// `[[remote_replica]]` sections: replicas fed from the change stream.
    #[serde(default)]
    remote_replica: Vec<RemoteReplicaSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteReplicaSection {
    path: PathBuf,
    url: String,
    /// The source's subjects, `<prefix>.<source>`.
    subject: String,
    stream: Option<String>,
    timeout_ms: Option<u64>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TakeoverSection {
    /// Failed heartbeats in a row that mark the primary down.
    failures: Option<u32>,
    /// The heartbeat's interval while nothing flows (`watcher.heartbeat_interval_ms` is the
    /// interval while changes flow or after a failure).
    idle_interval_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    login_timeout_ms: Option<u64>,
    query_timeout_ms: Option<u64>,
    /// Fail over on its own once the primary is down.
    #[serde(default)]
    auto_failover: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicaSection {
    path: PathBuf,
    /// How far behind the source it stays (`90s`, `15m`, `1h`, `2d`).
    delay: Option<String>,
    /// Where this replica's node answers load balancers' health checks.
    health_listen: Option<String>,
    /// How often the watcher compares it with the source (`1d`).
    verify_every: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamSection {
    url: String,
    subject: Option<String>,
    source: Option<String>,
    stream: Option<String>,
    max_age_seconds: Option<u64>,
    replicas: Option<usize>,
    storage: Option<String>,
    duplicate_window_seconds: Option<u64>,
    window: Option<usize>,
    timeout_ms: Option<u64>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    engine: Engine,
    path: Option<PathBuf>,
    connection: Option<String>,
    #[serde(default)]
    trust_server_certificate: bool,
    /// SQLite: capture tables created after the install as the reader finds them.
    #[serde(default)]
    capture_new_tables: bool,
    /// SQL Server: how long one request may run before it is cancelled (0: no limit).
    command_timeout_seconds: Option<u64>,
    /// Where the primary's service answers the heartbeat (`host:port`, or an HTTP health URL
    /// for a SQLite file's application).
    address: Option<String>,
    /// Where the source's node answers load balancers' health checks.
    health_listen: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveSection {
    path: PathBuf,
    max_bytes: Option<u64>,
    /// How often the watcher verifies the hash chain (`1d`).
    verify_every: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WatcherSection {
    socket: Option<PathBuf>,
    poll_interval_ms: Option<u64>,
    probe_interval_ms: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    batch_size: Option<usize>,
    log_format: Option<LogFormat>,
    metrics_listen: Option<String>,
    digest_file: Option<PathBuf>,
    digest_command: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AlertsSection {
    backlog_age_seconds: Option<u64>,
    source_down_seconds: Option<u64>,
    min_free_disk_bytes: Option<u64>,
    /// Alert when a replica is this far behind (beyond its delay); 0 turns it off.
    rpo_max_seconds: Option<u64>,
    command: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The source engine.
    pub engine: Engine,
    /// The SQLite source file.
    pub source_path: Option<PathBuf>,
    /// The SQL Server connection string (ADO.NET), without a password unless it came whole from
    /// `ROWTRAIL_SOURCE_CONNECTION`.
    pub connection: Option<String>,
    /// SQL Server: accept any server certificate (logged as a warning when rowtrail starts).
    pub trust_server_certificate: bool,
    /// SQL Server: how long one request (a query, one batch of a script or of an undo) may run
    /// before rowtrail cancels it (`source.command_timeout_seconds`, 30 by default; `None`: no
    /// limit, from 0).
    pub command_timeout: Option<Duration>,
    /// SQLite: capture tables created after the install as the reader finds them
    /// (`source.capture_new_tables`); otherwise they are reported.
    pub capture_new_tables: bool,
    /// The archive file.
    pub archive_path: Option<PathBuf>,
    /// The archive size limit.
    pub archive_max_bytes: Option<u64>,
    /// How often the watcher verifies the archive's hash chain (`[archive] verify_every`).
    pub archive_verify_every: Option<std::time::Duration>,
    /// The watcher's socket.
    pub socket: Option<PathBuf>,
    /// Safety-net poll interval.
    pub poll_interval: Duration,
    /// Engine probe interval.
    pub probe_interval: Duration,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Images per batch.
    pub batch_size: usize,
    /// Log line format.
    pub log_format: LogFormat,
    /// Where to serve metrics.
    pub metrics_listen: Option<SocketAddr>,
    /// Alert thresholds and command.
    pub alerts: AlertRules,
    /// Where the watcher publishes the archive's digest after each pass that archived something.
    pub digest: rowtrail_watcher::digest::DigestSink,
    /// The replicas the watcher keeps current (`[[replica]]`).
    pub replicas: Vec<rowtrail_watcher::ReplicaSettings>,
    /// The change stream (`[stream]`), with its credentials from the environment.
    pub stream: Option<rowtrail_stream::Settings>,
    /// The heartbeat of the primary and failover (`[takeover]`, `[source] address`).
    pub takeover: TakeoverSettings,
    /// The configured source's node health listener (`[source] health_listen`).
    pub source_health_listen: Option<SocketAddr>,
    /// The source file `rowtrail.toml` names, when a takeover made another copy the primary
    /// (`source_path` is then that copy's).
    pub configured_source: Option<PathBuf>,
    /// The takeover that made the current primary, if one did.
    pub primary_takeover: Option<i64>,
    /// The replicas the watcher keeps current from the change stream (`[[remote_replica]]`),
    /// with the stream's credentials from the environment.
    pub remote_replicas: Vec<rowtrail_watcher::RemoteReplicaSettings>,
}

/// The heartbeat of the primary and failover settings.
#[derive(Debug, Clone)]
pub struct TakeoverSettings {
    /// Failed heartbeats in a row that mark the primary down (`takeover.failures`, 3).
    pub failures: u32,
    /// The heartbeat interval while idle (`takeover.idle_interval_ms`, 5 × the busy one).
    pub idle_interval: Duration,
    /// The probe's timeouts.
    pub timeouts: rowtrail_takeover::probe::Timeouts,
    /// Where the primary's service is reached (`[source] address`).
    pub address: rowtrail_takeover::probe::Address,
    /// Fail over on its own once the primary is down (`takeover.auto_failover`).
    pub auto_failover: bool,
}

/// Command-line overrides that apply on top of the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--source`.
    pub source: Option<PathBuf>,
    /// `--archive`.
    pub archive: Option<PathBuf>,
}

/// The default config file name, looked for in the current folder.
pub const DEFAULT_FILE: &str = "rowtrail.toml";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `Some(duration)` from a number of units; `key` must be at least 1.
fn positive(
    key: &str,
    v: Option<u64>,
    default: u64,
    unit: fn(u64) -> Duration,
) -> Result<Duration> {
    match v {
        Some(0) => bail!("{key} must be at least 1 (it is 0)"),
        Some(v) => Ok(unit(v)),
        None => Ok(unit(default)),
    }
}

/// A command timeout in seconds: the default when not given, no limit for 0.
pub fn command_timeout(seconds: Option<u64>) -> Option<Duration> {
    match seconds {
        None => Some(rowtrail_reader::mssql::settings::DEFAULT_COMMAND_TIMEOUT),
        Some(0) => None,
        Some(n) => Some(Duration::from_secs(n)),
    }
}

/// A threshold where 0 switches the alert off.
fn threshold(v: Option<u64>, default: u64) -> Option<u64> {
    match v.unwrap_or(default) {
        0 => None,
        n => Some(n),
    }
}

/// Whether a connection string carries a password (`password=` or `pwd=`).
fn has_password(connection: &str) -> bool {
    connection.split(';').any(|part| {
        let key = part
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        key == "password" || key == "pwd"
    })
}

/// The `[stream]` section resolved: defaults, checks, credentials from the environment.
fn stream_settings(
    st: StreamSection,
    engine: Engine,
    source_path: Option<&Path>,
    connection: Option<&str>,
    rel: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<rowtrail_stream::Settings> {
    use rowtrail_stream::settings::{DEFAULT_DUPLICATE_WINDOW, DEFAULT_WINDOW};
    use rowtrail_stream::{Credentials, Settings, Storage};
    let url = env("ROWTRAIL_STREAM_URL").unwrap_or(st.url);
    Settings::check_url(&url)?;
    let prefix = st.subject.unwrap_or_else(|| "rowtrail".into());
    // The source's name in subjects: the SQLite file's stem, or the SQL Server database.
    let source = match st.source {
        Some(s) if !s.is_empty() => s,
        Some(_) => {
            bail!("stream.source is empty; name the source (it is a token of every subject)")
        }
        None => match engine {
            Engine::Sqlite => source_path
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "set stream.source: the source has no file name to take it from"
                    )
                })?,
            Engine::Mssql => connection
                .map(|c| rowtrail_reader::mssql::Settings {
                    connection: c.to_string(),
                    password: None,
                    trust_server_certificate: false,
                    command_timeout: None,
                })
                .map(|s| s.location())
                .and_then(|l| l.split(" on ").next().map(str::to_string))
                .filter(|d| !d.starts_with('('))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "set stream.source: the connection names no database to take it from"
                    )
                })?,
        },
    };
    let subjects = rowtrail_stream::subject::Subjects::new(&prefix, &source)?;
    let stream = st
        .stream
        .unwrap_or_else(|| Settings::default_stream_name(&prefix, &source));
    Settings::check_stream_name(&stream)?;
    let storage = match st.storage.as_deref() {
        None => Storage::File,
        Some(w) => Storage::from_word(w).ok_or_else(|| {
            anyhow::anyhow!("stream.storage is {w:?}; it must be \"file\" or \"memory\"")
        })?,
    };
    let positive = |key: &str, v: Option<u64>, default: u64| -> Result<u64> {
        match v {
            Some(0) => bail!("stream.{key} must be at least 1 (it is 0)"),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    };
    Ok(Settings {
        url,
        subjects,
        stream,
        max_age: st
            .max_age_seconds
            .filter(|&s| s > 0)
            .map(Duration::from_secs),
        replicas: positive("replicas", st.replicas.map(|r| r as u64), 1)? as usize,
        storage,
        duplicate_window: Duration::from_secs(positive(
            "duplicate_window_seconds",
            st.duplicate_window_seconds,
            DEFAULT_DUPLICATE_WINDOW.as_secs(),
        )?),
        window: positive("window", st.window.map(|w| w as u64), DEFAULT_WINDOW as u64)? as usize,
        timeout: Duration::from_millis(positive("timeout_ms", st.timeout_ms, 5000)?),
        ca_file: st.ca_file.map(rel),
        credentials: Credentials::from_env()?,
    })
}

impl Config {
    /// Loads the config: `--config`, else `$ROWTRAIL_CONFIG`, else `./rowtrail.toml` if it exists;
    /// then environment variables; then `--source` / `--archive`.
    pub fn load(o: &Overrides) -> Result<Self> {
        let explicit = o
            .config
            .clone()
            .or_else(|| env("ROWTRAIL_CONFIG").map(PathBuf::from));
        let file_path = match explicit {
            Some(p) => {
                if !p.exists() {
                    bail!(
                        "config file {} does not exist (create one with `rowtrail init`)",
                        p.display()
                    );
                }
                Some(p)
            }
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.exists()),
        };
        let (parsed, base) = match &file_path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                let parsed: File = toml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("config file {}: {}", p.display(), e.to_string().trim_end())
                })?;
                (
                    parsed,
                    p.parent().map(Path::to_path_buf).unwrap_or_default(),
                )
            }
            None => (File::default(), PathBuf::new()),
        };
        let at = |key: &str| match &file_path {
            Some(p) => format!("{} in {}", key, p.display()),
            None => key.to_string(),
        };
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let w = parsed.watcher;
        let a = parsed.alerts;
        let batch_size = match w.batch_size {
            Some(0) => bail!("{} must be at least 1 (it is 0)", at("watcher.batch_size")),
            Some(n) => n,
            None => rowtrail_reader::mover::DEFAULT_BATCH,
        };
        let metrics_text = env("ROWTRAIL_METRICS_LISTEN").or(w.metrics_listen);
        let metrics_listen = match metrics_text {
            None => None,
            Some(text) => {
                let addr: SocketAddr = text.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "{} is {text:?}; it must be an address and port such as \"127.0.0.1:9187\"",
                        at("watcher.metrics_listen")
                    )
                })?;
                if !addr.ip().is_loopback() {
                    bail!("{} is {text:?}; metrics are served on loopback addresses only (127.0.0.1 or [::1])", at("watcher.metrics_listen"));
                }
                Some(addr)
            }
        };
        let log_format = match env("ROWTRAIL_LOG_FORMAT") {
            Some(f) if f == "json" => LogFormat::Json,
            Some(f) if f == "text" => LogFormat::Text,
            Some(f) => bail!("ROWTRAIL_LOG_FORMAT is {f:?}; it must be \"text\" or \"json\""),
            None => w.log_format.unwrap_or_default(),
        };
        let source = parsed.source;
        let engine = source.as_ref().map_or(Engine::Sqlite, |s| s.engine);
        let connection = env("ROWTRAIL_SOURCE_CONNECTION")
            .or_else(|| source.as_ref().and_then(|s| s.connection.clone()));
        if let Some(c) = &connection {
            if has_password(c) && env("ROWTRAIL_SOURCE_CONNECTION").is_none() {
                bail!(
                    "{} holds a password; remove it and set ROWTRAIL_SOURCE_PASSWORD in the service's environment instead",
                    at("source.connection")
                );
            }
        }
        if engine == Engine::Sqlite
            && source.as_ref().is_some_and(|s| {
                s.connection.is_some()
                    || s.trust_server_certificate
                    || s.command_timeout_seconds.is_some()
            })
        {
            bail!(
                "{}, trust_server_certificate and command_timeout_seconds are for SQL Server sources; a SQLite source takes source.path",
                at("source.connection")
            );
        }
        let command_timeout =
            command_timeout(source.as_ref().and_then(|s| s.command_timeout_seconds));
        let source_path = o
            .source
            .clone()
            .or_else(|| env("ROWTRAIL_SOURCE_PATH").map(PathBuf::from))
            .or_else(|| source.as_ref().and_then(|s| s.path.clone()).map(rel));
        let stream = match parsed.stream {
            None => None,
            Some(st) => Some(
                stream_settings(
                    st,
                    engine,
                    source_path.as_deref(),
                    connection.as_deref(),
                    &rel,
                )
                .map_err(|e| anyhow::anyhow!("{}: {e}", at("[stream]")))?,
            ),
        };
        let remote_replicas = parsed
            .remote_replica
            .into_iter()
            .map(|r| {
                let what = format!("[[remote_replica]] {}", r.path.display());
                let checked = (|| -> Result<rowtrail_watcher::RemoteReplicaSettings> {
                    rowtrail_stream::Settings::check_url(&r.url)?;
                    if let Some(st) = &r.stream {
                        rowtrail_stream::Settings::check_stream_name(st)?;
                    }
                    Ok(rowtrail_watcher::RemoteReplicaSettings {
                        path: rel(r.path.clone()),
                        remote: rowtrail_stream::remote::RemoteSettings {
                            url: r.url.clone(),
                            subjects: Some(rowtrail_stream::subject::Subjects::from_filter(
                                &r.subject,
                            )?),
                            stream: r.stream.clone(),
                            timeout: positive(
                                "timeout_ms",
                                r.timeout_ms,
                                5000,
                                Duration::from_millis,
                            )?,
                            ca_file: r.ca_file.clone().map(rel),
                            credentials: rowtrail_stream::Credentials::from_env()?,
                        },
                    })
                })();
                checked.map_err(|e| anyhow::anyhow!("{}: {e}", at(&what)))
            })
            .collect::<Result<Vec<_>>>()?;
        let alert_command = a.command.filter(|c| !c.trim().is_empty());
        let tk = parsed.takeover;
        let ms = |key: &str, v: Option<u64>, default: u64| {
            positive(&at(key), v, default, Duration::from_millis)
        };
        let heartbeat_interval = positive(
            &at("watcher.heartbeat_interval_ms"),
            w.heartbeat_interval_ms,
            1000,
            Duration::from_millis,
        )?;
        let takeover = TakeoverSettings {
            failures: match tk.failures {
                Some(0) => bail!("{} must be at least 1 (it is 0)", at("takeover.failures")),
                Some(n) => n,
                None => 3,
            },
            idle_interval: match tk.idle_interval_ms {
                Some(n) => ms("takeover.idle_interval_ms", Some(n), 1)?.max(heartbeat_interval),
                None => heartbeat_interval * 5,
            },
            timeouts: rowtrail_takeover::probe::Timeouts {
                connect: ms("takeover.connect_timeout_ms", tk.connect_timeout_ms, 2000)?,
                login: ms("takeover.login_timeout_ms", tk.login_timeout_ms, 5000)?,
                query: ms("takeover.query_timeout_ms", tk.query_timeout_ms, 5000)?,
            },
            address: rowtrail_takeover::probe::Address::parse(
                source
                    .as_ref()
                    .and_then(|s| s.address.as_deref())
                    .unwrap_or(""),
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", at("source.address")))?,
            auto_failover: tk.auto_failover,
        };
        let listen = |key: &str, text: Option<&str>| -> Result<Option<SocketAddr>> {
            text.map(|t| {
                t.parse::<SocketAddr>().map_err(|_| {
                    anyhow::anyhow!(
                        "{} is {t:?}; it must be an address and port such as \"127.0.0.1:9201\"",
                        at(key)
                    )
                })
            })
            .transpose()
        };
        let source_health_listen = listen(
            "source.health_listen",
            source.as_ref().and_then(|s| s.health_listen.as_deref()),
        )?;
        let trust_server_certificate = source.as_ref().is_some_and(|s| s.trust_server_certificate);
        let explicit_source = o.source.is_some() || env("ROWTRAIL_SOURCE_PATH").is_some();
        let mut cfg =
            Config {
                engine,
                connection,
                trust_server_certificate,
                command_timeout,
                capture_new_tables: source.as_ref().is_some_and(|s| s.capture_new_tables),
                source_path,
                stream,
                remote_replicas,
                archive_path: o
                    .archive
                    .clone()
                    .or_else(|| env("ROWTRAIL_ARCHIVE_PATH").map(PathBuf::from))
                    .or_else(|| parsed.archive.as_ref().map(|a| rel(a.path.clone()))),
                archive_max_bytes: parsed.archive.as_ref().and_then(|a| a.max_bytes),
                archive_verify_every: parsed
                    .archive
                    .as_ref()
                    .and_then(|a| a.verify_every.as_deref())
                    .map(parse_duration)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("[archive] verify_every: {e}"))?,
                socket: env("ROWTRAIL_SOCKET")
                    .map(PathBuf::from)
                    .or_else(|| w.socket.map(rel)),
                poll_interval: positive(
                    &at("watcher.poll_interval_ms"),
                    w.poll_interval_ms,
                    1000,
                    Duration::from_millis,
                )?,
                probe_interval: positive(
                    &at("watcher.probe_interval_ms"),
                    w.probe_interval_ms,
                    2,
                    Duration::from_millis,
                )?,
                heartbeat_interval,
                takeover,
                source_health_listen,
                configured_source: None,
                primary_takeover: None,
                batch_size,
                log_format,
                metrics_listen,
                digest: rowtrail_watcher::digest::DigestSink {
                    file: w.digest_file.clone().map(rel),
                    command: w.digest_command.clone().filter(|c| !c.trim().is_empty()),
                },
                replicas: parsed
                    .replica
                    .iter()
                    .map(|r| {
                        Ok(rowtrail_watcher::ReplicaSettings {
                            path: rel(r.path.clone()),
                            delay: r.delay.as_deref().map(parse_duration).transpose().map_err(
                                |e| anyhow::anyhow!("[[replica]] {}: delay: {e}", r.path.display()),
                            )?,
                            verify_every: r
                                .verify_every
                                .as_deref()
                                .map(parse_duration)
                                .transpose()
                                .map_err(|e| {
                                    anyhow::anyhow!(
                                        "[[replica]] {}: verify_every: {e}",
                                        r.path.display()
                                    )
                                })?,
                            health_listen: listen(
                                &format!("[[replica]] {} health_listen", r.path.display()),
                                r.health_listen.as_deref(),
                            )?,
                        })
                    })
                    .collect::<Result<_>>()?,
                alerts: AlertRules {
                    backlog_age: threshold(a.backlog_age_seconds, 60).map(Duration::from_secs),
                    source_down: threshold(a.source_down_seconds, 30).map(Duration::from_secs),
                    min_free_disk: threshold(a.min_free_disk_bytes, 1 << 30),
                    rpo_max: threshold(a.rpo_max_seconds, 300).map(Duration::from_secs),
                    command: alert_command,
                },
            };
        if !explicit_source {
            cfg.follow_recorded_primary();
        }
        Ok(cfg)
    }

    /// After a takeover the archive names the primary: every command follows it without
    /// `rowtrail.toml` being edited (`--source` still names a file explicitly). An archive
    /// that cannot be read leaves the configured source; the command then reports the
    /// archive's own error when it opens it.
    pub fn follow_recorded_primary(&mut self) {
        let Some(archive) = self.archive_path.as_deref().filter(|p| p.exists()) else {
            return;
        };
        let Ok(a) = rowtrail_reader::archive::Archive::open_read_only(archive) else {
            return;
        };
        let Ok(Some(p)) = a.recorded_primary() else {
            return;
        };
        if self.engine == Engine::Sqlite && p.engine == "sqlite" {
            let path = PathBuf::from(&p.location);
            if self.source_path.as_deref() != Some(path.as_path()) {
                self.configured_source = self.source_path.take();
                self.source_path = Some(path);
            }
            self.primary_takeover = Some(p.takeover);
        }
    }

    /// The SQLite source file, or an error that says how to name one.
    pub fn source(&self) -> Result<&Path> {
        if self.engine == Engine::Mssql {
            bail!(
                "this command works on SQLite sources; for SQL Server, `sql install|uninstall|check`, \
                 `read`, `watch`, `status`, `undo` and `redo` use [source] connection; `history` and \
                 `audit` read the archive"
            );
        }
        self.source_path.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "no source database: set [source] path in rowtrail.toml, or pass --source FILE"
            )
        })
    }

    /// The SQL Server connection settings: `[source] connection` (or `ROWTRAIL_SOURCE_CONNECTION`),
    /// the password from `ROWTRAIL_SOURCE_PASSWORD`, and `trust_server_certificate`.
    pub fn mssql(&self) -> Result<rowtrail_reader::mssql::Settings> {
        if self.engine != Engine::Mssql {
            bail!("the configured source is not SQL Server: set [source] engine = \"mssql\" and connection");
        }
        let connection = self.connection.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "no SQL Server connection: set [source] connection = \"Server=tcp:host,1433;Database=db;User ID=login\" \
                 in rowtrail.toml (or ROWTRAIL_SOURCE_CONNECTION), and the password in ROWTRAIL_SOURCE_PASSWORD"
            )
        })?;
        Ok(rowtrail_reader::mssql::Settings {
            connection,
            password: env("ROWTRAIL_SOURCE_PASSWORD"),
            trust_server_certificate: self.trust_server_certificate,
            command_timeout: self.command_timeout,
        })
    }

    /// The configured source: its engine and where it is. Every command that opens the source
    /// starts from this.
    pub fn source_spec(&self) -> Result<SourceSpec> {
        Ok(match self.engine {
            Engine::Sqlite => SourceSpec::Sqlite {
                path: self.source()?.to_path_buf(),
                capture_new_tables: self.capture_new_tables,
            },
            Engine::Mssql => SourceSpec::Mssql(self.mssql()?),
        })
    }

    /// The archive's open options (its size limit).
    pub fn archive_options(&self) -> ArchiveOptions {
        ArchiveOptions {
            max_bytes: self.archive_max_bytes,
        }
    }

    /// The archive file, or an error that says how to name one.
    pub fn archive(&self) -> Result<&Path> {
        self.archive_path.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "no archive: set [archive] path in rowtrail.toml, or pass --archive FILE"
            )
        })
    }

    /// The watcher's socket: configured, or next to the archive in a private folder (on a host
    /// without an archive, next to the first remote replica).
    pub fn socket(&self) -> Result<PathBuf> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        if let (None, Some(r)) = (&self.archive_path, self.remote_replicas.first()) {
            return Ok(rowtrail_watcher::default_socket(&r.path));
        }
        Ok(rowtrail_watcher::default_socket(self.archive()?))
    }

    /// Whether the config names a source (`[source]`, `--source` or the environment).
    pub fn has_source(&self) -> bool {
        self.source_path.is_some() || self.connection.is_some()
    }
}

/// Reads `90s`, `15m`, `1h`, `2d`, or a number of seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let bad = || format!("{text:?} is not a duration: write 90s, 15m, 1h or 2d");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_in_connection_strings() {
        assert!(has_password(
            "Server=tcp:db,1433;Database=app;User Id=r;Password=x"
        ));
        assert!(has_password("server=db; PWD = x"));
        assert!(!has_password(
            "Server=db;Database=app;User Id=r;Encrypt=true"
        ));
    }

    #[test]
    fn durations_read_with_their_units_and_bad_ones_say_how() {
        assert_eq!(super::parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(super::parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(
            super::parse_duration("2d"),
            Ok(Duration::from_secs(172_800))
        );
        assert_eq!(super::parse_duration("30"), Ok(Duration::from_secs(30)));
        let e = super::parse_duration("1 hour").unwrap_err();
        assert!(e.contains("write 90s, 15m, 1h or 2d"), "{e}");
    }
}
