//! One reader per archive: an exclusive lock on `<archive>.lock`, held for the process's life.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::ReaderError;

/// Holds the reader lock on one archive until dropped (or the process ends, even by SIGKILL).
#[derive(Debug)]
pub struct ArchiveLock {
    _file: File,
    path: PathBuf,
}

impl ArchiveLock {
    /// The lock file that guards `archive`.
    pub fn path_for(archive: &Path) -> PathBuf {
        let mut name = archive.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        archive.with_file_name(name)
    }

    /// Takes the lock without waiting; fails with [`ReaderError::Locked`] when another process has it.
    pub fn acquire(archive: &Path) -> Result<Self, ReaderError> {
        let path = Self::path_for(archive);
        let io = |context: &str, cause| ReaderError::Io {
            path: path.clone(),
            context: context.into(),
            cause,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("cannot open the lock file", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(ReaderError::Locked {
                    path: archive.to_path_buf(),
                    pid: text.trim().parse().unwrap_or(0),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("cannot lock", e)),
        }
        file.set_len(0).map_err(|e| io("cannot write", e))?;
        file.rewind().map_err(|e| io("cannot write", e))?;
        write!(file, "{}", std::process::id()).map_err(|e| io("cannot write", e))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file's path.
    pub fn file(&self) -> &Path {
        &self.path
    }
}
