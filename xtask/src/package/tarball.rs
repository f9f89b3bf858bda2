//! The static tarball: `mirror-xdp-<version>-x86_64-linux-musl/` with the musl binary, the
//! README, the man pages and deploy/, every file owned by root and dated by the commit.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Stamp, VERSION, files_under, gzip};
use crate::repo_root;

/// The name of the tarball and of the folder in it.
pub fn name() -> String {
    format!("mirror-xdp-{VERSION}-x86_64-linux-musl")
}

pub fn build(out: &Path, binary: &Path, stamp: &Stamp) -> Result<PathBuf> {
    let top = PathBuf::from(name());
    let mut tar = Tar::new(stamp.time);
    tar.file(&top.join("mirror-xdp"), &std::fs::read(binary)?, 0o755)?;
    for doc in ["README.md", "SECURITY.md"] {
        tar.file(
            &top.join(doc),
            &std::fs::read(repo_root().join(doc))?,
            0o644,
        )?;
    }
    for (from, to) in [
        ("docs/man", "man"),
        ("deploy", "deploy"),
        ("examples", "examples"),
    ] {
        let dir = repo_root().join(from);
        for rel in files_under(&dir)? {
            let mode = if is_executable(&dir.join(&rel))? {
                0o755
            } else {
                0o644
            };
            tar.file(
                &top.join(to).join(&rel),
                &std::fs::read(dir.join(&rel))?,
                mode,
            )?;
        }
    }
    let path = out.join(format!("{}.tar.gz", name()));
    std::fs::write(&path, gzip(&tar.finish()?)?)?;
    Ok(path)
}

fn is_executable(path: &Path) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o111 != 0)
}

/// A tar archive built in memory: regular files (their folders added before them), owned
/// by root, all with one time.
pub struct Tar {
    builder: tar::Builder<Vec<u8>>,
    time: u64,
    folders: std::collections::BTreeSet<PathBuf>,
}

impl Tar {
    pub fn new(time: u64) -> Tar {
        Tar {
            builder: tar::Builder::new(Vec::new()),
            time,
            folders: Default::default(),
        }
    }

    pub fn file(&mut self, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
        let parents: Vec<&Path> = path
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        for folder in parents.into_iter().rev() {
            if self.folders.insert(folder.to_path_buf()) {
                self.append(folder, tar::EntryType::Directory, &[], 0o755)?;
            }
        }
        self.append(path, tar::EntryType::Regular, bytes, mode)
    }

    fn append(&mut self, path: &Path, kind: tar::EntryType, bytes: &[u8], mode: u32) -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root")?;
        header.set_groupname("root")?;
        header.set_mtime(self.time);
        self.builder
            .append_data(&mut header, path, bytes)
            .with_context(|| format!("adding {} to the archive", path.display()))
    }

    pub fn finish(self) -> Result<Vec<u8>> {
        Ok(self.builder.into_inner()?)
    }
}

/// Fails unless `binary` is statically linked: an ELF file without a program interpreter
/// (PT_INTERP) runs without any loader or C library of the host.
pub fn ensure_static(binary: &Path) -> Result<()> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    if has_interpreter(&bytes)? {
        bail!(
            "{} is dynamically linked (it names a program interpreter)",
            binary.display()
        );
    }
    Ok(())
}

/// Whether a 64-bit little-endian ELF file has a PT_INTERP program header.
fn has_interpreter(elf: &[u8]) -> Result<bool> {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        bail!("not a 64-bit little-endian ELF file");
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let Some(kind) = elf.get(at..at + 4) else {
            bail!("program header {i} lies outside the file");
        };
        if u32::from_le_bytes(kind.try_into().expect("4 bytes")) == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_is_told_from_a_static_one() {
        // This test binary is linked against the host's C library.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&me).unwrap());
        assert!(
            has_interpreter(b"not an elf file at all, but long enough to be read as one....")
                .is_err()
        );
    }
}
