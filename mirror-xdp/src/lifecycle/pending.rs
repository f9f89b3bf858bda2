//! The pending state of an attach or a reload: the state files as they will be once it is
//! done (the record, the policy's source lists), written to `<state_dir>/pending/` before the
//! first link changes and moved into place by renames when it is done. A crash leaves the
//! folder behind, and [`super::recover`] commits it or throws it away, depending on what the
//! links run.

use std::path::{Path, PathBuf};

use super::LifecycleError;
use crate::policy::Policy;
use crate::state::{Paths, Record, StateError, in_force};

pub const DIR: &str = "pending";
/// The file that makes the folder complete; written last and moved last.
const RECORD: &str = "state.json";

/// The same enforcer, with the pending folder as its state folder.
fn pending_paths(paths: &Paths) -> Paths {
    Paths {
        bpffs: paths.bpffs.clone(),
        state_dir: paths.state_dir.join(DIR),
    }
}

/// Writes the pending state: the policy's source lists and texts first, the record last.
pub fn write(paths: &Paths, record: &Record, policy: &Policy) -> Result<(), LifecycleError> {
    let pending = pending_paths(paths);
    crate::live::sources::save_policy_sources(&pending, &policy.allow, &policy.deny)?;
    in_force::save(&pending, record.policy.generation, &policy.files)?;
    record.save(&pending)?;
    Ok(())
}

/// Writes a changed pending record after [`write`] wrote the rest.
pub fn write_record(paths: &Paths, record: &Record) -> Result<(), LifecycleError> {
    record.save(&pending_paths(paths))?;
    Ok(())
}

/// The pending record, if an attach or reload has written one and not committed it.
pub fn load(paths: &Paths) -> Result<Option<Record>, StateError> {
    Record::load(&pending_paths(paths))
}

/// Moves the pending files into the state folder, the record last, and removes the folder.
/// Each rename is atomic; after a crash half-way, committing again finishes the job.
pub fn commit(paths: &Paths) -> Result<(), StateError> {
    let dir = paths.state_dir.join(DIR);
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Write { path, source }
    };
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(StateError::Read { path: dir, source }),
    };
    // Temporary files of a write that did not finish are not part of it.
    names.retain(|p| p.extension().is_none_or(|e| e != "tmp"));
    names.sort_by_key(|p| p.file_name().is_some_and(|n| n == RECORD));
    for from in names {
        let to = paths
            .state_dir
            .join(from.file_name().expect("a file in the folder"));
        std::fs::rename(&from, &to).map_err(write_err(&to))?;
    }
    discard(paths);
    Ok(())
}

/// Throws the pending state away.
pub fn discard(paths: &Paths) {
    let _ = std::fs::remove_dir_all(paths.state_dir.join(DIR));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PolicyRecord;

    fn record(generation: u64) -> Record {
        Record {
            mode: "enforce".into(),
            interfaces: vec![],
            policy: PolicyRecord {
                path: "/etc/mirror-xdp/policy.toml".into(),
                generation,
            },
            ports: vec![],
            protocols: Vec::new(),
            tcp_syncookies_before: None,
            tcp_timestamps_before: None,
            limiter_entries: 1024,
            reloads: Default::default(),
            ebpf_object: None,
        }
    }

    #[test]
    fn commit_moves_the_pending_record_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            bpffs: dir.path().join("bpffs"),
            state_dir: dir.path().join("state"),
        };
        record(1).save(&paths).unwrap();
        let text = "version = 1\n[sources]\nallow = [\"192.0.2.0/24\"]\n";
        let policy = Policy::parse(text, &dir.path().join("policy.toml")).unwrap();
        write(&paths, &record(2), &policy).unwrap();
        assert_eq!(load(&paths).unwrap(), Some(record(2)));
        assert_eq!(Record::load(&paths).unwrap(), Some(record(1)));
        commit(&paths).unwrap();
        assert_eq!(Record::load(&paths).unwrap(), Some(record(2)));
        assert_eq!(load(&paths).unwrap(), None);
        let sources = crate::live::sources::load_policy_sources(&paths).unwrap();
        assert_eq!(
            sources.allow,
            vec!["192.0.2.0/24".parse::<ipnet::IpNet>().unwrap()]
        );
        // The texts came along, for the generation committed.
        assert_eq!(in_force::files(&paths, &record(2)).unwrap(), policy.files);
        assert!(in_force::files(&paths, &record(1)).is_err());
        // Nothing pending: committing changes nothing.
        commit(&paths).unwrap();
        assert_eq!(Record::load(&paths).unwrap(), Some(record(2)));
    }
}
