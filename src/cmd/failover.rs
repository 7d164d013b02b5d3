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
    // The archive records where the new primary is, and every later command, from any folder,
    // opens it there: a relative --to is made absolute here.
    let to = match to {
        Some(p) if p.is_relative() => Some(std::env::current_dir()?.join(p)),
        other => other,
    };
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
            // The watcher runs in another folder: send the replica's absolute path.
            to: request(cfg, args.to.clone(), args.force, false)?
                .to
                .map(|p| p.display().to_string()),
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

/// Arguments of `rowtrail handback`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
rowtrail handback --to /srv/app/app.db                        # the plan: changes, conflicts, orphans\n  \
rowtrail handback --to /srv/app/app.db --apply                # do it (refused if there are conflicts)\n  \
rowtrail handback --to /srv/app/app.db --apply --conflicts keep\n  \
rowtrail handback --to /srv/app/app.db --apply --conflicts take-promoted\n\n\
The promoted copy is fenced for the handback (writes to it fail until it is done), its changes\n\
since the failover are applied to the repaired primary with undo's guards, capture continues\n\
there as a new incarnation, and the promoted copy is rebuilt as a replica. Orphans (writes the\n\
old primary made that never reached the archive) are archived and listed; conflicts are listed\n\
with their old, new and current rows. Steps: begun, fenced, drained, applied, promoted, done;\n\
running it again after a kill finishes the job.\n\n\
Exit codes: 0 done (or, without --apply, it would go ahead without conflicts), 3 refused or\n\
conflicts to decide (the plan lists them).")]
pub struct HandbackArgs {
    /// The repaired old primary.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// What to do with rows the repaired primary holds otherwise than the promoted side
    /// expects: keep them (listed) or take the promoted side's.
    #[arg(long, value_name = "RULE", value_parser = ["keep", "take-promoted"])]
    pub conflicts: Option<String>,
    /// Carry it out (without it: print the plan and change nothing).
    #[arg(long)]
    pub apply: bool,
    /// Print the plan or the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The handback request the configuration describes.
pub fn handback_request(
    cfg: &Config,
    to: PathBuf,
    conflicts: Option<&str>,
) -> Result<rowtrail_takeover::handback::Request> {
    use rowtrail_takeover::handback::ConflictRule;
    let to = if to.is_absolute() {
        to
    } else {
        std::env::current_dir()?.join(to)
    };
    Ok(rowtrail_takeover::handback::Request {
        primary: cfg.source_spec()?,
        to,
        conflicts: match conflicts {
            None => None,
            Some("keep") => Some(ConflictRule::Keep),
            Some("take-promoted") => Some(ConflictRule::TakePromoted),
            Some(other) => anyhow::bail!("--conflicts {other:?}: write keep or take-promoted"),
        },
        batch: cfg.batch_size,
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

fn images(columns: &[String], row: &Option<Vec<String>>) -> String {
    match row {
        None => "(no row)".into(),
        Some(values) => columns
            .iter()
            .zip(values)
            .map(|(c, v)| format!("{c}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn print_conflicts(conflicts: &[rowtrail_takeover::handback::Conflict]) -> Result<()> {
    for c in conflicts {
        outln!(
            "conflict   change {} on {}{}",
            c.change,
            c.table,
            if c.taken {
                " — made equal to the promoted side"
            } else {
                " — left as the repaired primary holds it"
            }
        );
        outln!("           old      {}", images(&c.columns, &c.old));
        outln!("           new      {}", images(&c.columns, &c.new));
        outln!("           current  {}", images(&c.columns, &c.current));
    }
    Ok(())
}

fn print_orphans(orphans: &[rowtrail_takeover::handback::Orphan]) -> Result<()> {
    for o in orphans {
        outln!(
            "orphan     change {} ({} on {}, written {}){}",
            o.change,
            o.op,
            o.table,
            o.at.as_deref().unwrap_or("?"),
            if o.also_changed_by.is_empty() {
                String::new()
            } else {
                format!(
                    " — the promoted side changed the same row too: change(s) {}",
                    o.also_changed_by
                        .iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    }
    Ok(())
}

/// `rowtrail handback`.
pub fn handback(args: &HandbackArgs, cfg: &Config) -> Result<ExitCode> {
    use rowtrail_takeover::handback;
    let archive_path = cfg.archive()?.to_path_buf();
    let req = handback_request(cfg, args.to.clone(), args.conflicts.as_deref())?;
    if !args.apply {
        let archive = Archive::open_read_only(&archive_path)?;
        let plan = handback::plan(&archive, &req)?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            outln!("promoted   {} (the primary now)", plan.promoted);
            outln!("repaired   {}", plan.to);
            outln!(
                "changes    {} made on the promoted side since the failover, to apply with guards",
                plan.changes
            );
            if plan.staged_orphans > 0 {
                outln!(
                    "orphans    {} image(s) in the repaired primary's staging never reached the archive: archived and listed by --apply",
                    plan.staged_orphans
                );
            }
            print_orphans(&plan.orphans)?;
            print_conflicts(&plan.conflicts)?;
            match &plan.refused {
                Some(why) => outln!("REFUSED    {why}"),
                None if !plan.conflicts.is_empty() && req.conflicts.is_none() => outln!(
                    "DECIDE     {} conflict(s): run with --apply and --conflicts keep or --conflicts take-promoted",
                    plan.conflicts.len()
                ),
                None => outln!("plan       fence the promoted copy, archive both stagings, apply, capture again on {}, rebuild the promoted copy as a replica; run with --apply", plan.to),
            }
        }
        let blocked =
            plan.refused.is_some() || (!plan.conflicts.is_empty() && req.conflicts.is_none());
        return Ok(if blocked {
            ExitCode::from(crate::EXIT_CONFLICT)
        } else {
            ExitCode::SUCCESS
        });
    }
    let _lock = match ArchiveLock::acquire(&archive_path) {
        Ok(l) => l,
        Err(ReaderError::Locked { .. }) => {
            let socket = cfg.socket()?;
            let resp = client::request(
                &socket,
                &WatcherRequest::Handback {
                    to: req.to.display().to_string(),
                    conflicts: args.conflicts.clone(),
                },
                Duration::from_secs(3600),
            )?;
            if !resp.ok {
                eprintln!(
                    "rowtrail: handback refused: {}",
                    resp.error.unwrap_or_default()
                );
                return Ok(ExitCode::from(crate::EXIT_CONFLICT));
            }
            let text = resp.failover.unwrap_or_default();
            match serde_json::from_str::<handback::Outcome>(&text) {
                Ok(o) if !args.json => print_handback(&o)?,
                _ => outln!("{text}"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    let mut archive = Archive::open(&archive_path, &cfg.archive_options())?;
    let quiet = args.json;
    let outcome = match handback::apply(&mut archive, &req, &mut |step| {
        if !quiet {
            eprintln!("  {step}");
        }
    }) {
        Ok(o) => o,
        Err(rowtrail_takeover::TakeoverError::Refused(why)) => {
            eprintln!("rowtrail: handback refused: {why}");
            return Ok(ExitCode::from(crate::EXIT_CONFLICT));
        }
        Err(e) => return Err(e.into()),
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        print_handback(&outcome)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_handback(o: &rowtrail_takeover::handback::Outcome) -> Result<()> {
    let t = &o.takeover;
    outln!(
        "handback {} done: {} is the primary again (incarnation {}); {} change(s) applied",
        t.id,
        t.to_location,
        t.to_incarnation.as_deref().unwrap_or("?"),
        o.applied
    );
    print_orphans(&o.orphans)?;
    print_conflicts(&o.conflicts)?;
    match &o.demoted {
        Ok(msg) => outln!("  {msg}"),
        Err(e) => outln!(
            "  the promoted copy was not rebuilt as a replica ({e}): build one with `rowtrail replica create --to {}`",
            t.from_location
        ),
    }
    if !o.level {
        outln!(
            "  the primary differs from the promoted copy's last state (kept conflicts, orphans): rebuild the other replicas with `rowtrail replica create`"
        );
    }
    outln!("  every command follows {} again", t.to_location);
    Ok(())
}
