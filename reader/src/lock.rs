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
        if let Some(folder) = archive.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !folder.is_dir() {
                return Err(ReaderError::Io {
                    path: folder.to_path_buf(),
                    context: format!(
                        "the archive {} cannot be created: its folder does not exist (create it, \
                         or point archive.path elsewhere):",
                        archive.display()
                    ),
                    cause: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            }
        }
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

    /// The pid of the process holding the lock on `archive` now, if one does (`Some(0)` when
    /// its pid is unknown). Never creates the lock file. It takes a shared lock for an instant
    /// to find out, so a reader starting at that very instant may be refused once.
    pub fn holder(archive: &Path) -> Result<Option<u32>, ReaderError> {
        let path = Self::path_for(archive);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => {
                return Err(ReaderError::Io {
                    path,
                    context: "cannot open the lock file".into(),
                    cause,
                })
            }
        };
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(None)
            }
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                Ok(Some(text.trim().parse().unwrap_or(0)))
            }
            Err(TryLockError::Error(cause)) => Err(ReaderError::Io {
                path,
                context: "cannot test the lock".into(),
                cause,
            }),
        }
    }

    /// The lock file's path.
    pub fn file(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::ArchiveLock;

    #[test]
    fn holder_names_the_pid_while_the_lock_is_held_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("trail.db");
        assert_eq!(ArchiveLock::holder(&archive).unwrap(), None);
        assert!(
            !ArchiveLock::path_for(&archive).exists(),
            "asking creates no lock file"
        );
        let lock = ArchiveLock::acquire(&archive).unwrap();
        assert_eq!(
            ArchiveLock::holder(&archive).unwrap(),
            Some(std::process::id())
        );
        assert!(
            ArchiveLock::acquire(&archive).is_err(),
            "asking leaves the lock with its holder"
        );
        drop(lock);
        assert_eq!(ArchiveLock::holder(&archive).unwrap(), None);
        let again = ArchiveLock::acquire(&archive);
        assert!(again.is_ok(), "asking left no lock behind: {again:?}");
    }
}
