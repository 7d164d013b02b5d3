//! rowtrail-bench: rowtrail's benchmark harness.
//!
//! ```text
//! cargo run --release -p rowtrail-bench -- all            # every scenario, judged against its target
//! cargo run --release -p rowtrail-bench -- all --quick    # small sizes, nothing judged (CI)
//! cargo run --release -p rowtrail-bench -- reader --json  # one scenario, as JSON
//! ```
//!
//! Every scenario works on real SQLite files in a private temporary folder (removed at the end)
//! and every comparison is a ratio of two measurements made in the same run. The latency,
//! replica lag, memory and stream scenarios run the real `rowtrail watch` as a process: the
//! binary beside this one in the target folder (built first, with the same profile, when run
//! through cargo), or `--rowtrail`.
//!
//! Exit status: 0 when every scenario ran (and, in a full run, met its target), 1 when a
//! scenario failed, 3 when a full run missed a target. `--quick` never judges timings.

mod app_view;
mod capture;
mod fixture;
mod history;
mod latency;
mod memory;
mod mssql;
mod reader;
mod replica_lag;
mod report;
mod size;
mod standby;
mod stream;
mod takeover;
mod tsql;
mod undo;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};

use report::{Figure, Verdict};

/// Measures rowtrail against its performance targets (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(name = "rowtrail-bench")]
struct Cli {
    /// Which scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Small sizes, and no verdicts: proves the harness runs (CI).
    #[arg(long)]
    quick: bool,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The rowtrail binary for the scenarios that run the watcher.
    #[arg(long, value_name = "PATH")]
    rowtrail: Option<PathBuf>,
    /// Where to make the temporary folder (default: the system's temp folder). Use a folder on
    /// the disk whose performance you want to measure; a tmpfs makes fsync free.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Rows of the standby scenario's table before as many are inserted and applied (default
    /// 200,000; --quick 5,000). 500000 makes the two equal 1M-row tables the compare target
    /// (≤ 3 s) is judged at; 1000000 the 1M rows + 1M changes of the restore target (≤ 10 s).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    standby_rows: Option<i64>,
    /// The Python that has sqlite-history 0.1, for the app scenario's peer (default: the
    /// virtual environment `scripts/bench/setup.sh` makes in the target folder).
    #[arg(long, value_name = "PATH")]
    peer_python: Option<PathBuf>,
}

/// The scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Every scenario, in this order.
    All,
    /// Capture overhead (bulk and single-row autocommit).
    Capture,
    /// Capture overhead as an application sees it, beside sqlite-history 0.1.
    App,
    /// The reader draining a staged backlog, against a plain batched INSERT.
    Reader,
    /// Commit→archive latency with the watcher running.
    Latency,
    /// Undo with --apply.
    Undo,
    /// History of one row in a large archive.
    History,
    /// Archive bytes per change.
    Size,
    /// Baseline, replica apply, restore as of a time, compare.
    Standby,
    /// Commit→replica lag with the watcher keeping a replica current, at the demo's pace.
    ReplicaLag,
    /// The watcher's peak memory while draining a backlog.
    Memory,
    /// T-SQL generation for 300 tables.
    Tsql,
    /// SQL Server figures that need no server: value conversion, deployment and undo scripts.
    Mssql,
    /// The change stream: publishing to a real nats-server, and its cost to the archive path.
    Stream,
    /// Failover of a level replica, and a guarded handback.
    Takeover,
}

/// What every scenario is told.
pub struct Settings {
    /// Small sizes.
    pub quick: bool,
    /// The `rowtrail` binary, when a scenario needs it.
    pub rowtrail: Option<PathBuf>,
    /// The Python of the peer's virtual environment (`scripts/bench/setup.sh`).
    pub peer_python: Option<PathBuf>,
    /// The standby scenario's table size (`--standby-rows`).
    pub standby_rows: Option<i64>,
}

type Run = fn(&Settings, &std::path::Path, &mut fixture::Backlogs) -> anyhow::Result<Vec<Figure>>;

fn scenarios() -> Vec<(Scenario, Run)> {
    vec![
        (Scenario::Capture, |s, d, _| capture::run(s, d)),
        (Scenario::App, |s, d, _| app_view::run(s, d)),
        (Scenario::Reader, reader::run),
        (Scenario::Latency, |s, d, _| latency::run(s, d)),
        (Scenario::Undo, |s, d, _| undo::run(s, d)),
        (Scenario::History, |s, d, _| history::run(s, d)),
        (Scenario::Size, |s, d, _| size::run(s, d)),
        (Scenario::Standby, |s, d, _| standby::run(s, d)),
        (Scenario::ReplicaLag, |s, d, _| replica_lag::run(s, d)),
        (Scenario::Memory, memory::run),
        (Scenario::Tsql, |s, _, _| tsql::run(s)),
        (Scenario::Mssql, |s, _, _| mssql::run(s)),
        (Scenario::Stream, stream::run),
        (Scenario::Takeover, |s, d, _| takeover::run(s, d)),
    ]
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let parent = cli.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = match tempfile::Builder::new()
        .prefix("rowtrail-bench")
        .tempdir_in(&parent)
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "cannot make a temporary folder in {}: {e}",
                parent.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let needs_binary = matches!(
        cli.scenario,
        Scenario::All
            | Scenario::Latency
            | Scenario::ReplicaLag
            | Scenario::Memory
            | Scenario::Stream
    );
    let rowtrail = if needs_binary {
        match fixture::rowtrail_binary(cli.rowtrail.as_deref()) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let settings = Settings {
        quick: cli.quick,
        rowtrail,
        peer_python: cli.peer_python.clone(),
        standby_rows: cli.standby_rows,
    };
    let mut backlogs = fixture::Backlogs::new(dir.path());
    let mut figures = Vec::new();
    let mut failed = false;
    let started = Instant::now();
    for (scenario, run) in scenarios() {
        if cli.scenario != Scenario::All && cli.scenario != scenario {
            continue;
        }
        let name = format!("{scenario:?}").to_lowercase();
        eprintln!("== {name}");
        let t = Instant::now();
        match run(&settings, dir.path(), &mut backlogs) {
            Ok(mut got) => {
                for f in &mut got {
                    if !cli.quick {
                        f.judge();
                    }
                    eprintln!(
                        "  {}: {}  ({})",
                        f.measure,
                        report::number(f.value, f.unit),
                        f.detail
                    );
                }
                figures.extend(got);
                eprintln!("  ({name} took {:.1} s)", t.elapsed().as_secs_f64());
            }
            Err(e) => {
                eprintln!("error: scenario {name} failed: {e:#}");
                failed = true;
            }
        }
    }
    if cli.json {
        let doc = serde_json::json!({
            "quick": cli.quick,
            "seconds": started.elapsed().as_secs_f64(),
            "figures": figures,
            "failed": failed,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("figures serialise")
        );
    } else {
        report::print_table(&figures);
        println!(
            "\n{} figure(s) in {:.1} s{}",
            figures.len(),
            started.elapsed().as_secs_f64(),
            if cli.quick {
                " (quick mode: sizes are small and nothing is judged)"
            } else {
                ""
            }
        );
    }
    if failed {
        ExitCode::FAILURE
    } else if figures.iter().any(|f| f.verdict == Verdict::Miss) {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
