//! The archive's digest, published after every pass that archived something, to a file or a
//! command the operator points off the archive's host: tail truncation of the archive (an
//! archive cut back to an earlier state is a valid archive) is found only against a digest kept
//! where the archive's host cannot rewrite it (`rowtrail verify --against`).

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};

use rowtrail_reader::archive::Archive;

/// Where the digest goes.
#[derive(Debug, Clone, Default)]
pub struct DigestSink {
    /// A file, replaced whole each time (written beside it, then renamed).
    pub file: Option<PathBuf>,
    /// A shell command, given the digest line on its standard input.
    pub command: Option<String>,
}

impl DigestSink {
    /// Whether the digest goes anywhere.
    pub fn is_set(&self) -> bool {
        self.file.is_some() || self.command.is_some()
    }
}

/// Publishes digests in the background, one at a time, the newest first when they queue up.
pub(crate) struct Publisher {
    sink: DigestSink,
    commands: Option<Sender<String>>,
}

impl Publisher {
    pub(crate) fn new(sink: DigestSink) -> Self {
        let commands = sink.command.clone().map(|command| {
            let (tx, rx) = mpsc::channel::<String>();
            std::thread::Builder::new()
                .name("rowtrail-digest".into())
                .spawn(move || {
                    while let Ok(mut line) = rx.recv() {
                        // Only the latest digest matters: skip the ones a slow command missed.
                        while let Ok(newer) = rx.try_recv() {
                            line = newer;
                        }
                        if let Err(e) = crate::alerts::run_command(&command, &line) {
                            tracing::warn!(error = %e, "digest_command failed");
                        }
                    }
                })
                .expect("spawn the digest thread");
            tx
        });
        Self { sink, commands }
    }

    /// Publishes the digest of `archive` as it stands now.
    pub(crate) fn publish(&self, archive: &Archive) {
        if !self.sink.is_set() {
            return;
        }
        let digest = match archive.tip_digest() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the archive's digest");
                return;
            }
        };
        let line = format!("{digest}\n");
        if let Some(file) = &self.sink.file {
            let mut tmp = file.as_os_str().to_os_string();
            tmp.push(".new");
            let written = std::fs::write(&tmp, &line).and_then(|_| std::fs::rename(&tmp, file));
            if let Err(e) = written {
                tracing::warn!(file = %file.display(), error = %e, "cannot write digest_file");
            }
        }
        if let Some(tx) = &self.commands {
            let _ = tx.send(line);
        }
    }
}
