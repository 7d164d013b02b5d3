//! `rowtrail failover` and `rowtrail primary`: a replica takes over from a primary that
//! failed, and which database is the primary now.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use rowtrail_reader::archive::Archive;
use rowtrail_reader::lock::ArchiveLock;
use rowtrail_reader::ReaderError;
use rowtrail_takeover::failover::{self, Plan, Request};
use rowtrail_takeover::probe::Verdict;
use rowtrail_watcher::client;
use rowtrail_watcher::protocol::Request as WatcherRequest;

use crate::config::Config;

/// Arguments of `rowtrail failover`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
rowtrail failover                          # the plan: primary state, replicas, data-loss window\n  \
rowtrail failover --apply                  # do it: fence, drain, apply, promote\n  \
rowtrail failover --to /srv/standby/b.db --apply\n  \
rowtrail failover --force --apply          # the primary still answers: fence it and take over\n\n\
Steps: begun, fenced, drained, applied, promoted, done; each is recorded in the archive before\n\
the next, so running it again after a kill finishes the job. With a watcher running, the watcher\n\
carries it out (it holds the archive). Afterwards every command follows the new primary\n\
(`rowtrail primary` prints it); rowtrail.toml need not change.\n\n\
Exit codes: 0 done (or, without --apply, the plan would go ahead), 3 refused (the plan says why).")]
pub struct Args {
    /// The replica to promote (default: the configured replica that is most up to date).
    #[arg(long, value_name = "FILE")]
    pub to: Option<PathBuf>,
    /// Take over even though the primary still answers (it is fenced first).
    #[arg(long)]
    pub force: bool,
    /// Carry it out (without it: print the plan and change nothing).
    #[arg(long)]
    pub apply: bool,
    /// Print the plan or the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `rowtrail primary`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
rowtrail primary                 # the current primary's file or server and database\n  \
rowtrail primary --json          # with the takeover that made it primary\n\n\
For scripts: the first line is the connection target, nothing else.")]
pub struct PrimaryArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The failover request the configuration describes.
pub fn request(cfg: &Config, to: Option<PathBuf>, force: bool, automatic: bool) -> Result<Request> {
    Ok(Request {
        primary: cfg.source_spec()?,
        address: cfg.takeover.address.clone(),
        replicas: cfg.replicas.iter().map(|r| r.path.clone()).collect(),
        to,
        force,
        automatic,
        timeouts: cfg.takeover.timeouts,
        last_seen_us: None,
        batch: cfg.batch_size,
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Up => "answers (up)".into(),
        Verdict::Slow { step, detail } => format!("SLOW at {step:?}: {detail}").to_lowercase(),
        Verdict::Gone { step, detail } => {
            format!("GONE at {:?}: {detail}", step).replacen("GONE at ", "DOWN at ", 1)
        }
    }
}

fn print_plan(plan: &Plan) -> Result<()> {
    outln!(
        "primary    {} — {}",
        plan.primary,
        verdict_text(&plan.verdict)
    );
    if let Some(i) = &plan.incarnation {
        outln!("           incarnation {i}");
    }
    match &plan.last {
        Some(l) => outln!(
            "archived   up to change {} (seq {}, written {})",
            l.id,
            l.seq,
            l.at.as_deref().unwrap_or("at an unknown time")
        ),
        None => outln!("archived   nothing of this primary"),
    }
    match plan.staged {
        Some(n) => outln!(
            "staging    {n} image(s) still staged: archived before the copy takes over (nothing lost)"
        ),
        None => outln!(
            "staging    cannot be read: writes committed after the last archived change may be lost{}",
            plan.last_seen_us
                .map(|us| format!(
                    " (the primary was last seen {:.1} s ago)",
                    (rowtrail_reader::now_micros() - us) as f64 / 1e6
                ))
                .unwrap_or_default()
        ),
    }
    for c in &plan.candidates {
        let mark = if plan.chosen.as_ref() == Some(&c.path) {
            "→"
        } else {
            " "
        };
        match &c.unfit {
            None => outln!(
                "replica  {mark} {} at change {}, {} behind",
                c.path.display(),
                c.position,
                c.behind
            ),
            Some(why) => outln!(
                "replica  {mark} {} — cannot take over: {why}",
                c.path.display()
            ),
        }
    }
    if let Some(t) = &plan.resumes {
        outln!(
            "resumes    takeover {} (stopped after step {}), to {}",
            t.id,
            t.step,
            t.to_location
        );
    }
    match &plan.refused {
        Some(why) => outln!("REFUSED    {why}"),
        None => outln!(
            "plan       fence the primary, archive its staging, bring {} level, promote it; run with --apply",
            plan.chosen
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    }
    Ok(())
}

/// `rowtrail failover`.
pub fn run(args: &Args, cfg: &Config) -> Result<ExitCode> {
    let archive_path = cfg.archive()?.to_path_buf();
    let req = request(cfg, args.to.clone(), args.force, false)?;
    if !args.apply {
        let archive = Archive::open_read_only(&archive_path)?;
        let mut req = req;
        req.last_seen_us = watcher_last_seen(cfg);
        let plan = failover::plan(&archive, &req)?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print_plan(&plan)?;
        }
        return Ok(if plan.refused.is_some() {
            ExitCode::from(crate::EXIT_CONFLICT)
        } else {
            ExitCode::SUCCESS
        });
    }
    let _lock = match ArchiveLock::acquire(&archive_path) {
        Ok(l) => l,
        Err(ReaderError::Locked { .. }) => return through_watcher(args, cfg),
        Err(e) => return Err(e.into()),
    };
    let mut archive = Archive::open(&archive_path, &cfg.archive_options())?;
    let quiet = args.json;
    let outcome = failover::apply(&mut archive, &req, &mut |step| {
        if !quiet {
            eprintln!("  {step}");
        }
    });
    let outcome = match outcome {
        Ok(o) => o,
        Err(rowtrail_takeover::TakeoverError::Refused(why)) => {
            eprintln!("rowtrail: failover refused: {why}");
            return Ok(ExitCode::from(crate::EXIT_CONFLICT));
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print_outcome(&outcome)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(o: &failover::Outcome) -> Result<()> {
    let t = &o.takeover;
    outln!(
        "failover {} done: {} is the primary (incarnation {})",
        t.id,
        t.to_location,
        t.to_incarnation.as_deref().unwrap_or("?")
    );
    outln!(
        "  last change of the old primary: {} (written {}); {} archived from its staging, {} applied",
        t.last_change_id.map_or("none".into(), |i| i.to_string()),
        t.last_at.as_deref().unwrap_or("?"),
        o.drained,
        o.applied
    );
    match &o.fence_pending {
        None => outln!("  old primary {} fenced", t.from_location),
        Some(why) => outln!(
            "  old primary {} NOT fenced yet ({why}): keep clients away from it; the watcher fences it when it is reachable",
            t.from_location
        ),
    }
    match &o.baseline {
        Ok(rows) => outln!("  baseline of the new primary taken ({rows} rows)"),
        Err(e) => {
            outln!("  no baseline of the new primary ({e}): take one with `rowtrail baseline`")
        }
    }
    outln!("  every command follows the new primary now; `rowtrail primary` prints it");
    Ok(())
}

/// When a watcher runs, it holds the archive: ask it to carry the failover out.
fn through_watcher(args: &Args, cfg: &Config) -> Result<ExitCode> {
    let socket = cfg.socket()?;
    let resp = client::request(
        &socket,
        &WatcherRequest::Failover {
            to: args.to.as_ref().map(|p| p.display().to_string()),
            force: args.force,
        },
        Duration::from_secs(600),
    )?;
    if !resp.ok {
        let why = resp.error.unwrap_or_default();
        eprintln!("rowtrail: failover refused: {why}");
        return Ok(ExitCode::from(crate::EXIT_CONFLICT));
    }
    let text = resp.failover.unwrap_or_default();
    if args.json {
        outln!("{text}");
    } else if let Ok(o) = serde_json::from_str::<failover::Outcome>(&text) {
        print_outcome(&o)?;
    } else {
        outln!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// When the running watcher last saw the primary answer, if it runs.
fn watcher_last_seen(cfg: &Config) -> Option<i64> {
    let socket = cfg.socket().ok()?;
    let resp = client::request(&socket, &WatcherRequest::Status, Duration::from_secs(2)).ok()?;
    resp.status?.primary_last_seen_us
}

/// `rowtrail primary`.
pub fn primary(args: &PrimaryArgs, cfg: &Config) -> Result<ExitCode> {
    let spec = cfg.source_spec()?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "engine": spec.engine(),
                "target": spec.location(),
                "takeover": cfg.primary_takeover,
                "configured": cfg.configured_source.as_ref().map(|p| p.display().to_string())
                    .unwrap_or_else(|| spec.location()),
            }))?
        );
    } else {
        outln!("{}", spec.location());
        if let (Some(t), Some(c)) = (cfg.primary_takeover, &cfg.configured_source) {
            eprintln!(
                "(takeover {t} made it the primary; rowtrail.toml names {})",
                c.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
