//! A private folder with a SQLite source, an archive and a config, and the real `rowtrail`
//! binary run in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rusqlite::Connection;

use crate::{show, Proc};

/// A private folder holding one source, one archive and their config.
pub struct Sandbox {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Sandbox {
    /// A new sandbox whose commands run `bin` (pass `env!("CARGO_BIN_EXE_rowtrail")`).
    pub fn new(bin: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rt")
            .tempdir()
            .expect("temp dir");
        let sb = Self {
            dir,
            bin: PathBuf::from(bin),
        };
        sb.write_config("");
        sb
    }

    /// The sandbox folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The source database file.
    pub fn source(&self) -> PathBuf {
        self.path().join("source.db")
    }

    /// The archive file.
    pub fn archive(&self) -> PathBuf {
        self.path().join("trail.db")
    }

    /// The config file.
    pub fn config(&self) -> PathBuf {
        self.path().join("rowtrail.toml")
    }

    /// Writes the config: source and archive in the sandbox, a fast poll, plus `extra` TOML
    /// lines appended to the `[watcher]` section (or whole sections after it).
    pub fn write_config(&self, extra: &str) {
        let poll = if extra.contains("poll_interval_ms") {
            ""
        } else {
            "poll_interval_ms = 200\n"
        };
        // The test machine's free disk is not the subject of most tests: the disk alert is off
        // unless a test configures alerts itself.
        let alerts = if extra.contains("[alerts]") {
            ""
        } else {
            "\n[alerts]\nmin_free_disk_bytes = 0\n"
        };
        let text = format!(
            "[source]\nengine = \"sqlite\"\npath = \"source.db\"\n\n[archive]\npath = \"trail.db\"\n\n[watcher]\n{poll}{extra}\n{alerts}"
        );
        std::fs::write(self.config(), text).expect("write config");
    }

    /// A connection to the source (busy timeout set).
    pub fn connect(&self) -> Connection {
        let c = Connection::open(self.source()).expect("open source");
        c.busy_timeout(Duration::from_secs(20))
            .expect("busy timeout");
        c
    }

    /// Creates the source with `ddl` and installs capture on all its tables through the CLI.
    pub fn create_and_install(&self, ddl: &str) -> Connection {
        let c = self.connect();
        c.execute_batch(ddl).expect("create source schema");
        self.ok(&["sql", "install"]);
        c
    }

    /// A `rowtrail --config <sandbox config> ARGS…` command.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config").arg(self.config()).args(args);
        c.current_dir(self.path());
        c.env_remove("ROWTRAIL_TEST_FAILPOINT");
        c.env("RUST_LOG", "info");
        c.stdin(Stdio::null());
        c
    }

    /// Runs and returns the output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run rowtrail")
    }

    /// Runs, requires success, returns stdout; shows everything on failure.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rowtrail {args:?} failed:\n{}",
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs, requires failure with `code`, returns stdout+stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "rowtrail {args:?}: wrong exit status:\n{}",
            show(&out)
        );
        show(&out)
    }

    /// Starts `rowtrail watch` (its log appended to `watcher.log` in the sandbox) and waits
    /// until it answers `status`, whatever its verdict.
    pub fn start_watcher(&self) -> Proc {
        let w = rowtrail_watcher::process::WatcherProcess::start(
            &self.bin,
            &self.config(),
            &self.socket(),
            &self.path().join("watcher.log"),
            "info",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("the watcher answers status: {e}"));
        Proc {
            child: w.into_child(),
        }
    }

    /// The watcher's socket for this sandbox's config.
    pub fn socket(&self) -> PathBuf {
        rowtrail_watcher::default_socket(&self.archive())
    }

    /// Changes archived so far (0 when there is no archive yet).
    pub fn archived(&self) -> i64 {
        if !self.archive().exists() {
            return 0;
        }
        let c =
            Connection::open_with_flags(self.archive(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("open archive");
        c.busy_timeout(Duration::from_secs(20))
            .expect("busy timeout");
        c.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
            .unwrap_or(0)
    }

    /// Images waiting in the source's staging tables.
    pub fn staged(&self) -> i64 {
        self.connect()
            .query_row(
                "SELECT count(*) FROM rowtrail_staging WHERE rowtrail_op IS NOT 'H'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .expect("count staging")
    }
}
