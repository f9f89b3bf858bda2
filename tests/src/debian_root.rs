//! A clean Debian 12 root for the package tests: debootstrap makes it once into a cache
//! folder (about 4 min, from Debian's archive), and every test gets its own copy-on-write
//! view of it (an overlay mount), with /proc and /dev, to chroot into. Dropping the view
//! unmounts everything and throws the changes away, even when the test fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// Where the root is cached between runs (outside the checkout, so a fresh clone reuses it).
const CACHE: &str = "/var/cache/mirror-xdp-tests/debian12-root";
/// What the root holds besides Debian's minimal base: systemd for `systemd-analyze verify`
/// and `systemctl is-enabled`, man-db for `man -w`. A change here rebuilds the cache.
const DEBOOTSTRAP_ARGS: &[&str] = &["--variant=minbase", "--include=systemd,man-db", "bookworm"];
const MIRROR: &str = "http://deb.debian.org/debian";
/// What the cache was made with, in its root: a different value rebuilds it.
const STAMP: &str = ".mirror-xdp-tests-root";
/// Bound on debootstrap and on every command in the root.
const TIMEOUT_SECS: &str = "900";

/// A throw-away view of the cached root, mounted and ready to chroot into.
pub struct DebianRoot {
    /// upper/, work/ and root/ (the merged view).
    dir: TempDir,
    /// What is mounted, innermost last.
    mounts: Vec<PathBuf>,
}

impl DebianRoot {
    /// A fresh view; makes the cache first if it is missing or stale.
    pub fn fresh() -> Result<DebianRoot> {
        let cache = cached()?;
        let dir = tempfile::Builder::new().prefix("mx-debroot-").tempdir()?;
        let (upper, work, root) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("root"),
        );
        for d in [&upper, &work, &root] {
            std::fs::create_dir(d)?;
        }
        let mut view = DebianRoot {
            dir,
            mounts: Vec::new(),
        };
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            cache.display(),
            upper.display(),
            work.display()
        );
        view.mount(&["-t", "overlay", "overlay", "-o", &options], &root)?;
        view.mount(&["-t", "proc", "proc"], &root.join("proc"))?;
        view.mount(&["--bind", "/dev"], &root.join("dev"))?;
        Ok(view)
    }

    /// The root folder (the merged view).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `sh -c script` chrooted into the root, with a clean environment, bounded in time.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("timeout")
            .arg(TIMEOUT_SECS)
            .arg("chroot")
            .arg(self.path())
            .args(["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
            .args([
                "DEBIAN_FRONTEND=noninteractive",
                "LC_ALL=C.UTF-8",
                "HOME=/root",
            ])
            .args(["/bin/sh", "-c", script])
            .output()
            .expect("running chroot")
    }

    /// Like [`DebianRoot::sh`], but panics with the output unless the script exits 0;
    /// returns its stdout.
    #[track_caller]
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the Debian 12 root: `{script}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every path in the root, but the mounted /proc and /dev and the scratch folders.
    pub fn paths(&self) -> BTreeSet<String> {
        let root = self.path();
        let mut found = BTreeSet::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for entry in entries {
                let entry = entry.expect("directory entry");
                let path = entry.path();
                let rel = path
                    .strip_prefix(&root)
                    .expect("under the root")
                    .to_string_lossy()
                    .into_owned();
                if ["proc", "dev", "sys", "run", "tmp"].contains(&rel.as_str()) {
                    continue;
                }
                if entry.file_type().expect("file type").is_dir() {
                    stack.push(path);
                }
                found.insert(rel);
            }
        }
        found
    }

    fn mount(&mut self, args: &[&str], target: &Path) -> Result<()> {
        let out = Command::new("mount").args(args).arg(target).output()?;
        if !out.status.success() {
            bail!(
                "mount {args:?} {}: {}",
                target.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.mounts.push(target.to_path_buf());
        Ok(())
    }
}

impl Drop for DebianRoot {
    fn drop(&mut self) {
        for target in self.mounts.iter().rev() {
            // Lazy: a process the test left inside must not keep the mount (and so the
            // temporary folder) alive.
            let _ = Command::new("umount").arg("-l").arg(target).status();
        }
    }
}

/// The cached root, made now if it is missing or was made with other arguments.
fn cached() -> Result<PathBuf> {
    let cache = PathBuf::from(CACHE);
    let want = format!("{} {MIRROR}\n", DEBOOTSTRAP_ARGS.join(" "));
    if std::fs::read_to_string(cache.join(STAMP)).is_ok_and(|have| have == want) {
        return Ok(cache);
    }
    let partial = cache.with_extension("partial");
    for old in [&cache, &partial] {
        if old.exists() {
            std::fs::remove_dir_all(old).with_context(|| format!("removing {}", old.display()))?;
        }
    }
    std::fs::create_dir_all(partial.parent().expect("cache has a parent"))?;
    eprintln!(
        "debian root: making {} with debootstrap (once; about 4 min)",
        cache.display()
    );
    let out = Command::new("timeout")
        .arg(TIMEOUT_SECS)
        .arg("debootstrap")
        .args(DEBOOTSTRAP_ARGS)
        .arg(&partial)
        .arg(MIRROR)
        .output()
        .context("running debootstrap (Debian package debootstrap: cargo xtask setup)")?;
    if !out.status.success() {
        bail!(
            "debootstrap failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    std::fs::write(partial.join(STAMP), want)?;
    std::fs::rename(&partial, &cache)?;
    Ok(cache)
}
