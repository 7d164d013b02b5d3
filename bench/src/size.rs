//! Archive size: bytes on disk per archived change for the 200-byte `items` row, through the real
//! triggers and mover. Updates carry two images (400 raw bytes), inserts one (200). The archive
//! is checkpointed first, so its main file holds everything (data, indexes, hash, metadata).

use std::path::Path;

use anyhow::{ensure, Result};
use rowtrail_reader::archive::{Archive, ArchiveOptions};
use rowtrail_reader::mover;
use rowtrail_reader::sqlite::SqliteSource;
use rusqlite::Connection;

use crate::fixture::{self, ROW_BYTES};
use crate::report::{Figure, Target};
use crate::Settings;

/// Archive bytes per change after archiving `n` changes made by `sql` on a source of `n` rows.
fn bytes_per_change(dir: &Path, n: i64, sql: Option<&str>) -> Result<f64> {
    let source = dir.join("size-source.db");
    let archive_path = dir.join("size-trail.db");
    fixture::remove_db(&archive_path);
    let conn = match sql {
        None => {
            let c = fixture::fresh_source(&source, 0, true)?;
            fixture::insert_rows(&c, 1, n, n)?;
            c
        }
        Some(sql) => {
            let c = fixture::fresh_source(&source, n, true)?;
            c.execute_batch(sql)?;
            c
        }
    };
    drop(conn);
    let mut archive = Archive::open(&archive_path, &ArchiveOptions::default())?;
    let mut src = SqliteSource::open(&source)?;
    let stats = mover::drain(&mut src, &mut archive, mover::DEFAULT_BATCH)?;
    ensure!(
        stats.archived == n as u64,
        "archived {} of {n}",
        stats.archived
    );
    drop(archive);
    let c = Connection::open(&archive_path)?;
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let empty: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    drop(c);
    let bytes = std::fs::metadata(&archive_path)?.len() as i64 - empty * page;
    fixture::remove_db(&archive_path);
    fixture::remove_db(&source);
    Ok(bytes as f64 / n as f64)
}

/// The size scenario.
pub fn run(s: &Settings, dir: &Path) -> Result<Vec<Figure>> {
    let n: i64 = if s.quick { 5_000 } else { 100_000 };
    let update = bytes_per_change(dir, n, Some("UPDATE items SET qty = qty + 1"))?;
    let insert = bytes_per_change(dir, n, None)?;
    let raw = 2 * ROW_BYTES;
    Ok(vec![
        Figure::new(
            "size",
            format!("archive bytes per update of a {ROW_BYTES}-byte row"),
            update,
            "bytes",
            Target::AtMost(3.0 * raw as f64),
            format!(
                "{:.2}× the two images' {raw} raw bytes ({n} updates)",
                update / raw as f64
            ),
        ),
        Figure::new(
            "size",
            format!("archive bytes per insert of a {ROW_BYTES}-byte row"),
            insert,
            "bytes",
            Target::Report,
            format!(
                "{:.2}× the image's {ROW_BYTES} raw bytes ({n} inserts)",
                insert / ROW_BYTES as f64
            ),
        ),
    ])
}
