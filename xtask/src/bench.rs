//! `cargo xtask bench`: builds in release mode, runs the bench's cookie download in a
//! Debian guest (it needs netem, which the host's kernel lacks), then the bench binary on
//! the host, which writes docs/benchmarks.md with the guest's figures.

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
    let cookie_figures = crate::vm::bench_cookie_download()?;
    run_step(
        Command::new(crate::release_dir().join("bench"))
            .current_dir(repo_root())
            .args(["--out", "docs/benchmarks.md", "--cookie-download"])
            .arg(cookie_figures),
    )
}
