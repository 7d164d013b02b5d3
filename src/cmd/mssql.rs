//! `rowtrail sql install|uninstall|check|upgrade` (and `generate` from the live catalog) on
//! SQL Server.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use rowtrail_reader::mssql::{catalog, check, install, output_clause, MssqlClient};
use rowtrail_sql::mssql::{Deployment, Options};

use crate::config::Config;

/// Progress on stderr: one line per tenth of the batches, and the last.
/// Progress of a script run batch by batch: a bar on a terminal, a line every tenth otherwise.
fn progress(what: &'static str) -> impl FnMut(usize, usize) {
    let mut shown = 0;
    let mut bar: Option<crate::progress::Progress> = None;
    let terminal = crate::progress::Progress::wanted(false);
    move |done, total| {
        if terminal {
            let b = bar.get_or_insert_with(|| {
                crate::progress::Progress::new(true, what, "batches", Some(total as u64))
            });
            b.set(done as u64);
            if done == total {
                if let Some(b) = bar.take() {
                    b.finish();
                }
            }
            return;
        }
        let step = (total / 10).max(1);
        if done == total || done >= shown + step {
            shown = done;
            eprintln!("  {what}: batch {done} of {total}");
        }
    }
}

fn connect(cfg: &Config) -> Result<MssqlClient> {
    let settings = cfg.mssql()?;
    Ok(MssqlClient::connect(&settings)?)
}

/// Installs (or refreshes) capture for the tables named, or for those already captured.
pub fn install(cfg: &Config, only: Option<&[String]>, options: &Options) -> Result<ExitCode> {
    let mut c = connect(cfg)?;
    let tables = install::tables_to_capture(&mut c, only)?;
    warn_before_install(&mut c, &tables)?;
    eprintln!(
        "installing capture on {} for {} table(s)",
        c.location(),
        tables.len()
    );
    let d = install::install(&mut c, &tables, options, &mut progress("install"))?;
    outln!(
        "capture installed on {} for {} table(s):",
        c.location(),
        d.tables.len()
    );
    for t in &d.tables {
        let key = if t.table.primary_key.is_empty() {
            "  (no primary key: multi-row updates are recorded whole, op K)"
        } else {
            ""
        };
        outln!("  {}{key}", t.table.name);
        for note in &t.notes {
            outln!("    note: {note}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `ddl` on the captured table `table` and upgrades its capture, in one transaction.
pub fn upgrade(cfg: &Config, table: &str, ddl: &str, options: &Options) -> Result<ExitCode> {
    let mut c = connect(cfg)?;
    let (old, new) =
        install::upgrade_with_ddl(&mut c, table, ddl, options, &mut progress("upgrade"))?;
    let names = |t: &rowtrail_sql::Table| -> Vec<String> {
        t.columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.sql_type))
            .collect()
    };
    let (was, is) = (names(&old), names(&new));
    outln!(
        "{} changed and its capture upgraded on {}:",
        new.name,
        c.location()
    );
    for col in is.iter().filter(|c| !was.contains(c)) {
        outln!("  now   {col}");
    }
    for col in was.iter().filter(|c| !is.contains(c)) {
        outln!("  was   {col}");
    }
    Ok(ExitCode::SUCCESS)
}

/// What the DBA should know before capture goes on: statements that use `OUTPUT` without
/// `INTO` on these tables (they fail once a trigger exists, Msg 334), INSTEAD OF triggers, and
/// a server whose `nested triggers` option is off. Warnings only; the install goes on.
fn warn_before_install(c: &mut MssqlClient, tables: &[rowtrail_sql::Table]) -> Result<()> {
    let found = output_clause::find(c, tables);
    for t in &found.tables {
        eprintln!(
            "warning: {} statement(s) seen by this database write {} with OUTPUT but no INTO;              they will fail (Msg 334) once the capture trigger exists. EF Core 7+: declare the              trigger (ToTable(t => t.HasTrigger(\"rowtrail\"))) or UseSqlOutputClause(false).",
            t.statements, t.table
        );
    }
    for why in &found.unread {
        eprintln!("note: could not look for OUTPUT without INTO in {why}");
    }
    if catalog::nested_triggers_off(c) == Some(true) {
        eprintln!(
            "warning: the server option `nested triggers` is 0: when another trigger of a captured              table writes that table, its write is not captured (see docs/sqlserver.md)"
        );
    }
    for t in tables {
        let quoted = t.name.quoted(rowtrail_sql::Dialect::Mssql);
        let instead = catalog::instead_of_triggers(c, &quoted)?;
        if !instead.is_empty() {
            eprintln!(
                "warning: {} has INSTEAD OF trigger(s) {}: capture records what they finally write,                  not the statement they replaced",
                t.name,
                instead.join(", ")
            );
        }
    }
    Ok(())
}

/// Removes capture.
pub fn uninstall(
    cfg: &Config,
    only: Option<&[String]>,
    discard_staged: bool,
    options: &Options,
) -> Result<ExitCode> {
    let mut c = connect(cfg)?;
    let removed = install::uninstall(
        &mut c,
        only,
        discard_staged,
        options,
        &mut progress("uninstall"),
    )?;
    outln!(
        "capture removed from {} for {} table(s)",
        c.location(),
        removed.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Reports drift; exits 1 when there is any. With `write_upgrade`, writes an upgrade script per
/// table whose columns changed.
pub fn check(cfg: &Config, write_upgrade: Option<&Path>, options: &Options) -> Result<ExitCode> {
    let mut c = connect(cfg)?;
    let observed = check::observe(&mut c)?;
    let mut findings = 0;
    for o in &observed {
        let found = check::drift(o)?;
        findings += found.len();
        for f in &found {
            outln!("DRIFT  {}: {}\n       fix: {}", f.table, f.problem, f.fix);
        }
        if let (Some(dir), Some(live)) = (write_upgrade, &o.live) {
            if found.iter().any(|f| f.needs_upgrade) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let script = Deployment::upgrade(&o.captured, live, options)?;
                let slug: String = o
                    .captured
                    .name
                    .to_string()
                    .chars()
                    .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
                    .collect();
                let path = dir.join(format!("rowtrail-upgrade-{slug}.sql"));
                std::fs::write(&path, script.render())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                outln!(
                    "       wrote {} (review it, then: sqlcmd -b -I -i {})",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    let live_tables = catalog::user_tables(&mut c)?.len();
    if findings == 0 {
        outln!(
            "no drift: {} captured table(s) on {} match their triggers, staging tables and definitions ({} user table(s) in the database)",
            observed.len(),
            c.location(),
            live_tables
        );
        Ok(ExitCode::SUCCESS)
    } else {
        outln!("{findings} problem(s) on {}", c.location());
        Ok(ExitCode::from(1))
    }
}

/// The deployment for tables read from the live catalog (`sql generate --engine mssql` without
/// `--from-ddl`).
pub fn deployment_from_catalog(
    cfg: &Config,
    only: Option<&[String]>,
    options: &Options,
) -> Result<Deployment> {
    let mut c = connect(cfg)?;
    let tables = install::tables_to_capture(&mut c, only)?;
    Ok(Deployment::generate(&tables, options)?)
}
