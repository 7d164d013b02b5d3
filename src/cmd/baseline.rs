//! `rowtrail baseline`: snapshots of the captured tables taken into the archive online.

use std::process::ExitCode;

use anyhow::Result;
use rowtrail_reader::archive::Archive;
use rowtrail_reader::source::Source;
use rowtrail_sql::TableName;
use rowtrail_standby::baseline::{self, BaselineProgress};

use crate::config::Config;
use crate::progress::Progress;

/// Arguments of `rowtrail baseline`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
rowtrail baseline                    # every captured table\n  \
rowtrail baseline --tables staff     # one table again (say after its columns changed)\n\n\
The source stays open for writes: each table is read in one snapshot together with the\n\
source's sequence, so its position in the change stream is exact. A baseline cut short resumes\n\
when run again with the same tables (finished tables are kept). `sql install` takes one.\n\
Baselines are what replicas and `restore --as-of` start from.")]
pub struct Args {
    /// Only these captured tables (comma-separated); default: every captured table.
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    pub tables: Vec<String>,
    /// Print nothing when all is well.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Takes a baseline.
pub fn run(args: &Args, cfg: &Config) -> Result<ExitCode> {
    let mut source = cfg.source_spec()?.open()?;
    let mut archive = super::read::open_archive(cfg)?;
    let only = (!args.tables.is_empty()).then_some(args.tables.as_slice());
    take(source.as_mut(), &mut archive, only, args.quiet)?;
    Ok(ExitCode::SUCCESS)
}

/// Draws a table's rows as they are written.
struct Bar {
    shown: bool,
    bar: Option<Progress>,
}

impl BaselineProgress for Bar {
    fn table(&mut self, table: &TableName) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
        let bar = Progress::new(self.shown, "baseline", "rows", None);
        bar.message(table.to_string());
        self.bar = Some(bar);
    }
    fn rows(&mut self, rows: u64) {
        if let Some(b) = &self.bar {
            b.set(rows);
        }
    }
}

/// Takes a baseline of `only` (every captured table when `None`) and reports it on stdout.
pub fn take(
    source: &mut dyn Source,
    archive: &mut Archive,
    only: Option<&[String]>,
    quiet: bool,
) -> Result<()> {
    let mut bar = Bar {
        shown: Progress::wanted(quiet),
        bar: None,
    };
    let report = baseline::take(source, archive, only, &mut bar)?;
    if let Some(b) = bar.bar.take() {
        b.finish();
    }
    if !quiet {
        if report.resumed {
            outln!(
                "baseline {} resumed: {} table(s) were already taken",
                report.baseline,
                report.kept.len()
            );
        }
        outln!(
            "baseline {} of {} taken into {}:",
            report.baseline,
            source.info().location,
            archive.path().display()
        );
        for t in &report.taken {
            outln!("  {}: {} row(s) at seq {}", t.table, t.rows, t.seq);
        }
    }
    Ok(())
}
