//! `rowtrail compare`: a replica against its live source, by key-range checksums narrowed down
//! to rows; repair on request.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use rowtrail_reader::archive::Archive;
use rowtrail_sql::printable::printable;
use rowtrail_standby::compare;
use rowtrail_standby::replica::{Replica, Until};

use crate::config::Config;
use crate::EXIT_DIFFERENCES;

/// Arguments of `rowtrail compare`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
rowtrail compare --replica standby.db                    # exit 0 equal, 4 differences\n  \
rowtrail compare --replica standby.db --repair           # what a repair would write\n  \
rowtrail compare --replica standby.db --repair --apply   # write it\n\n\
The replica is first brought to the newest cut (unless paused). Each source table is read in\n\
a snapshot while writes go on and compared by checksums of key ranges, computed on each side;\n\
only ranges whose checksums differ are cut smaller, down to rows. Rows a change after the\n\
replica's position touches are counted as changing, not as differences. Keys of differing rows\n\
are printed (never their values, never to logs).")]
pub struct Args {
    /// The replica file.
    #[arg(long, value_name = "FILE")]
    pub replica: PathBuf,
    /// Show the repair (with --apply: make the replica's differing rows equal the source's).
    #[arg(long)]
    pub repair: bool,
    /// With --repair: write it.
    #[arg(long, requires = "repair")]
    pub apply: bool,
    /// How many differing rows to list per table.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub show: usize,
}

/// Compares (and repairs).
pub fn run(args: &Args, cfg: &Config) -> Result<ExitCode> {
    let archive = Archive::open_read_only(cfg.archive()?)?;
    let mut replica = Replica::open(&args.replica)?;
    if !replica.paused() {
        replica.apply(&archive, &Until::Latest)?;
    }
    let mut source = cfg.source_spec()?.open()?;
    let cmp = compare::compare(&replica, source.as_mut(), &archive)?;
    for t in &cmp.tables {
        let state = if t.differs() { "DIFFERS" } else { "equal" };
        outln!(
            "{}: {state} — source {} row(s), replica {} row(s); {} missing, {} extra, {} different, {} changing (not compared); {} key range(s) checksummed, {} row(s) read one by one",
            printable(&t.table),
            t.source_rows,
            t.replica_rows,
            t.missing.len(),
            t.extra.len(),
            t.different.len(),
            t.changing,
            t.ranges_summed,
            t.rows_read
        );
        let def = replica
            .tables()
            .iter()
            .find(|r| r.definition.name.to_string() == t.table)
            .map(|r| r.definition.clone());
        let key_text = |v: &[rowtrail_sql::Value]| -> String {
            match def
                .as_ref()
                .and_then(|d| d.key().map(|k| (d.clone(), k.to_vec())))
            {
                Some((d, k)) => k
                    .iter()
                    .map(|&i| {
                        format!(
                            "{}={}",
                            d.columns[i].name,
                            printable(&rowtrail_reader::archive::label_text(&v[i]))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                None => "(a row without a key)".into(),
            }
        };
        for (what, rows) in [
            ("missing", &t.missing),
            ("extra", &t.extra),
            ("different", &t.different),
        ] {
            for row in rows.iter().take(args.show) {
                outln!("  {what}: {}", key_text(&row.1));
            }
        }
    }
    if !cmp.differs() {
        outln!("the replica equals the source");
        return Ok(ExitCode::SUCCESS);
    }
    if args.repair && args.apply {
        let n = compare::repair(&mut replica, &cmp)?;
        outln!("repaired: {n} row(s) of the replica now equal the source's");
        return Ok(ExitCode::SUCCESS);
    }
    if args.repair {
        outln!("a repair would write the source's rows over each difference above; run again with --repair --apply");
    }
    Ok(ExitCode::from(EXIT_DIFFERENCES))
}
