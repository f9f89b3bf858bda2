//! Project tasks (`cargo xtask ...`): setup, test, vm-test, demo, bench, man, package. One
//! file (or folder) per task; shared helpers here.

mod bench;
mod demo;
mod man;
mod package;
mod setup;
mod test;
mod vm;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "mirror-xdp project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: apt packages, nightly + rust-src, bpf-linker, bpffs mount.
    Setup,
    /// Setup, then fmt, clippy, unit tests, the root integration tests, and the VM matrix on
    /// 6.1 and 6.12 (stops at first failure).
    Test {
        /// Extra arguments for the integration test run (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, then measure ns per packet of every verdict path next to bare XDP programs
    /// (BPF test-run), the veth testbed end to end, SYN floods and the control plane (and,
    /// in a Debian 6.12 guest, a download over a cookie connection), and write
    /// docs/benchmarks.md. Not part of `test`.
    Bench,
    /// Setup, build in release mode and run the demo against a policy.
    Demo {
        /// Policy file for the demo (default: examples/mirror.toml).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Boot Debian's 6.1 and 6.12 kernels in qemu (software emulation) with the host's root
    /// shared read-only and run the root tests built here inside (the VM matrix).
    VmTest(vm::Args),
    /// Build the CLI and regenerate the man pages (docs/man) and the shell completions
    /// (deploy/completions) from its definition.
    Man,
    /// Setup, then build the release artifacts into target/package: the .deb, the static
    /// (musl) tarball and the OCI image archive.
    Package,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Test { args } => test::run(&args),
        Task::Demo { policy } => demo::run(policy),
        Task::Bench => bench::run(),
        Task::VmTest(args) => vm::run(&args),
        Task::Man => man::run(),
        Task::Package => package::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The error chain in one line; no backtrace of xtask itself (the failing tool
            // already printed what went wrong).
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: every task runs its commands from there, whatever the caller's cwd.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Where release binaries land (honours CARGO_TARGET_DIR).
pub fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| repo_root().join(d))
        .unwrap_or_else(|| repo_root().join("target"))
        .join("release")
}

/// The target folder (honours CARGO_TARGET_DIR).
pub fn target_dir() -> PathBuf {
    release_dir()
        .parent()
        .expect("release dir has a parent")
        .to_path_buf()
}

/// The cargo that runs us (cargo sets $CARGO), so nested builds use the same toolchain.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(repo_root());
    cmd
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Human-readable form of a command, printed before it runs so CI logs show what failed.
pub fn show(cmd: &Command) -> String {
    let mut parts = Vec::new();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            parts.push(format!(
                "{}={}",
                key.to_string_lossy(),
                value.to_string_lossy()
            ));
        }
    }
    parts.push(cmd.get_program().to_string_lossy().into_owned());
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs a command with inherited stdio and fails with its command line if it fails.
pub fn run_step(cmd: &mut Command) -> Result<()> {
    let line = show(cmd);
    println!("+ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}
