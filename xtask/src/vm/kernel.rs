//! Debian kernels for the VM: the newest package of a series from the apt archive, unpacked
//! (never installed) into a cache folder under target/vm/, with its module index built.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::run_step;

/// A kernel series the harness can boot, as `--kernel` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Series {
    /// Debian 12's stock kernel (linux-image-6.1.0-NN-amd64).
    #[value(name = "6.1")]
    V6_1,
    /// The 6.12 series Debian 12 ships in bookworm (linux-image-6.12.N+deb12-amd64-unsigned),
    /// the same series as Debian 13's stock kernel.
    #[value(name = "6.12")]
    V6_12,
}

impl Series {
    pub fn label(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// Whether a package name belongs to this series (and is the plain amd64 flavour).
    fn matches(self, package: &str) -> bool {
        let Some(rest) = package.strip_prefix("linux-image-") else {
            return false;
        };
        match self {
            Series::V6_1 => rest
                .strip_prefix("6.1.0-")
                .and_then(|r| r.strip_suffix("-amd64"))
                .is_some_and(|abi| abi.chars().all(|c| c.is_ascii_digit())),
            Series::V6_12 => rest
                .strip_prefix("6.12.")
                .and_then(|r| r.strip_suffix("+deb12-amd64-unsigned"))
                .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit())),
        }
    }
}

/// An unpacked kernel: `root` holds boot/ and lib/modules/<release>/.
pub struct Kernel {
    pub root: PathBuf,
    pub release: String,
}

impl Kernel {
    pub fn vmlinuz(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    /// The module files (in load order, dependencies first) that `modprobe NAME` would load.
    pub fn module_files(&self, names: &[&str]) -> Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = Vec::new();
        for name in names {
            let out = Command::new("modprobe")
                .arg("-d")
                .arg(&self.root)
                .args(["-S", &self.release, "--show-depends", name])
                .output()
                .context("cannot run modprobe (package kmod)")?;
            if !out.status.success() {
                bail!(
                    "kernel {}: module {name}: {}",
                    self.release,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            // "insmod /path/x.ko.xz [options]" per line; "builtin x" for built-in ones.
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(path) = line.strip_prefix("insmod ") {
                    let path = PathBuf::from(path.split_whitespace().next().unwrap_or(path));
                    if !files.contains(&path) {
                        files.push(path);
                    }
                }
            }
        }
        Ok(files)
    }
}

/// The newest kernel of `series` in the apt archive, unpacked under `cache` (reused when it
/// is already there). Falls back to the newest cached one when apt cannot say.
pub fn fetch(series: Series, cache: &Path) -> Result<Kernel> {
    let package = match newest_package(series) {
        Ok(p) => p,
        Err(e) => match newest_cached(series, cache) {
            Some(k) => {
                println!(
                    "vm: {e:#}; using the cached kernel {} instead",
                    k.root.display()
                );
                return Ok(k);
            }
            None => return Err(e),
        },
    };
    let root = cache.join(&package);
    if let Some(kernel) = unpacked(&root) {
        return Ok(kernel);
    }
    println!("vm: fetching {package} into {}", root.display());
    let download = cache.join("download");
    if download.exists() {
        std::fs::remove_dir_all(&download)?;
    }
    std::fs::create_dir_all(&download)?;
    run_step(
        Command::new("apt-get")
            .args(["download", &package])
            .current_dir(&download),
    )?;
    let deb = std::fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    // Unpack beside the final folder and rename, so an interrupted run leaves no half tree.
    let partial = cache.join(format!("{package}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    run_step(Command::new("dpkg").arg("-x").arg(&deb).arg(&partial))?;
    let release = release_in(&partial)?;
    run_step(Command::new("depmod").arg("-b").arg(&partial).arg(&release))?;
    std::fs::rename(&partial, &root)?;
    std::fs::remove_dir_all(&download)?;
    // Older builds of the series are not booted again.
    for old in cached(series, cache).iter().filter(|n| **n != package) {
        println!("vm: removing the older kernel {old}");
        std::fs::remove_dir_all(cache.join(old))?;
    }
    unpacked(&root).with_context(|| format!("{} is incomplete after unpacking", root.display()))
}

/// The newest package name of the series that apt knows; refreshes the lists once if none.
fn newest_package(series: Series) -> Result<String> {
    let search = || -> Result<Vec<String>> {
        let out = Command::new("apt-cache")
            .args(["search", "--names-only", "^linux-image-6\\.1"])
            .output()
            .context("cannot run apt-cache")?;
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(" - ").next())
            .map(str::trim)
            .filter(|n| series.matches(n))
            .map(str::to_owned)
            .collect();
        names.sort_by_key(|n| version_key(n));
        Ok(names)
    };
    let mut names = search()?;
    if names.is_empty() {
        println!(
            "vm: apt knows no {} kernel; refreshing its lists",
            series.label()
        );
        run_step(Command::new("apt-get").arg("update"))?;
        names = search()?;
    }
    names
        .pop()
        .with_context(|| format!("apt knows no {} kernel package", series.label()))
}

/// The numbers in a package name, so 6.1.0-9 sorts before 6.1.0-57.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn newest_cached(series: Series, cache: &Path) -> Option<Kernel> {
    cached(series, cache)
        .iter()
        .rev()
        .find_map(|n| unpacked(&cache.join(n)))
}

/// The series' package folders in the cache, oldest first.
fn cached(series: Series, cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| series.matches(n))
                .collect()
        })
        .unwrap_or_default();
    names.sort_by_key(|n| version_key(n));
    names
}

/// The kernel in `root` if unpacking and depmod finished there.
fn unpacked(root: &Path) -> Option<Kernel> {
    let release = release_in(root).ok()?;
    let kernel = Kernel {
        root: root.to_path_buf(),
        release,
    };
    (kernel.vmlinuz().is_file() && kernel.modules_dir().join("modules.dep.bin").is_file())
        .then_some(kernel)
}

/// The kernel release: the one folder under lib/modules.
fn release_in(root: &Path) -> Result<String> {
    let dir = root.join("lib/modules");
    let mut releases: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    match releases.len() {
        1 => Ok(releases.remove(0)),
        n => bail!("{} holds {n} kernel releases, expected one", dir.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_take_only_their_plain_amd64_packages() {
        assert!(Series::V6_1.matches("linux-image-6.1.0-57-amd64"));
        assert!(!Series::V6_1.matches("linux-image-6.1.0-57-cloud-amd64"));
        assert!(!Series::V6_1.matches("linux-image-6.1.0-57-amd64-dbg"));
        assert!(Series::V6_12.matches("linux-image-6.12.118+deb12-amd64-unsigned"));
        assert!(!Series::V6_12.matches("linux-image-6.12.118+deb12-rt-amd64-unsigned"));
        assert!(!Series::V6_12.matches("linux-image-6.1.0-57-amd64"));
    }

    #[test]
    fn newer_builds_sort_last() {
        let mut names = ["linux-image-6.1.0-57-amd64", "linux-image-6.1.0-9-amd64"];
        names.sort_by_key(|n| version_key(n));
        assert_eq!(names[1], "linux-image-6.1.0-57-amd64");
    }
}
