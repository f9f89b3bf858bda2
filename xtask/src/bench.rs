//! `cargo xtask bench`: builds in release mode and runs the bench binary, which writes
//! docs/benchmarks.md.

use std::process::Command;

use anyhow::Result;

use crate::{cargo, repo_root, run_step};

pub fn run() -> Result<()> {
    crate::setup::run()?;
    run_step(cargo().args([
        "build",
        "--release",
        "-p",
        "mirror-xdp-tests",
        "--bin",
        "bench",
        // The end-to-end part attaches the CLI found next to the bench binary.
        "-p",
        "mirror-xdp",
        "--bin",
        "mirror-xdp",
    ]))?;
    run_step(
        Command::new(crate::release_dir().join("bench"))
            .current_dir(repo_root())
            .args(["--out", "docs/benchmarks.md"]),
    )
}
