//! `cargo xtask package`: the release artifacts in target/package/ (README, "Install"):
//! - `mirror-xdp_<version>_amd64.deb`: the glibc build with the service, policy, man pages,
//!   completions and deploy files (deb.rs, cargo-deb);
//! - `mirror-xdp-<version>-x86_64-linux-musl.tar.gz`: the static musl build with the README,
//!   man pages and deploy/ (tarball.rs);
//! - `mirror-xdp-<version>-oci.tar`: that static binary in an OCI image archive (oci.rs).
//!
//! Both binaries are built with `--target`, into target/<triple>/release: never the test
//! build in target/release, which has the test-support feature.

mod deb;
mod oci;
mod tarball;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, repo_root, run_step};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const GNU: &str = "x86_64-unknown-linux-gnu";
const MUSL: &str = "x86_64-unknown-linux-musl";

pub fn run() -> Result<()> {
    crate::setup::run()?;
    let started = Instant::now();
    let out = out_dir();
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    std::fs::create_dir_all(&out)?;
    for triple in [GNU, MUSL] {
        // Without symbols: a third of the size (the eBPF object inside keeps its BTF).
        run_step(cargo().args([
            "build",
            "--release",
            "--locked",
            "--config",
            "profile.release.strip=\"symbols\"",
            "-p",
            "mirror-xdp",
            "--target",
            triple,
        ]))?;
    }
    let stamp = Stamp::of_head()?;
    let musl = binary(MUSL);
    tarball::ensure_static(&musl)?;
    let artifacts = [
        deb::build(&out, GNU)?,
        tarball::build(&out, &musl, &stamp)?,
        oci::build(&out, &musl, &stamp)?,
    ];
    for artifact in &artifacts {
        let size = std::fs::metadata(artifact)?.len();
        println!(
            "package: {} ({:.1} MiB)",
            artifact.display(),
            size as f64 / (1024.0 * 1024.0)
        );
    }
    println!("package: done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// target/package, where the artifacts go (and, under staging/, what the .deb is made of).
pub fn out_dir() -> PathBuf {
    repo_root().join("target").join("package")
}

/// The release binary built for `triple`.
fn binary(triple: &str) -> PathBuf {
    crate::target_dir()
        .join(triple)
        .join("release")
        .join("mirror-xdp")
}

/// What the archives record about the build: the commit, and its time as every file's
/// time, so the same commit gives the same archives.
pub struct Stamp {
    pub commit: String,
    /// Seconds since the epoch.
    pub time: u64,
    /// The same time in RFC 3339, UTC.
    pub created: String,
}

impl Stamp {
    fn of_head() -> Result<Stamp> {
        let out = Command::new("git")
            .current_dir(repo_root())
            .env("TZ", "UTC")
            .args([
                "log",
                "-1",
                "--date=format-local:%Y-%m-%dT%H:%M:%SZ",
                "--format=%H %ct %cd",
            ])
            .output()
            .context("running git")?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.split_whitespace().collect::<Vec<_>>()[..] {
            [commit, time, created] if out.status.success() => Ok(Stamp {
                commit: commit.to_owned(),
                time: time.parse().context("git's commit time")?,
                created: created.to_owned(),
            }),
            _ => bail!("package: no git commit to stamp the archives with"),
        }
    }
}

/// `bytes` gzip-compressed at the best level, with no name or time in its header.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// The files of a folder, recursively, sorted, as paths relative to it.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(dir.join(&rel))
            .with_context(|| format!("reading {}", dir.join(&rel).display()))?
        {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}
