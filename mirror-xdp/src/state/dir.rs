//! The state folder's plumbing: the one lock that every command changing the enforcer holds
//! (attach, reload, detach, recovery, `source`, `port`), and the atomic, root-only file
//! writes of its state files. Imports nothing from the rest of the crate: everything above
//! may use it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file in the state folder. The name predates the lock's wider use.
pub const LOCK_FILE: &str = "live-sources.lock";

/// Could not take the command lock.
#[derive(Debug, thiserror::Error)]
#[error("cannot lock {path}: {source}")]
pub struct LockError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The exclusive command lock, held until dropped: two commands must not interleave their
/// read-modify-write of the state files and the maps, and what recovery finds half-done was
/// left by a process that is gone.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Waits for the exclusive command lock of `state_dir` (created, mode 0700, if missing).
pub fn lock(state_dir: &Path) -> Result<Lock, LockError> {
    let path = state_dir.join(LOCK_FILE);
    let err = |source| LockError {
        path: path.clone(),
        source,
    };
    create_private_dir(state_dir).map_err(err)?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(err)?;
    // flock(2): released when the file closes, so a killed command never leaves it taken.
    file.lock().map_err(err)?;
    Ok(Lock { _file: file })
}

/// Creates a folder (and its parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Replaces `path` with `bytes` atomically (a synced `<name>.tmp` renamed over it), mode
/// 0600; creates its folder (mode 0700) if missing. A reader sees the old file or the new
/// one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn atomic_writes_replace_the_file_privately_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let path = state.join("x.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&state), 0o700);
        assert!(!state.join("x.json.tmp").exists());
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let held = lock(&state).unwrap();
        assert_eq!(mode(&state.join(LOCK_FILE)), 0o600);
        let (sent, got) = mpsc::channel();
        let waiter = std::thread::spawn({
            let state = state.clone();
            move || {
                let _second = lock(&state).unwrap();
                sent.send(()).unwrap();
            }
        });
        assert!(
            got.recv_timeout(Duration::from_millis(300)).is_err(),
            "a second lock was granted while the first was held"
        );
        drop(held);
        got.recv_timeout(Duration::from_secs(10))
            .expect("the second lock after the first was dropped");
        waiter.join().unwrap();
    }
}
