//! `rowtrail sql generate|install|uninstall|check|upgrade`: the capture scripts, drift, and
//! changing a captured SQL Server table.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use rowtrail_reader::sqlite::catalog::sqlite_tables_from_ddl;
use rowtrail_reader::sqlite::SqliteSource;
use rowtrail_sql::sqlite;

use crate::config::{Config, Engine};

/// `rowtrail sql …`
#[derive(Debug, clap::Subcommand)]
pub enum SqlCommand {
    /// Write the install and uninstall scripts, for review.
    #[command(
        after_help = "Examples:\n  rowtrail sql generate                      # install script of the configured source, to stdout\n  rowtrail sql generate --out scripts/       # install.sql and uninstall.sql\n  rowtrail sql generate --from-ddl schema.sql --tables orders,customers"
    )]
    Generate(GenerateArgs),
    /// Install capture on the configured source (idempotent).
    #[command(
        after_help = "Every table that cannot be captured as it is is reported at once, and nothing is\n\
installed; --skip-uncapturable installs the others and lists those left out.\n\n\
Examples:\n  rowtrail sql install\n  rowtrail sql install --tables orders,customers\n  rowtrail sql install --skip-uncapturable"
    )]
    Install(InstallArgs),
    /// Remove capture from the configured source.
    Uninstall(UninstallArgs),
    /// Find drift between the schema and its capture and say what fixes it; exits 1 on drift.
    /// SQL Server: trigger missing, disabled or altered; staging not matching; a captured table
    /// dropped or changed. SQLite: columns added or renamed, a table renamed, dropped or
    /// rebuilt, tables not captured.
    #[command(
        after_help = "On SQLite, the reader (`rowtrail read`, or a running watcher) follows the changes it can on\n\
its own; `sql check` also lists what the archive's schema log recorded of them.\n\n\
Examples:\n  rowtrail sql check\n  rowtrail sql check --write-upgrade upgrades/   # SQL Server: upgrade scripts for tables whose columns changed"
    )]
    Check(CheckArgs),
    /// SQL Server: change a captured table and upgrade its capture in one transaction (the
    /// capture trigger is dropped, your DDL runs, staging and the trigger follow the new
    /// definition). The DDL guard refuses such changes made any other way.
    #[command(
        after_help = "Examples:\n  rowtrail sql upgrade --table Sales.Orders --ddl widen-comment.sql\n\nwiden-comment.sql holds your ALTER TABLE (GO-separated batches; no COMMIT or ROLLBACK)."
    )]
    Upgrade(UpgradeArgs),
    /// SQLite: change a captured table's schema and upgrade its capture in one transaction.
    #[command(
        after_help = "The statements run with the table's capture triggers removed (so DROP COLUMN works) and\n\
capture is made again for the table as they leave it, all in one transaction: no change is\n\
captured by the old capture after the schema changed. The table's staged changes must be\n\
archived first; with a watcher running that takes moments, otherwise run `rowtrail read`.\n\n\
Examples:\n  rowtrail sql alter --table staff \"ALTER TABLE staff ADD COLUMN phone TEXT\"\n  rowtrail sql alter --table staff \"ALTER TABLE staff DROP COLUMN fax\"\n  rowtrail sql alter --table staff \"ALTER TABLE staff RENAME TO employees\""
    )]
    Alter(AlterArgs),
}

/// Arguments of `sql upgrade`.
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// The captured table to change (`schema.table`).
    #[arg(long, value_name = "NAME")]
    pub table: String,
    /// The DDL to run on it (`ALTER TABLE …`, `EXEC sp_rename …`), as a sqlcmd script.
    #[arg(long, value_name = "FILE")]
    pub ddl: PathBuf,
}

/// Arguments of `sql check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Write an upgrade script into this folder for each table whose columns changed.
    #[arg(long, value_name = "DIR")]
    pub write_upgrade: Option<PathBuf>,
}

/// Arguments of `sql alter`.
#[derive(Debug, Clone, clap::Args)]
pub struct AlterArgs {
    /// The captured table the statements change.
    #[arg(long, value_name = "NAME")]
    pub table: String,
    /// The statements (no BEGIN or COMMIT: they run inside rowtrail's transaction).
    #[arg(value_name = "SQL")]
    pub sql: String,
    /// How long to wait for the table's staged changes to be archived, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub wait: u64,
}

/// Arguments of `sql install`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub tables: TablesArgs,
    /// SQLite: install the tables that can be captured and list the others, instead of
    /// installing nothing when any table cannot be captured.
    #[arg(long)]
    pub skip_uncapturable: bool,
    /// Do not take a baseline of the captured tables into the archive after the install
    /// (`rowtrail baseline` takes one later; replicas start from one).
    #[arg(long)]
    pub no_baseline: bool,
}

/// Which tables.
#[derive(Debug, Clone, clap::Args)]
pub struct TablesArgs {
    /// Only these tables (comma-separated); default: every table.
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    pub tables: Vec<String>,
    /// One table by its exact name (repeatable; for names holding commas).
    #[arg(long = "table", value_name = "NAME")]
    pub table: Vec<String>,
}

impl TablesArgs {
    fn selected(&self) -> Option<Vec<String>> {
        let all: Vec<String> = self.tables.iter().chain(&self.table).cloned().collect();
        (!all.is_empty()).then_some(all)
    }
}

/// Arguments of `sql generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Target engine (default: the configured source's).
    #[arg(long, value_enum)]
    pub engine: Option<Engine>,
    /// Read table definitions from a CREATE TABLE script instead of the source.
    #[arg(long, value_name = "FILE")]
    pub from_ddl: Option<PathBuf>,
    #[command(flatten)]
    pub tables: TablesArgs,
    /// SQLite: write the scripts for the tables that can be captured, listing the others on
    /// stderr, instead of refusing when any table cannot be captured.
    #[arg(long)]
    pub skip_uncapturable: bool,
    /// Write install.sql and uninstall.sql into this folder instead of printing install.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// SQL Server: also write the grants for the reader's login (SELECT and DELETE on staging).
    #[arg(long, value_name = "LOGIN")]
    pub reader_login: Option<String>,
    /// SQL Server: the oldest server version the scripts must run on.
    #[arg(long, value_enum, default_value = "2016")]
    pub target: MssqlTarget,
}

/// SQL Server versions the T-SQL may target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MssqlTarget {
    /// SQL Server 2016 or later (transaction id from CURRENT_TRANSACTION_ID()).
    #[value(name = "2016")]
    Sql2016,
    /// SQL Server 2012 or 2014 (transaction id only with VIEW SERVER STATE).
    #[value(name = "2012")]
    Sql2012,
}

/// Arguments of `sql uninstall`.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub tables: TablesArgs,
    /// Drop staged changes that no reader has archived yet (they are lost).
    #[arg(long)]
    pub discard_staged: bool,
}

/// The version written into script headers.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs a `sql` subcommand.
pub fn run(cmd: &SqlCommand, cfg: &Config) -> Result<ExitCode> {
    match cmd {
        SqlCommand::Generate(a) => generate(a, cfg),
        SqlCommand::Install(a) if cfg.engine == Engine::Mssql => {
            let code = super::mssql::install(
                cfg,
                a.tables.selected().as_deref(),
                &mssql_options(MssqlTarget::Sql2016),
            )?;
            if !a.no_baseline {
                baseline_after_install(cfg, true);
            }
            Ok(code)
        }
        SqlCommand::Uninstall(a) if cfg.engine == Engine::Mssql => super::mssql::uninstall(
            cfg,
            a.tables.selected().as_deref(),
            a.discard_staged,
            &mssql_options(MssqlTarget::Sql2016),
        ),
        SqlCommand::Upgrade(a) => {
            if cfg.engine != Engine::Mssql {
                bail!("`sql upgrade` changes a captured SQL Server table; on SQLite, use `rowtrail sql alter --table NAME \"ALTER TABLE …\"`");
            }
            let ddl = std::fs::read_to_string(&a.ddl)
                .with_context(|| format!("cannot read {}", a.ddl.display()))?;
            super::mssql::upgrade(cfg, &a.table, &ddl, &mssql_options(MssqlTarget::Sql2016))
        }
        SqlCommand::Check(_) if cfg.engine == Engine::Sqlite => check_sqlite(cfg),
        SqlCommand::Alter(a) => {
            let path = cfg.source()?;
            let done = SqliteSource::alter(
                path,
                &a.table,
                &a.sql,
                std::time::Duration::from_secs(a.wait),
            )?;
            outln!(
                "{}: {}",
                rowtrail_sql::printable::printable(&done.table),
                done.detail
            );
            Ok(ExitCode::SUCCESS)
        }
        SqlCommand::Check(a) => super::mssql::check(
            cfg,
            a.write_upgrade.as_deref(),
            &mssql_options(MssqlTarget::Sql2016),
        ),
        SqlCommand::Install(a) => install_sqlite(a, cfg),
        SqlCommand::Uninstall(a) => {
            let path = cfg.source()?;
            let removed = SqliteSource::uninstall(
                path,
                a.tables.selected().as_deref(),
                a.discard_staged,
                VERSION,
            )?;
            outln!(
                "capture removed from {} for {} table(s)",
                path.display(),
                removed.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `sql check` on a SQLite source: the drift now, and what the archive's schema log recorded.
fn check_sqlite(cfg: &Config) -> Result<ExitCode> {
    let path = cfg.source()?;
    let drift = SqliteSource::drift(path)?;
    for d in &drift {
        outln!("DRIFT  {}\n       fix: {}", d.problem(), d.fix());
    }
    let archive = cfg.archive()?;
    if archive.exists() {
        if let Ok(archive) = rowtrail_reader::archive::Archive::open_read_only(archive) {
            let incarnation = SqliteSource::open(path).ok().map(|s| {
                rowtrail_reader::source::Source::info(&s)
                    .incarnation
                    .clone()
            });
            for e in archive.schema_events(incarnation.as_deref(), 0)? {
                outln!("FOLLOWED  {} ({})", e.summary(), e.kind.word());
            }
        }
    }
    if drift.is_empty() {
        outln!(
            "no drift: every captured table of {} matches its capture",
            path.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        outln!("{} problem(s) on {}", drift.len(), path.display());
        Ok(ExitCode::from(1))
    }
}

/// `sql install` on a SQLite source: every refusal reported at once, the rest installed only
/// with `--skip-uncapturable`.
fn install_sqlite(a: &InstallArgs, cfg: &Config) -> Result<ExitCode> {
    let path = cfg.source()?;
    let only = a.tables.selected();
    let survey = SqliteSource::survey(path, only.as_deref())?;
    for name in &survey.reserved {
        eprintln!(
            "note: table {name:?} is not captured: names starting with rowtrail_ are rowtrail's own; rename the table to capture it"
        );
    }
    if !survey.refused.is_empty() && !a.skip_uncapturable {
        return Err(rowtrail_reader::ReaderError::Uncapturable {
            location: path.display().to_string(),
            capturable: survey.tables.len(),
            refused: survey.refused,
        }
        .into());
    }
    if survey.tables.is_empty() {
        if survey.refused.is_empty() {
            return Err(rowtrail_reader::ReaderError::NoTables {
                location: path.display().to_string(),
            }
            .into());
        }
        bail!(
            "none of the tables of {} can be captured as they are:{}",
            path.display(),
            survey
                .refused
                .iter()
                .map(|r| format!("\n  {r}"))
                .collect::<String>()
        );
    }
    SqliteSource::install(path, &survey.tables, VERSION)?;
    outln!(
        "capture installed on {} for {} table(s):",
        path.display(),
        survey.tables.len()
    );
    for t in &survey.tables {
        let key = if t.primary_key.is_empty() {
            "  (no primary key: rows are matched whole)"
        } else {
            ""
        };
        outln!("  {}{key}", t.name);
    }
    if !survey.refused.is_empty() {
        outln!("not captured ({} table(s)):", survey.refused.len());
        for r in &survey.refused {
            outln!("  {r}");
        }
    }
    if !a.no_baseline {
        baseline_after_install(cfg, false);
    }
    Ok(ExitCode::SUCCESS)
}

/// Takes the baseline an install takes. Capture is installed whatever happens here: a baseline
/// that fails is reported with how to take it again, and the install still succeeds. On SQL
/// Server (`keyed_only`) tables without a primary key get no baseline, and the note says so.
fn baseline_after_install(cfg: &Config, keyed_only: bool) {
    let taken = (|| -> Result<()> {
        let mut source = cfg.source_spec()?.open()?;
        let mut archive = super::read::open_archive(cfg)?;
        let only: Option<Vec<String>> = keyed_only.then(|| {
            let (keyed, keyless): (Vec<_>, Vec<_>) = source
                .tables()
                .iter()
                .partition(|t| !t.table.primary_key.is_empty());
            let mut noted: Vec<String> = Vec::new();
            for t in &keyless {
                if noted.contains(&t.table.name.to_string()) {
                    continue;
                }
                noted.push(t.table.name.to_string());
                eprintln!(
                    "note: {} has no primary key, so it gets no baseline (a SQL Server baseline \
                     matches rows by key)",
                    t.table.name
                );
            }
            let mut names: Vec<String> = Vec::new();
            for t in keyed {
                let n = t.table.name.to_string();
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            names
        });
        if only.as_ref().is_some_and(|o| o.is_empty()) {
            return Ok(());
        }
        super::baseline::take(source.as_mut(), &mut archive, only.as_deref(), false)
    })();
    if let Err(e) = taken {
        eprintln!(
            "warning: capture is installed, but its baseline was not taken: {e:#}\n\
             take it with `rowtrail baseline` (replicas and `restore --as-of` start from one)"
        );
    }
}

fn generate(a: &GenerateArgs, cfg: &Config) -> Result<ExitCode> {
    let engine = a.engine.unwrap_or(cfg.engine);
    let only = a.tables.selected();
    if engine == Engine::Mssql {
        return generate_mssql(a, cfg, only.as_deref());
    }
    let tables = match &a.from_ddl {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let tables = sqlite_tables_from_ddl(&text, only.as_deref())?;
            if tables.is_empty() {
                bail!("{} defines no tables", file.display());
            }
            tables
        }
        None if a.skip_uncapturable => {
            let survey = SqliteSource::survey(cfg.source()?, only.as_deref())?;
            for r in &survey.refused {
                eprintln!("not captured: {r}");
            }
            if survey.tables.is_empty() {
                bail!("no table of {} can be captured", cfg.source()?.display());
            }
            survey.tables
        }
        None => SqliteSource::candidate_tables(cfg.source()?, only.as_deref())?,
    };
    let install = sqlite::install_script(&tables, VERSION)?;
    let uninstall = sqlite::uninstall_script(&tables, true, VERSION);
    match &a.out {
        None => out!("{install}"),
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for (name, text) in [("install.sql", &install), ("uninstall.sql", &uninstall)] {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                outln!("wrote {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Script options for a target version.
fn mssql_options(target: MssqlTarget) -> rowtrail_sql::mssql::Options {
    use rowtrail_sql::mssql::{Options, Target};
    Options {
        version: VERSION.into(),
        target: match target {
            MssqlTarget::Sql2016 => Target::Sql2016,
            MssqlTarget::Sql2012 => Target::Sql2012,
        },
    }
}

fn generate_mssql(a: &GenerateArgs, cfg: &Config, only: Option<&[String]>) -> Result<ExitCode> {
    use rowtrail_sql::mssql::Deployment;
    let Some(file) = &a.from_ddl else {
        if cfg.engine != Engine::Mssql {
            bail!("SQL Server scripts are generated from a CREATE TABLE script (--from-ddl FILE) or from the live catalog of a configured SQL Server source");
        }
        let deployment =
            super::mssql::deployment_from_catalog(cfg, only, &mssql_options(a.target))?;
        return write_mssql(a, &deployment);
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let parsed = rowtrail_sql::ddl::parse_mssql_each(&text)
        .with_context(|| format!("in {}", file.display()))?;
    let defined: Vec<String> = parsed.iter().map(|(n, _)| n.to_string()).collect();
    // With --tables, a table the script defines but rowtrail refuses only matters if chosen.
    let mut by_name: Vec<_> = parsed.into_iter().map(|(n, t)| (n, Some(t))).collect();
    let mut tables = Vec::new();
    match only {
        None => {
            for (_, t) in by_name {
                tables.push(t.expect("each table taken once")?);
            }
        }
        Some(wanted) => {
            for w in wanted {
                let slot = by_name
                    .iter_mut()
                    .find(|(n, t)| t.is_some() && (n.to_string() == *w || n.name.as_str() == w));
                match slot {
                    Some((_, t)) => tables.push(t.take().expect("checked above")?),
                    None => bail!(
                        "table {w:?} is not defined in {} (or was listed twice); it defines: {}",
                        file.display(),
                        defined.join(", ")
                    ),
                }
            }
        }
    }
    if tables.is_empty() {
        bail!("{} defines no tables", file.display());
    }
    let deployment = Deployment::generate(&tables, &mssql_options(a.target))?;
    write_mssql(a, &deployment)
}

fn write_mssql(a: &GenerateArgs, deployment: &rowtrail_sql::mssql::Deployment) -> Result<ExitCode> {
    let permissions = a
        .reader_login
        .as_ref()
        .map(|login| deployment.permissions(&rowtrail_sql::Ident::new(login.clone())?))
        .transpose()?;
    match &a.out {
        None => out!("{}", deployment.install.render()),
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for script in deployment.scripts().into_iter().chain(permissions.as_ref()) {
                let path = dir.join(script.file_name());
                std::fs::write(&path, script.render())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                outln!(
                    "wrote {} ({} batches)",
                    path.display(),
                    script.batches().len()
                );
            }
            outln!("review them, then deploy with: sqlcmd -b -i <file> (see docs/sqlserver.md)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
