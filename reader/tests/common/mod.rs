//! Checks shared by the reader's integration tests.

use rowtrail_reader::archive::{Archive, ChangeQuery};

/// Asserts that the archive holds its changes in rising seq order (archive order) and verifies;
/// returns how many changes it holds.
pub fn assert_archived_in_seq_order(archive: &Archive) -> usize {
    let seqs: Vec<i64> = archive
        .changes(&ChangeQuery::default())
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "archived in seq order: {seqs:?}"
    );
    let report = archive.verify(None).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    seqs.len()
}
