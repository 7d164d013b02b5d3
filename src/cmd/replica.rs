//! `rowtrail replica …` and `rowtrail restore --as-of`: copies of the source on the backup host,
//! built from a baseline and kept current from the archive.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use rowtrail_reader::archive::Archive;
use rowtrail_standby::as_of::AsOf;
use rowtrail_standby::replica::{self, parse_time, CreateOptions, Replica, Until};

use crate::config::{parse_duration, Config};
use crate::progress::Progress;

/// `rowtrail replica …`.
#[derive(Debug, clap::Subcommand)]
pub enum ReplicaCommand {
    /// Build a new replica from the archive's newest baselines, brought to the newest cut.
    #[command(
        after_help = "Example:\n  rowtrail replica create --to /srv/standby/app.db\n\n\
The file appears only when complete. Take a baseline first (`rowtrail baseline`; `sql install`\n\
takes one). With --trail-tables it also holds the trail as plain tables, rowtrail_trail_<table>:\n\
one row per row image of every change (the source's columns, op, before/after, time, login,\n\
host, application, client address, transaction), for queries in any SQLite tool."
    )]
    Create(CreateArgs),
    /// Apply the archived changes the replica lacks, up to the newest cut (or a delay behind).
    #[command(after_help = "Examples:\n  \
rowtrail replica apply --to standby.db                 # once (builds it first if missing)\n  \
rowtrail replica apply --to standby.db --delay 1h      # stay an hour behind the source\n  \
rowtrail replica apply --to standby.db --follow        # keep applying until Ctrl-C\n  \
rowtrail replica apply --from-stream nats://nats1:4222 --subject rowtrail.sales --to sales.db --follow\n\n\
Each step forward is one transaction of the replica that writes the rows and its position:\n\
a kill leaves it where it was. The watcher does this for the replicas its config names.\n\n\
With --from-stream the replica is fed from the change stream instead of the archive, on a\n\
host without it: build the replica on the backup host (`replica create`), copy it here, and\n\
it goes on from its position. Credentials come from ROWTRAIL_STREAM_USER and _PASSWORD,\n\
_TOKEN, _NKEY or _CREDS.")]
    Apply(ApplyArgs),
    /// Show where a replica stands: position, changes behind, lag, tables.
    Status(TargetArgs),
    /// Stop applying to a replica (it keeps its state until resumed).
    Pause(TargetArgs),
    /// Resume applying to a paused replica.
    Resume(TargetArgs),
    /// Take a replica back to the state as of an earlier time (dry run unless --apply).
    #[command(after_help = "Example:\n  \
rowtrail replica rewind --to standby.db --as-of 2026-12-03T09:15:00Z --apply\n\n\
The changes applied since then are applied backwards, newest first, in one transaction; the\n\
replica is paused afterwards so it stays there (`replica resume` lets it catch up again).")]
    Rewind(RewindArgs),
}

/// Which replica.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The replica file.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
}

/// Arguments of `replica create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The replica file.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Also keep the trail as plain tables (`rowtrail_trail_<table>`).
    #[arg(long)]
    pub trail_tables: bool,
}

/// Arguments of `replica apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The replica file.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Stay this far behind the source (`90s`, `15m`, `1h`, `2d`).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Keep applying, once a second, until interrupted.
    #[arg(long)]
    pub follow: bool,
    /// Feed the replica from the change stream on this NATS server (`nats://host:4222`, or
    /// `tls://…`) instead of the archive.
    #[arg(long, value_name = "URL", conflicts_with = "delay")]
    pub from_stream: Option<String>,
    /// With --from-stream: the source's subjects, `<prefix>.<source>` as the publisher's
    /// `[stream] subject` and `source` make them (needed on the first run; recorded after).
    #[arg(long, value_name = "SUBJECTS", requires = "from_stream")]
    pub subject: Option<String>,
    /// With --from-stream: the JetStream stream (default: the one recorded, else the one that
    /// holds the subjects).
    #[arg(long, value_name = "NAME", requires = "from_stream")]
    pub stream: Option<String>,
    /// Print nothing when all is well.
    #[arg(long, short)]
    pub quiet: bool,
    /// When it builds the replica: also keep the trail as plain tables.
    #[arg(long)]
    pub trail_tables: bool,
}

/// Arguments of `replica rewind`.
#[derive(Debug, clap::Args)]
pub struct RewindArgs {
    /// The replica file.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// The time to go back to (UTC: 2026-12-03T09:15:00Z, or with an offset).
    #[arg(long, value_name = "TIME")]
    pub as_of: String,
    /// Do it (without it: say what would be done).
    #[arg(long)]
    pub apply: bool,
}

/// Arguments of `rowtrail restore`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
rowtrail restore --as-of 2026-12-03T09:15:00Z --out /tmp/app-at-0915.db\n  \
rowtrail restore --as-of seq:48211 --out at-seq.db                # after the change with seq 48211\n  \
rowtrail restore --as-of before-tx:batch-42 --out before.db       # just before that transaction\n  \
rowtrail restore --as-of 2026-12-03T09:15:00Z --tables staff,tags --out two.db\n\n\
Builds the source's captured tables as they were then: the newest baseline taken by then, and\n\
every archived change up to the last complete state before it (a seq: every change at or below\n\
it, refused inside a transaction; a transaction: everything before its first change). The\n\
result is a replica (`replica status` reads it; `replica apply` would bring it forward).")]
pub struct RestoreArgs {
    /// The moment: a time (UTC: 2026-12-03T09:15:00Z, or with an offset), seq:N, or
    /// before-tx:ID.
    #[arg(long, value_name = "WHEN")]
    pub as_of: String,
    /// Only these tables (comma-separated; default: every table with a baseline).
    #[arg(long, value_delimiter = ',', value_name = "TABLES")]
    pub tables: Vec<String>,
    /// Also keep the trail up to then as plain tables (`rowtrail_trail_<table>`).
    #[arg(long)]
    pub trail_tables: bool,
    /// The new file to build (it must not exist).
    #[arg(long, visible_alias = "to", value_name = "FILE")]
    pub out: PathBuf,
}

fn archive(cfg: &Config) -> Result<Archive> {
    Ok(Archive::open_read_only(cfg.archive()?)?)
}

/// Runs a `replica` subcommand.
pub fn run(cmd: &ReplicaCommand, cfg: &Config) -> Result<ExitCode> {
    match cmd {
        ReplicaCommand::Create(a) => {
            let archive = archive(cfg)?;
            let options = CreateOptions {
                trail_tables: a.trail_tables,
                ..CreateOptions::default()
            };
            build(&archive, &a.to, options)
        }
        ReplicaCommand::Apply(a) => apply(a, cfg),
        ReplicaCommand::Status(a) if cfg.archive_path.is_none() => remote_status(&a.to),
        ReplicaCommand::Status(a) => {
            let archive = archive(cfg)?;
            let replica = Replica::open(&a.to)?;
            let s = replica.status(&archive)?;
            outln!("replica {}", s.path.display());
            outln!("  source incarnation {}", s.incarnation);
            outln!(
                "  position: change {} (seq {}), source time {}{}",
                s.position.change_id,
                s.position.seq,
                s.position.source_at.as_deref().unwrap_or("(none yet)"),
                if s.position.consistent {
                    ""
                } else {
                    " — not yet a consistent state"
                }
            );
            match &s.archive_cut {
                Some(c) => outln!(
                    "  archive: newest cut at change {} (seq {}); {} change(s) not applied, the oldest {:.1} s old",
                    c.change_id,
                    c.seq,
                    s.behind,
                    s.lag_seconds
                ),
                None => outln!("  archive: no cut recorded yet"),
            }
            outln!("  applying: {}", if s.paused { "paused" } else { "on" });
            for (t, n) in &s.tables {
                outln!("  {t}: {n} row(s)");
            }
            Ok(ExitCode::SUCCESS)
        }
        ReplicaCommand::Pause(a) | ReplicaCommand::Resume(a) => {
            let mut replica = Replica::open(&a.to)?;
            let pause = matches!(cmd, ReplicaCommand::Pause(_));
            replica.set_paused(pause)?;
            outln!(
                "replica {} {}",
                a.to.display(),
                if pause { "paused" } else { "resumed" }
            );
            Ok(ExitCode::SUCCESS)
        }
        ReplicaCommand::Rewind(a) => {
            let archive = archive(cfg)?;
            let time = parse_time(&a.as_of)?;
            let mut replica = Replica::open(&a.to)?;
            let Some(cut) = archive.cut_as_of(replica.incarnation(), &time)? else {
                anyhow::bail!("the archive knows no complete state of the source as of {time}");
            };
            let from = replica.position().change_id;
            if cut.change_id >= from {
                outln!(
                    "replica {} stands at change {from}, not after {time}: nothing to rewind",
                    a.to.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            if !a.apply {
                outln!(
                    "would rewind {} from change {from} to change {} (seq {}, the state as of {time}), undoing the changes in between newest first; run again with --apply",
                    a.to.display(),
                    cut.change_id,
                    cut.seq
                );
                return Ok(ExitCode::SUCCESS);
            }
            replica.set_paused(true)?;
            let r = replica.rewind(&archive, &time)?;
            outln!(
                "rewound {}: {} change(s) undone; now at change {} (seq {}); paused (`rowtrail replica resume --to {0}` lets it catch up)",
                a.to.display(),
                r.applied,
                r.position.change_id,
                r.position.seq
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `rowtrail restore --as-of T --out FILE`.
pub fn restore(a: &RestoreArgs, cfg: &Config) -> Result<ExitCode> {
    let archive = archive(cfg)?;
    let as_of = AsOf::parse(&a.as_of)?;
    build(
        &archive,
        &a.out,
        CreateOptions {
            incarnation: None,
            as_of: Some(as_of),
            tables: (!a.tables.is_empty()).then(|| a.tables.clone()),
            trail_tables: a.trail_tables,
        },
    )
}

fn build(archive: &Archive, to: &std::path::Path, options: CreateOptions) -> Result<ExitCode> {
    let shown = Progress::wanted(false);
    let mut bar: Option<(String, Progress)> = None;
    let (replica, report) = replica::create(to, archive, &options, &mut |table, rows| {
        if bar.as_ref().map(|(t, _)| t.as_str()) != Some(table) {
            let p = Progress::new(shown, "loading", "rows", None);
            p.message(table.to_string());
            bar = Some((table.to_string(), p));
        }
        if let Some((_, p)) = &bar {
            p.set(rows);
        }
    })?;
    if let Some((_, p)) = bar.take() {
        p.finish();
    }
    let rows: u64 = replica.status(archive)?.tables.iter().map(|t| t.1).sum();
    outln!(
        "built {} ({} table(s), {} row(s)){}: {} change(s) applied after the baseline, at change {} (seq {}){}",
        to.display(),
        replica.tables().len(),
        rows,
        options
            .as_of
            .as_ref()
            .map(|t| format!(" as of {t}"))
            .unwrap_or_default(),
        report.applied,
        report.position.change_id,
        report.position.seq,
        if report.position.consistent {
            ""
        } else {
            " — not yet a consistent state (a table's baseline is newer than the newest cut)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn apply(a: &ApplyArgs, cfg: &Config) -> Result<ExitCode> {
    if let Some(url) = &a.from_stream {
        return apply_from_stream(a, url);
    }
    let until = match a.delay {
        Some(d) => Until::Delay(d),
        None => Until::Latest,
    };
    if !a.to.exists() {
        // The first apply builds the replica from the newest baselines.
        let options = CreateOptions {
            trail_tables: a.trail_tables,
            ..CreateOptions::default()
        };
        build(&archive(cfg)?, &a.to, options)?;
    }
    let mut replica = Replica::open(&a.to)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if a.follow {
        signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    }
    loop {
        let archive = archive(cfg)?;
        let r = replica.apply(&archive, &until)?;
        if !a.quiet && (r.applied > 0 || !a.follow) {
            outln!(
                "{}: {} change(s) applied; at change {} (seq {}){}{}",
                a.to.display(),
                r.applied,
                r.position.change_id,
                r.position.seq,
                if replica.paused() { "; paused" } else { "" },
                if r.position.consistent {
                    ""
                } else {
                    " — not yet a consistent state"
                }
            );
        }
        if !a.follow {
            return Ok(ExitCode::SUCCESS);
        }
        for _ in 0..10 {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(ExitCode::SUCCESS);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `replica apply --from-stream URL`: the replica fed from the change stream.
fn apply_from_stream(a: &ApplyArgs, url: &str) -> Result<ExitCode> {
    use rowtrail_stream::remote::{RemoteReplica, RemoteSettings};
    if !a.to.exists() {
        anyhow::bail!(
            "{} does not exist: a replica fed from the stream starts from a baseline; build it \
             where the archive is (`rowtrail replica create --to FILE`, or with --archive on a \
             copy of the archive), copy it here, and run this again",
            a.to.display()
        );
    }
    let subjects = a
        .subject
        .as_deref()
        .map(rowtrail_stream::subject::Subjects::from_filter)
        .transpose()?;
    let settings = RemoteSettings {
        url: url.to_string(),
        subjects,
        stream: a.stream.clone(),
        timeout: Duration::from_secs(10),
        ca_file: None,
        credentials: rowtrail_stream::Credentials::from_env()?,
    };
    let mut remote = RemoteReplica::open(&a.to, &settings)?;
    let say = |applied: u64, waiting: usize, r: &RemoteReplica| -> Result<()> {
        let p = r.replica().position();
        outln!(
            "{}: {applied} change(s) applied from {} ({}); at change {} (seq {}){}",
            a.to.display(),
            r.stream(),
            r.subjects().all(),
            p.change_id,
            p.seq,
            if waiting > 0 {
                format!("; {waiting} change(s) wait for the rest of their transaction")
            } else {
                String::new()
            }
        );
        Ok(())
    };
    if !a.follow {
        let r = remote.drain(Duration::from_millis(300))?;
        if !a.quiet {
            say(r.applied, r.waiting, &remote)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    // A server that is down or failing is waited for, with a capped backoff; anything else
    // (a refusal, a damaged replica) ends the command.
    let mut backoff = Duration::from_millis(100);
    let mut last_error: Option<String> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match remote.step(Duration::from_secs(1)) {
            Ok(r) => {
                if last_error.take().is_some() {
                    eprintln!("rowtrail: the stream answers again");
                }
                backoff = Duration::from_millis(100);
                if !a.quiet && r.applied > 0 {
                    say(r.applied, r.waiting, &remote)?;
                }
            }
            Err(e) if e.is_transient() => {
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    eprintln!("rowtrail: {msg}; trying again");
                    last_error = Some(msg);
                }
                let until = std::time::Instant::now() + backoff;
                while std::time::Instant::now() < until
                    && !stop.load(std::sync::atomic::Ordering::Relaxed)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `replica status` on a host without an archive: where the replica stands and the stream it
/// is fed from, as it records them.
fn remote_status(to: &std::path::Path) -> Result<ExitCode> {
    let replica = Replica::open(to)?;
    let p = replica.position();
    outln!("replica {}", to.display());
    outln!("  source incarnation {}", replica.incarnation());
    outln!(
        "  position: change {} (seq {}), source time {}{}",
        p.change_id,
        p.seq,
        p.source_at.as_deref().unwrap_or("(none yet)"),
        if p.consistent {
            ""
        } else {
            " — not yet a consistent state"
        }
    );
    match rowtrail_stream::remote::recorded(&replica)? {
        Some(r) => outln!(
            "  fed from the stream: subjects {}, stream {}, consumer {}",
            r.subjects,
            r.stream.as_deref().unwrap_or("(not yet known)"),
            r.consumer.as_deref().unwrap_or("(none yet)")
        ),
        None => outln!(
            "  not fed from the stream yet (no archive here: `replica apply --from-stream URL \
             --subject rowtrail.<source> --to {}`)",
            to.display()
        ),
    }
    outln!(
        "  applying: {}",
        if replica.paused() { "paused" } else { "on" }
    );
    Ok(ExitCode::SUCCESS)
}
