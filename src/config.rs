//! `rowtrail.toml`: where the source and the archive are, and how the watcher behaves.
//!
//! Relative paths are relative to the config file's folder. Environment variables override the
//! file: `ROWTRAIL_SOURCE_PATH`, `ROWTRAIL_ARCHIVE_PATH`, `ROWTRAIL_SOCKET`; secrets come only
//! from the environment (`ROWTRAIL_SOURCE_PASSWORD`), never from the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    source: Option<SourceSection>,
    archive: Option<ArchiveSection>,
    #[serde(default)]
    watcher: WatcherSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    engine: Engine,
    path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveSection {
    path: PathBuf,
    max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WatcherSection {
    socket: Option<PathBuf>,
    poll_interval_ms: Option<u64>,
    probe_interval_ms: Option<u64>,
    batch_size: Option<usize>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The source engine.
    pub engine: Engine,
    /// The SQLite source file.
    pub source_path: Option<PathBuf>,
    /// The archive file.
    pub archive_path: Option<PathBuf>,
    /// The archive size limit.
    pub archive_max_bytes: Option<u64>,
    /// The watcher's socket.
    pub socket: Option<PathBuf>,
    /// Safety-net poll interval.
    pub poll_interval: Duration,
    /// Engine probe interval.
    pub probe_interval: Duration,
    /// Images per batch.
    pub batch_size: usize,
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

impl Config {
    /// Loads the config: `--config`, else `$ROWTRAIL_CONFIG`, else `./rowtrail.toml` if it exists;
    /// then environment variables; then `--source` / `--archive`.
    pub fn load(o: &Overrides) -> Result<Self> {
        let explicit = o
            .config
            .clone()
            .or_else(|| std::env::var_os("ROWTRAIL_CONFIG").map(PathBuf::from));
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
                let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
                (parsed, base)
            }
            None => (File::default(), PathBuf::new()),
        };
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let env_path = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let w = parsed.watcher;
        let positive = |name: &str, v: Option<u64>, default: u64| -> Result<u64> {
            match v {
                Some(0) => bail!("watcher.{name} must be at least 1"),
                Some(v) => Ok(v),
                None => Ok(default),
            }
        };
        let batch_size = match w.batch_size {
            Some(0) => bail!("watcher.batch_size must be at least 1"),
            Some(n) => n,
            None => rowtrail_reader::mover::DEFAULT_BATCH,
        };
        let engine = parsed.source.as_ref().map_or(Engine::Sqlite, |s| s.engine);
        Ok(Config {
            engine,
            source_path: o
                .source
                .clone()
                .or_else(|| env_path("ROWTRAIL_SOURCE_PATH"))
                .or_else(|| parsed.source.as_ref().and_then(|s| s.path.clone()).map(rel)),
            archive_path: o
                .archive
                .clone()
                .or_else(|| env_path("ROWTRAIL_ARCHIVE_PATH"))
                .or_else(|| parsed.archive.as_ref().map(|a| rel(a.path.clone()))),
            archive_max_bytes: parsed.archive.as_ref().and_then(|a| a.max_bytes),
            socket: env_path("ROWTRAIL_SOCKET").or_else(|| w.socket.map(rel)),
            poll_interval: Duration::from_millis(positive(
                "poll_interval_ms",
                w.poll_interval_ms,
                1000,
            )?),
            probe_interval: Duration::from_millis(positive(
                "probe_interval_ms",
                w.probe_interval_ms,
                2,
            )?),
            batch_size,
        })
    }

    /// The SQLite source file, or an error that says how to name one.
    pub fn source(&self) -> Result<&Path> {
        if self.engine == Engine::Mssql {
            bail!("this command reaches SQL Server sources only through the SQL Server live path, which this build does not include yet; use `rowtrail sql generate --engine mssql` for scripts");
        }
        self.source_path.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "no source database: set [source] path in rowtrail.toml, or pass --source FILE"
            )
        })
    }

    /// The archive file, or an error that says how to name one.
    pub fn archive(&self) -> Result<&Path> {
        self.archive_path.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "no archive: set [archive] path in rowtrail.toml, or pass --archive FILE"
            )
        })
    }

    /// The watcher's socket: configured, or next to the archive in a private folder.
    pub fn socket(&self) -> Result<PathBuf> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        Ok(rowtrail_watcher::default_socket(self.archive()?))
    }
}
