//! Labelled crash points, for tests that kill the reader at exact steps of a pass.
//!
//! Set `ROWTRAIL_TEST_FAILPOINT=<label>[:<n>]` and the process stops at the `n`-th time (default
//! 1st) it reaches `<label>`: it prints `rowtrail-failpoint <label>` to stderr and waits, so the
//! test can kill it with SIGKILL at exactly that point. `ROWTRAIL_TEST_FAILPOINT_ACTION=abort`
//! makes it abort on the spot instead. Without the variable, a failpoint costs one relaxed load.
//!
//! Labels in a pass: `after-read`, `after-archive-commit`, `during-staging-delete`,
//! `after-staging-delete`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The variable that arms a failpoint.
pub const ENV: &str = "ROWTRAIL_TEST_FAILPOINT";

struct Armed {
    label: String,
    at: u64,
    abort: bool,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (label, at) = match spec.split_once(':') {
                Some((l, n)) => (l.to_string(), n.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            let abort = std::env::var("ROWTRAIL_TEST_FAILPOINT_ACTION").is_ok_and(|a| a == "abort");
            Some(Armed {
                label,
                at,
                abort,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Marks the labelled step `label`; stops the process there if a test armed it.
pub fn hit(label: &str) {
    let Some(a) = armed() else { return };
    if a.label != label || a.hits.fetch_add(1, Ordering::Relaxed) + 1 != a.at {
        return;
    }
    if a.abort {
        std::process::abort();
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "rowtrail-failpoint {label}");
    let _ = err.flush();
    loop {
        std::thread::park();
    }
}
