//! `rowtrail undo` and `rowtrail redo`: guarded inverse statements, dry run by default.

use std::process::ExitCode;

use anyhow::Result;
use rowtrail_reader::archive::Archive;
use rowtrail_restore::plan::Mode;
use rowtrail_restore::run::{Actor, Prepared};
use rowtrail_restore::scope::Scope;
use rowtrail_restore::session::Session;
use rowtrail_restore::RestoreError;
use serde_json::json;

use crate::config::Config;

const UNDO_HELP: &str = "Examples:
  rowtrail undo --last 3 --table staff            # show the plan and the SQL; change nothing
  rowtrail undo --last 3 --table staff --apply    # run it, in one transaction
  rowtrail undo --tx 81723 --apply
  rowtrail undo --user bob --since 2026-11-21T14:05:00Z --apply   # what bob did after 14:05
  rowtrail undo --table staff --key 3 --last 1 --cascade
  rowtrail undo --change 118 120 --script-only > undo.sql
  sqlite3 -bail app.db < undo.sql                  # the script runs by hand too
  sqlcmd -b -I -S db1 -d app -i undo.sql           # (SQL Server sources)
  rowtrail undo --list                             # the undo journal

Newest first. Each statement applies only if the row still equals the archived after-image
(a re-insert: only if the key is free). Later changes that depend on the ones in scope are
conflicts: by default the undo is refused (exit code 3) with each conflicting change named;
--cascade undoes them too, --skip-conflicts leaves those rows alone, --force overrides.
Changes already undone, and the undo's own writes, are never selected.";

/// How conflicts are handled (one of).
#[derive(Debug, Clone, Copy, Default, clap::Args)]
#[group(multiple = false)]
pub struct ModeArgs {
    /// Also undo the later changes that depend on those in scope, newest first.
    #[arg(long)]
    pub cascade: bool,
    /// Leave rows with conflicts alone; undo the rest.
    #[arg(long)]
    pub skip_conflicts: bool,
    /// Undo anyway: make each row equal its earlier image whatever it is now.
    #[arg(long)]
    pub force: bool,
}

impl ModeArgs {
    fn mode(&self) -> Mode {
        match (self.cascade, self.skip_conflicts, self.force) {
            (true, _, _) => Mode::Cascade,
            (_, true, _) => Mode::Skip,
            (_, _, true) => Mode::Force,
            _ => Mode::Refuse,
        }
    }
}

/// How the plan is shown.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct OutputArgs {
    /// Run the plan (default: only show it).
    #[arg(long)]
    pub apply: bool,
    /// Print only the SQL script.
    #[arg(long, conflicts_with = "apply")]
    pub script_only: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// SQL Server: how long each batch of the undo may run before it is cancelled and the whole
    /// undo rolled back (seconds; 0: no limit). Default: `[source] command_timeout_seconds`, 30.
    #[arg(long, value_name = "SECS")]
    pub command_timeout: Option<u64>,
}

/// Arguments of `rowtrail undo`.
#[derive(Debug, clap::Args)]
#[command(after_help = UNDO_HELP)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["last", "tx", "statement", "since", "after_change", "change", "list"])))]
pub struct Args {
    /// The last N changes (within --table/--key/--user when given).
    #[arg(long, value_name = "N")]
    pub last: Option<u64>,
    /// Every change of this transaction.
    #[arg(long, value_name = "ID")]
    pub tx: Option<String>,
    /// With --tx, on SQL Server: the transaction of that id under way around this UTC time
    /// (the server numbers transactions anew after a restart, so one id can name several).
    #[arg(long, value_name = "TIME", requires = "tx")]
    pub tx_at: Option<String>,
    /// Every change of this statement.
    #[arg(long, value_name = "ID")]
    pub statement: Option<String>,
    /// Everything at or after this UTC time: point-in-time repair.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Everything archived after this archive change id.
    #[arg(long, value_name = "ID")]
    pub after_change: Option<i64>,
    /// These archive change ids (`--change 118 120`, or the flag repeated).
    #[arg(long, value_name = "ID", num_args = 1..)]
    pub change: Vec<i64>,
    /// Only this table.
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// The table's schema (SQL Server).
    #[arg(long, value_name = "NAME")]
    pub schema: Option<String>,
    /// Only this row of --table (one value per key column, in key order).
    #[arg(long, value_name = "VALUE", requires = "table")]
    pub key: Vec<String>,
    /// Only changes by this login.
    #[arg(long, value_name = "LOGIN")]
    pub user: Option<String>,
    /// List the undo journal's runs instead.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub mode: ModeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Arguments of `rowtrail redo`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rowtrail undo --list              # find the run\n  rowtrail redo --run 4             # show the plan and the SQL\n  rowtrail redo --run 4 --apply\n\nRe-applies what one undo run undid, oldest first, with the same guards: each row must still\nequal its archived before-image (an insert: its key must be free)."
)]
pub struct RedoArgs {
    /// The undo run to re-apply (see `rowtrail undo --list`).
    #[arg(long, value_name = "ID")]
    pub run: i64,
    /// Leave rows with conflicts alone.
    #[arg(long, conflicts_with = "force")]
    pub skip_conflicts: bool,
    /// Re-apply anyway.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Arguments of `rowtrail reapply`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rowtrail reapply                  # the plan and the SQL: what the archive holds after the backup\n  rowtrail reapply --apply\n  rowtrail reapply --incarnation 5f0c… --after seq:48211 --apply   # after an attempt that failed\n\nFor a SQLite source restored from an old backup: re-applies, oldest first, every change the\narchive holds of it after the backup point (its own sequence value: the last seq it had taken\nwhen the backup was made), each guarded like a redo (the row must still be what the change\nfound). With --apply the source first gets a new incarnation (its sequence went back with the\nrestore, so what it stages from now on is archived as a new source, see docs/archive.md), then\nthe changes are applied in one transaction and journaled as a redo run."
)]
pub struct ReapplyArgs {
    /// The incarnation the restored source had (default: the one it has now).
    #[arg(long, value_name = "ID")]
    pub incarnation: Option<String>,
    /// The backup point, as seq:N: the changes above it are re-applied (default: the source's
    /// own sequence value).
    #[arg(long, value_name = "seq:N")]
    pub after: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `rowtrail reapply`.
pub fn reapply(args: &ReapplyArgs, cfg: &Config) -> Result<ExitCode> {
    let path = cfg.source()?;
    let location = path.display().to_string();
    let conn = rusqlite::Connection::open(path)?;
    let current = rowtrail_reader::sqlite::catalog::incarnation(&conn, &location)?
        .ok_or_else(|| anyhow::anyhow!("{location} has no rowtrail capture installed"))?;
    let from = args.incarnation.clone().unwrap_or_else(|| current.clone());
    let after = match &args.after {
        Some(text) => text
            .trim()
            .strip_prefix("seq:")
            .and_then(|n| n.trim().parse::<i64>().ok())
            .ok_or_else(|| anyhow::anyhow!("--after {text:?}: give the backup point as seq:N"))?,
        None if from == current => {
            rowtrail_reader::sqlite::staging::sequence_value(&conn, &location)?
        }
        None => anyhow::bail!(
            "--incarnation {from} is not the source's own ({current}): give the backup point \
             too, as --after seq:N"
        ),
    };
    // Nothing is changed when there is nothing to re-apply (or the point is refused).
    let waiting = rowtrail_restore::session::Session::dry_run(cfg.archive()?, &cfg.source_spec()?)?
        .prepare_reapply(&from, after, Mode::Refuse)?
        .selected;
    if waiting == 0 {
        outln!(
            "nothing to re-apply: the archive holds no change of source {from} after seq {after}"
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.output.apply && from == current {
        use rowtrail_reader::source::Source as _;
        let staged = rowtrail_reader::sqlite::SqliteSource::open(path)?.staged_count()?;
        if staged > 0 {
            anyhow::bail!(
                "{staged} change image(s) are staged in {location} (staged when the backup was \
                 made; the archive holds them already): run `rowtrail read` first, which \
                 recognises and removes them, then re-apply"
            );
        }
        let renewed = rowtrail_reader::sqlite::catalog::renew_incarnation(&conn, &location)?;
        eprintln!(
            "the source now has incarnation {renewed} (it was {from}): what it stages from now on \
             is archived as a new source. Should this re-apply fail, run it again with \
             --incarnation {from} --after seq:{after}"
        );
    }
    drop(conn);
    execute(cfg, &args.output, |session| {
        session.prepare_reapply(&from, after, Mode::Refuse)
    })
}

fn actor() -> Actor {
    Actor {
        login: rowtrail_reader::operator::login().unwrap_or_else(|| "rowtrail-undo".into()),
        host: rowtrail_reader::operator::host(),
    }
}

/// Runs `rowtrail undo`.
pub fn run(args: &Args, cfg: &Config) -> Result<ExitCode> {
    if args.list {
        return list(cfg);
    }
    let scope = Scope {
        last: args.last,
        tx: args.tx.clone(),
        tx_at: args.tx_at.clone(),
        statement: args.statement.clone(),
        since: args.since.clone(),
        after_change: args.after_change,
        changes: args.change.clone(),
        table: args.table.clone(),
        schema: args.schema.clone(),
        key: args.key.clone(),
        user: args.user.clone(),
    };
    let mode = args.mode.mode();
    execute(cfg, &args.output, |session| {
        session.prepare_undo(&scope, mode)
    })
}

/// Runs `rowtrail redo`.
pub fn redo(args: &RedoArgs, cfg: &Config) -> Result<ExitCode> {
    let mode = if args.force {
        Mode::Force
    } else if args.skip_conflicts {
        Mode::Skip
    } else {
        Mode::Refuse
    };
    execute(cfg, &args.output, |session| {
        session.prepare_redo(args.run, mode)
    })
}

fn execute(
    cfg: &Config,
    output: &OutputArgs,
    prepare: impl Fn(&Session) -> Result<Prepared, RestoreError>,
) -> Result<ExitCode> {
    let mut spec = cfg.source_spec()?;
    match (output.command_timeout, &mut spec) {
        (Some(secs), rowtrail_reader::source::SourceSpec::Mssql(settings)) => {
            settings.command_timeout = crate::config::command_timeout(Some(secs));
        }
        (Some(_), _) => anyhow::bail!(
            "--command-timeout is for SQL Server sources (a SQLite undo waits for locks up to its busy timeout)"
        ),
        (None, _) => {}
    }
    let mut session = if output.apply {
        let session = Session::to_apply(cfg.archive()?, &cfg.archive_options(), &spec)?;
        for (id, committed) in session.settled() {
            eprintln!(
                "settled interrupted run {id}: {}",
                if *committed {
                    "it had committed (applied)"
                } else {
                    "it never committed (abandoned)"
                }
            );
        }
        session
    } else {
        Session::dry_run(cfg.archive()?, &spec)?
    };
    let prepared = prepare(&session)?;
    let plan = &prepared.plan;
    let kind = plan.kind.word();
    let script = session.script(&prepared)?;
    if output.script_only {
        out!("{script}");
        return Ok(if plan.refused() {
            ExitCode::from(crate::EXIT_CONFLICT)
        } else {
            ExitCode::SUCCESS
        });
    }
    if output.json && !output.apply {
        let steps: Vec<_> = plan
            .steps
            .iter()
            .map(|s| json!({ "change": rowtrail_restore::conflict::ChangeRef::of(&s.change), "action": s.step().action() }))
            .collect();
        outln!(
            "{}",
            json!({
                "kind": kind, "mode": plan.mode, "selected": prepared.selected, "steps": steps,
                "conflicts": plan.conflicts, "cascaded": plan.cascaded, "skipped": plan.skipped,
                "refused": plan.refused(), "script": script,
            })
        );
        return Ok(if plan.refused() {
            ExitCode::from(crate::EXIT_CONFLICT)
        } else {
            ExitCode::SUCCESS
        });
    }
    outln!(
        "{kind} plan: {} change(s) selected, {} step(s), mode {}{}{}",
        prepared.selected,
        plan.steps.len(),
        plan.mode.word(),
        if plan.cascaded.is_empty() {
            String::new()
        } else {
            format!(
                ", {} dependent change(s) added by cascade",
                plan.cascaded.len()
            )
        },
        if plan.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} change(s) skipped for conflicts", plan.skipped.len())
        },
    );
    for (n, s) in plan.steps.iter().enumerate() {
        outln!("  {:>4}. {}", n + 1, s.comment());
    }
    if !plan.conflicts.is_empty() && !plan.refused() {
        outln!(
            "{}",
            rowtrail_restore::conflict::describe_found(&plan.conflicts, plan.mode)
        );
    }
    if plan.refused() {
        eprintln!("{}", RestoreError::Conflicts(plan.conflicts.clone()));
        return Ok(ExitCode::from(crate::EXIT_CONFLICT));
    }
    if plan.steps.is_empty() {
        outln!("nothing to {kind}");
        return Ok(ExitCode::SUCCESS);
    }
    if !output.apply {
        if session.pending()? {
            outln!("note: an interrupted undo or redo is pending; --apply settles it first, and the plan may change");
        }
        // Names in the script are exact SQL; printed for people, their control characters are
        // shown escaped (`--script-only` writes the exact script).
        let shown = printable_script(&script);
        outln!("\n{shown}");
        if shown != script {
            outln!(
                "-- the script holds control characters in names or values, shown escaped above; \
                 `--script-only` writes it exactly"
            );
        }
        outln!("-- dry run: nothing was changed; add --apply to run it");
        return Ok(ExitCode::SUCCESS);
    }
    let bar = crate::progress::Progress::new(
        crate::progress::Progress::wanted(false) && plan.steps.len() >= 10_000,
        kind,
        "steps",
        Some(plan.steps.len() as u64),
    );
    let outcome = session.execute(&prepared, &actor(), &mut |done| bar.set(done as u64));
    bar.finish();
    match outcome {
        Ok(Some((r, results))) => {
            let count = |w: &str| results.iter().filter(|x| x.outcome.word() == w).count();
            let carry = match r.source_tx {
                Some(tx) => format!("carry the source transaction id {tx}"),
                None => format!("carry the transaction label {}", r.tx_tag),
            };
            outln!(
                "{kind} run {} applied: {} applied, {} forced, {} skipped; its writes {carry}",
                r.id,
                count("applied"),
                count("forced"),
                count("skipped"),
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            outln!("nothing to {kind}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_conflict() => {
            eprintln!("rowtrail: {e}");
            Ok(ExitCode::from(crate::EXIT_CONFLICT))
        }
        Err(e) => Err(e.into()),
    }
}

fn list(cfg: &Config) -> Result<ExitCode> {
    let archive = Archive::open_read_only(cfg.archive()?)?;
    let runs = archive.runs(None)?;
    if runs.is_empty() {
        outln!("the undo journal is empty");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:>5}  {:<5} {:<10} {:<8} {:>6}  {:<10} SCOPE",
        "RUN",
        "KIND",
        "STATE",
        "MODE",
        "ITEMS",
        "TX LABEL"
    );
    for r in runs {
        let items = archive.run_items(r.id)?.len();
        // What `audit --tx` finds the run's writes by: its tag, or on SQL Server its
        // transaction id.
        let label = match r.source_tx {
            Some(tx) => tx.to_string(),
            None => r.tx_tag.clone(),
        };
        outln!(
            "{:>5}  {:<5} {:<10} {:<8} {:>6}  {:<10} {}",
            r.id,
            r.kind.word(),
            r.state.word(),
            r.mode,
            items,
            label,
            r.scope
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `script` with every control character but line breaks and tabs shown as an escape.
fn printable_script(script: &str) -> String {
    script
        .split('\n')
        .map(|line| {
            line.split('\t')
                .map(|part| rowtrail_sql::printable::printable(part).into_owned())
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
