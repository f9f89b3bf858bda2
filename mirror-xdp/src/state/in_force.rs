//! The policy in force: the texts the attached generation was compiled from, kept in
//! `policy-in-force.json`. Attach and reload write it with the generation's other pending
//! state (lifecycle/pending.rs), so it changes exactly when the generation does; `port`,
//! `audit`, `diff` and `status` read it, never the policy file, which may have been edited
//! since.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Paths, Record, StateError};
use crate::policy::{Policy, PolicyError, PolicyFiles};

/// The file in the state folder.
pub const FILE: &str = "policy-in-force.json";

/// The file's contents: the generation the texts belong to, and the texts.
#[derive(Serialize, Deserialize)]
struct Kept {
    generation: u64,
    files: PolicyFiles,
}

/// The policy in force could not be had.
#[derive(Debug, thiserror::Error)]
pub enum InForceError {
    #[error(
        "{0} is missing (an older build attached this enforcer and kept no copy of its policy): \
         run `mirror-xdp reload` once to keep one"
    )]
    Missing(PathBuf),
    #[error(
        "{path} holds generation {kept}, but generation {in_force} is in force (a command was \
         interrupted): run `mirror-xdp reload`"
    )]
    Stale {
        path: PathBuf,
        kept: u64,
        in_force: u64,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the policy in force (generation {generation}) does not validate: {source}")]
    Invalid {
        generation: u64,
        source: PolicyError,
    },
}

/// Writes the texts of generation `generation` (into the pending folder, see above), by
/// absolute paths.
pub fn save(paths: &Paths, generation: u64, files: &PolicyFiles) -> Result<(), StateError> {
    let path = paths.state_dir.join(FILE);
    let kept = Kept {
        generation,
        files: files.absolute(),
    };
    let text = serde_json::to_vec(&kept).expect("texts always serialise");
    super::dir::write_atomic(&path, &text).map_err(|source| StateError::Write { path, source })
}

/// The texts the generation in `record` was compiled from.
pub fn files(paths: &Paths, record: &Record) -> Result<PolicyFiles, InForceError> {
    let path = paths.state_dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InForceError::Missing(path));
        }
        Err(source) => return Err(StateError::Read { path, source }.into()),
    };
    let kept: Kept = serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
        path: path.clone(),
        source,
    })?;
    let in_force = record.policy.generation;
    if kept.generation != in_force {
        return Err(InForceError::Stale {
            path,
            kept: kept.generation,
            in_force,
        });
    }
    Ok(kept.files)
}

/// The policy in force, validated again from its kept texts.
pub fn policy(paths: &Paths, record: &Record) -> Result<Policy, InForceError> {
    Policy::from_files(&files(paths, record)?).map_err(|source| InForceError::Invalid {
        generation: record.policy.generation,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PolicyRecord;

    fn record(generation: u64) -> Record {
        Record {
            mode: "enforce".into(),
            interfaces: Vec::new(),
            policy: PolicyRecord {
                path: "/etc/mirror-xdp/policy.toml".into(),
                generation,
            },
            ports: Vec::new(),
            protocols: Vec::new(),
            tcp_syncookies_before: None,
            tcp_timestamps_before: None,
            limiter_entries: 1024,
            reloads: Default::default(),
            ebpf_object: None,
        }
    }

    #[test]
    fn a_missing_or_stale_copy_says_to_reload() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            bpffs: dir.path().join("bpffs"),
            state_dir: dir.path().to_path_buf(),
        };
        let missing = files(&paths, &record(1)).unwrap_err().to_string();
        assert!(
            missing.contains("run `mirror-xdp reload` once"),
            "{missing}"
        );
        save(&paths, 1, &PolicyFiles::default()).unwrap();
        assert_eq!(files(&paths, &record(1)).unwrap(), PolicyFiles::default());
        let stale = files(&paths, &record(2)).unwrap_err().to_string();
        assert!(
            stale.contains("holds generation 1, but generation 2"),
            "{stale}"
        );
    }
}
