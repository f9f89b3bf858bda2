//! `cargo xtask vm-test`: boots Debian's kernels (6.1, 6.12) in qemu with the host's root
//! shared read-only and runs the root tests built on the host inside each guest (the table
//! in matrix.rs; the VM has two virtio-net NICs bridged on its host side, bridge.rs) or the
//! bench's per-path test runs and its end-to-end runs over virtio-net (`--bench`).
//! `cargo xtask test` runs the matrix after the host suite.

mod bench;
mod bridge;
mod cpio;
mod guest;
mod initramfs;
mod kernel;
mod matrix;
mod netns;
mod qemu;
mod report;
mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, is_root, repo_root, run_step};
use kernel::Series;
use run::{GuestRun, MAX_VM, MAX_VM_LONG};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelChoice {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    All,
}

impl KernelChoice {
    fn series(self) -> Vec<Series> {
        match self {
            KernelChoice::V6_1 => vec![Series::V6_1],
            KernelChoice::V6_12 => vec![Series::V6_12],
            KernelChoice::All => vec![Series::V6_1, Series::V6_12],
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kernel to boot: Debian 12's stock 6.1, the 6.12 series, or both (6.1 first).
    #[arg(long, value_enum, default_value = "all")]
    pub kernel: KernelChoice,
    /// Run the bench in the guest instead of the tests: its per-path BPF test runs, and
    /// mirror-xdp next to a bare XDP_DROP end to end over the VM's virtio-net NICs.
    #[arg(long, conflicts_with = "full")]
    pub bench: bool,
    /// Every root test of every test binary, not only the matrix (slow: about 90 min per
    /// kernel).
    #[arg(long)]
    pub full: bool,
    /// Run only the tests whose "binary::name" contains this (repeatable).
    #[arg(long, value_name = "TEXT", conflicts_with = "bench")]
    pub only: Vec<String>,
}

/// What one VM does.
enum Work {
    Tests { full: bool, only: Vec<String> },
    Bench,
}

/// `cargo xtask vm-test`: setup, build, then the VM runs.
pub fn run(args: &Args) -> Result<()> {
    crate::setup::run()?;
    let work = if args.bench {
        Work::Bench
    } else {
        Work::Tests {
            full: args.full,
            only: args.only.clone(),
        }
    };
    run_kernels(&args.kernel.series(), &work)
}

/// The VM matrix on both kernels, as `cargo xtask test` runs it after the host suite.
pub fn run_matrix() -> Result<()> {
    run_kernels(
        &KernelChoice::All.series(),
        &Work::Tests {
            full: false,
            only: Vec::new(),
        },
    )
}

fn run_kernels(kernels: &[Series], work: &Work) -> Result<()> {
    if !is_root() {
        bail!("vm-test: qemu runs in a network namespace of its own, which needs root");
    }
    let started = Instant::now();
    let binaries = build(work)?;
    if let Work::Tests { full: false, .. } = work {
        matrix::print();
    }
    let vm_dir = target_dir().join("vm");
    let mut guests = Vec::new();
    for &series in kernels {
        let kernel = kernel::fetch(series, &vm_dir.join("kernels"))?;
        println!(
            "vm {}: kernel {} ({})",
            series.label(),
            kernel.release,
            kernel.root.display()
        );
        guests.push((series, kernel));
    }
    let summaries = match work {
        Work::Tests { full, only } => {
            let mut steps = matrix::steps(&binaries, &repo_root().join("tests"), *full)?;
            if !only.is_empty() {
                steps.retain(|s| only.iter().any(|o| s.label.contains(o.as_str())));
                if steps.is_empty() {
                    bail!("vm-test: --only matches no test");
                }
            }
            let max = if *full { MAX_VM_LONG } else { MAX_VM };
            // The kernels' VMs run side by side: each is one host thread (single-threaded
            // TCG), so on a 2-core machine both fit in the time of the slower one.
            std::thread::scope(|scope| {
                let runs: Vec<_> = guests
                    .iter()
                    .map(|(series, kernel)| {
                        let (vm_dir, steps) = (&vm_dir, &steps);
                        scope.spawn(move || {
                            let mut run = GuestRun::new(series.label(), kernel, vm_dir, steps, max);
                            run.nics = bridge::nics();
                            run.boot(bridge::connect)
                        })
                    })
                    .collect();
                runs.into_iter()
                    .map(|run| run.join().expect("a VM's thread panicked"))
                    .collect::<Result<Vec<_>>>()
            })?
        }
        // One at a time: the bench measures.
        Work::Bench => guests
            .iter()
            .map(|(s, k)| bench::run(&format!("{}-bench", s.label()), k, &vm_dir))
            .collect::<Result<Vec<_>>>()?,
    };
    println!("vm: summary");
    for s in &summaries {
        let verdict = if s.ok() { "passed" } else { "FAILED" };
        println!(
            "  {:<10} {verdict}: {} passed, {} failed, VM wall time {}",
            s.label,
            s.passed,
            s.failed.len(),
            report::minutes(s.wall)
        );
    }
    println!("vm: total {}", report::minutes(started.elapsed()));
    let failed: Vec<String> = summaries
        .iter()
        .filter(|s| !s.ok())
        .map(|s| format!("{}: {}", s.label, s.failed.join(", ")))
        .collect();
    if !failed.is_empty() {
        bail!("vm-test failed: {}", failed.join("; "));
    }
    Ok(())
}

/// Builds the release CLI (with test support, as `cargo xtask test` does) and the test
/// binaries, and says where cargo put them.
fn build(work: &Work) -> Result<BTreeMap<String, PathBuf>> {
    run_step(cargo().args([
        "build",
        "--release",
        "-p",
        "mirror-xdp",
        "--features",
        "test-support",
    ]))?;
    if let Work::Bench = work {
        run_step(cargo().args([
            "build",
            "--release",
            "-p",
            "mirror-xdp-tests",
            "--bin",
            "bench",
        ]))?;
        return Ok(BTreeMap::new());
    }
    let mut cmd = cargo();
    cmd.args([
        "test",
        "-p",
        "mirror-xdp-tests",
        "--release",
        "--no-run",
        "--message-format=json",
    ]);
    println!("+ {}", crate::show(&cmd));
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!("building the test binaries failed");
    }
    matrix::test_binaries(&String::from_utf8_lossy(&out.stdout))
}

/// Host folders the guest must see where its tmpfs would cover them: the repository and
/// the target folder (without one that lies inside the other).
pub(super) fn keep_paths() -> Vec<PathBuf> {
    let mut paths = vec![repo_root(), target_dir()];
    paths.sort();
    paths.dedup_by(|inner, outer| inner.starts_with(outer));
    paths
}

pub(super) fn target_dir() -> PathBuf {
    crate::release_dir()
        .parent()
        .expect("release dir has a parent")
        .to_path_buf()
}
