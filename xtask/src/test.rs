//! `cargo xtask test`: the whole check CI runs, in order, stopping at the first failure: the
//! host's suite, then the VM matrix on the other supported kernels.

use anyhow::{Result, bail};

use crate::{cargo, is_root, run_step};

pub fn run(extra: &[String]) -> Result<()> {
    crate::setup::run()?;

    step(
        "formatting",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        "unit tests",
        cargo().args(["test", "--workspace", "--exclude", "mirror-xdp-tests"]),
    )?;

    // BPF test runs, veth namespaces and bpffs pins all need CAP_BPF/CAP_NET_ADMIN.
    if !is_root() {
        bail!(
            "test: integration tests (mirror-xdp-tests) need root for BPF and network \
             namespaces; the steps before passed; rerun `cargo xtask test` as root"
        );
    }
    // The library's own root tests (BPF maps) are #[ignore]d so that a plain `cargo test`
    // lists them as ignored instead of passing them; here they run, with the release-only
    // timing tests that are ignored for the same reason. Before the CLI build below: this
    // builds the CLI too (for mirror-xdp's own integration tests), without test support.
    step(
        "ignored unit tests (root, release timings)",
        cargo().args([
            "test",
            "--workspace",
            "--exclude",
            "mirror-xdp-tests",
            "--release",
            "--",
            "--ignored",
        ]),
    )?;
    // The namespace tests drive the real CLI binary, which `cargo test` does not build;
    // with test-support, so tests/tests/faults.rs can kill it at its crash points
    // (`MIRROR_XDP_FAULT`). A shipped build (`cargo build --release -p mirror-xdp`) has none.
    step(
        "release build of the CLI, with test support",
        cargo().args([
            "build",
            "--release",
            "-p",
            "mirror-xdp",
            "--features",
            "test-support",
        ]),
    )?;
    // The release artifacts, which tests/tests/package.rs installs and runs (built for
    // explicit targets: the test-support build above stays as it is).
    println!("test: packages (cargo xtask package)");
    crate::package::run().map_err(|e| e.context("test: step `packages` failed"))?;
    // `tests` is not a default member, so it is named here; a root test that cannot run
    // panics (mirror_xdp_tests::require_root), it never passes by returning early.
    step(
        "integration tests",
        cargo()
            .args(["test", "-p", "mirror-xdp-tests", "--release", "--"])
            .arg("--test-threads=1")
            .args(extra),
    )?;
    // The same root tests on the kernels the project supports (Debian 12's 6.1, the 6.12
    // series), each in a VM: the matrix in xtask/src/vm/matrix.rs.
    println!("test: VM matrix (6.1 and 6.12)");
    crate::vm::run_matrix().map_err(|e| e.context("test: step `VM matrix` failed"))?;
    println!("test: all steps passed");
    Ok(())
}

fn step(name: &str, cmd: &mut std::process::Command) -> Result<()> {
    println!("test: {name}");
    // So a panicking test (or build script) shows where it panicked.
    cmd.env("RUST_BACKTRACE", "1");
    run_step(cmd).map_err(|e| e.context(format!("test: step `{name}` failed")))
}
