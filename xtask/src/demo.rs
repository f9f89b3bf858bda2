//! `cargo xtask demo`: builds in release mode and runs the demo binary against a policy.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, repo_root, run_step};

pub fn run(policy: Option<PathBuf>) -> Result<()> {
    crate::setup::run()?;
    // A user-given path is relative to where the user stands; the default to the repository.
    let policy = match policy {
        Some(p) => std::fs::canonicalize(&p)
            .with_context(|| format!("demo: policy file {} not found", p.display()))?,
        None => repo_root().join("examples/mirror.toml"),
    };
    if !policy.is_file() {
        bail!("demo: policy file {} not found", policy.display());
    }
    run_step(cargo().args([
        "build",
        "--release",
        "-p",
        "mirror-xdp",
        "-p",
        "mirror-xdp-tests",
    ]))?;
    let target = crate::release_dir();
    run_step(
        Command::new(target.join("demo"))
            .current_dir(repo_root())
            .arg("--policy")
            .arg(&policy)
            .arg("--mirror-xdp")
            .arg(target.join("mirror-xdp")),
    )
}
