//! Microsoft's own T-SQL parser (ScriptDom, TSql150Parser) over scripts rowtrail generates:
//! the gate every generated statement passes (built by `bash scripts/scriptdom/setup.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the ScriptDom validator lives.
pub fn validator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scriptdom/validate.exe")
}

/// Writes each `(file name, text)` into a temporary directory and runs ScriptDom over them all.
/// Panics (never skips) when the validator is missing, and with the validator's report (the
/// script, batch and error) when it rejects one. Returns its summary line
/// (`validated N scripts, M batches, 0 errors`).
pub fn validate(scripts: &[(String, String)]) -> String {
    let exe = validator();
    assert!(
        exe.exists(),
        "the ScriptDom validator is missing ({}): run `bash scripts/prereqs.sh` (or \
         `bash scripts/scriptdom/setup.sh`) to install Mono and build it",
        exe.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for (name, text) in scripts {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a script");
        files.push(path);
    }
    let out = Command::new("mono")
        .arg(&exe)
        .args(&files)
        .output()
        .expect("mono runs (install it with `bash scripts/prereqs.sh`)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ScriptDom (TSql150Parser) rejected generated T-SQL:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().last().unwrap_or_default().to_string()
}
