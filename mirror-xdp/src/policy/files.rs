//! What a policy was compiled from: the policy file's text and each set file's, as read.
//! Every generation keeps them (`policy-in-force.json` in the state folder), so commands
//! that reason about the policy in force read it, not the file on disk, which may have been
//! edited since.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bounded::{self, ReadError};

/// The files of one policy, by the path they were read from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFiles {
    /// The policy file; set file paths are relative to its folder.
    pub policy: PathBuf,
    /// Each file's text: the policy's and every set file's it names.
    pub texts: BTreeMap<PathBuf, String>,
}

impl PolicyFiles {
    /// The same files by absolute paths, so a copy kept by a command run in one folder
    /// still names them for a command run in another.
    pub fn absolute(&self) -> PolicyFiles {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        PolicyFiles {
            policy: absolute(&self.policy),
            texts: self
                .texts
                .iter()
                .map(|(path, text)| (absolute(path), text.clone()))
                .collect(),
        }
    }

    /// The paths whose text on disk is no longer what was read (changed, gone, unreadable).
    pub fn changed_on_disk(&self) -> Vec<&Path> {
        self.texts
            .iter()
            .filter(|(path, text)| {
                bounded::read_file(path).map_or(true, |bytes| bytes != text.as_bytes())
            })
            .map(|(path, _)| path.as_path())
            .collect()
    }
}

/// Where the parser gets set files from: the disk (recording what it reads) or a kept copy.
pub(super) enum Reader<'k> {
    Disk(BTreeMap<PathBuf, String>),
    Kept(&'k PolicyFiles),
}

impl Reader<'_> {
    pub fn read(&mut self, path: &Path) -> Result<Vec<u8>, ReadError> {
        match self {
            Reader::Disk(read) => {
                let bytes = bounded::read_file(path)?;
                // Kept as text: a file that is not UTF-8 is refused by the parser anyway.
                read.insert(path.to_path_buf(), String::from_utf8_lossy(&bytes).into());
                Ok(bytes)
            }
            Reader::Kept(files) => match files.texts.get(path) {
                Some(text) => Ok(text.clone().into_bytes()),
                None => Err(ReadError::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not among the files the policy in force was compiled from",
                ))),
            },
        }
    }

    /// The files read, with the policy's own text, once parsing succeeded.
    pub fn into_files(self, policy: &Path, text: &str) -> PolicyFiles {
        let mut texts = match self {
            Reader::Disk(read) => read,
            Reader::Kept(files) => files.texts.clone(),
        };
        texts.insert(policy.to_path_buf(), text.to_string());
        PolicyFiles {
            policy: policy.to_path_buf(),
            texts,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::PolicyFiles;
    use crate::policy::Policy;

    #[test]
    fn a_policy_parses_again_from_its_kept_texts_whatever_the_disk_says() {
        let dir = tempfile::tempdir().unwrap();
        let (policy_path, set) = (
            dir.path().join("policy.toml"),
            dir.path().join("admins.txt"),
        );
        let text = "version = 1\n[sets]\nadmins = { file = \"admins.txt\" }\n\
                    [[ports]]\nproto = \"tcp\"\nports = [22]\nfrom = [\"admins\"]\n";
        std::fs::write(&policy_path, text).unwrap();
        std::fs::write(&set, "203.0.113.0/24\n").unwrap();
        let policy = Policy::load(&policy_path).unwrap();
        assert_eq!(policy.files.texts.len(), 2);
        assert_eq!(policy.files.absolute(), policy.files);
        assert!(policy.files.changed_on_disk().is_empty());

        std::fs::write(&set, "0.0.0.0/0\n").unwrap();
        std::fs::write(&policy_path, "version = 1\n").unwrap();
        assert_eq!(policy.files.changed_on_disk().len(), 2);
        let kept = Policy::from_files(&policy.files).unwrap();
        assert_eq!(kept, policy);
        std::fs::remove_file(&set).unwrap();
        assert_eq!(Policy::from_files(&policy.files).unwrap(), policy);
    }

    #[test]
    fn relative_names_are_kept_as_absolute_ones() {
        let texts = [("policy.toml", "a"), ("sets/admins.txt", "b")]
            .map(|(p, t)| (PathBuf::from(p), t.to_string()));
        let relative = PolicyFiles {
            policy: "policy.toml".into(),
            texts: texts.into_iter().collect(),
        };
        let cwd = std::env::current_dir().unwrap();
        let absolute = relative.absolute();
        assert_eq!(absolute.policy, cwd.join("policy.toml"));
        assert_eq!(absolute.texts[&cwd.join("sets/admins.txt")], "b");
        assert_eq!(absolute.texts.len(), 2);
    }

    #[test]
    fn a_kept_copy_without_a_set_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        let text = "version = 1\n[sources]\ndeny = [{ file = \"bad.txt\" }]\n";
        std::fs::write(dir.path().join("bad.txt"), "192.0.2.0/24\n").unwrap();
        let mut files = Policy::parse(text, &path).unwrap().files;
        files.texts.remove(&dir.path().join("bad.txt"));
        let err = Policy::from_files(&files).unwrap_err().to_string();
        assert!(err.contains("not among the files"), "{err}");
    }
}
