//! `cargo xtask vm-test`: boots Debian's kernels (6.1, 6.12) in qemu with the host's root
//! shared read-only and runs the root tests built on the host inside each guest (the table
//! in matrix.rs), the bench's per-path test runs (`--bench`), or a virtio-net smoke run
//! (`--nic`). `cargo xtask test` runs the matrix after the host suite.

mod cpio;
mod guest;
mod initramfs;
mod kernel;
mod matrix;
mod netns;
mod nic;
mod qemu;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, is_root, repo_root, run_step};
use guest::Step;
use kernel::{Kernel, Series};
use qemu::{TapNic, Vm};
use report::Summary;

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
    /// Run the bench's per-path BPF test runs in the guest and print its table, instead of
    /// the tests.
    #[arg(long, conflicts_with_all = ["nic", "full"])]
    pub bench: bool,
    /// Smoke run of a virtio-net NIC backed by a tap device in the VM's host namespace:
    /// ping and UDP across it, then the enforcer attached in native mode.
    #[arg(long, conflicts_with = "full")]
    pub nic: bool,
    /// Every root test of every test binary, not only the matrix (slow: about 30 min and
    /// more per kernel).
    #[arg(long)]
    pub full: bool,
    /// Run only the tests whose "binary::name" contains this (repeatable).
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["nic", "bench"])]
    pub only: Vec<String>,
}

/// What one VM does.
enum Work {
    Tests { full: bool, only: Vec<String> },
    Bench,
    Nic,
}

/// `cargo xtask vm-test`: setup, build, then the VM runs.
pub fn run(args: &Args) -> Result<()> {
    crate::setup::run()?;
    let work = if args.bench {
        Work::Bench
    } else if args.nic {
        Work::Nic
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
    let mut summaries = Vec::new();
    for &series in kernels {
        let kernel = kernel::fetch(series, &vm_dir.join("kernels"))?;
        println!(
            "vm {}: kernel {} ({})",
            series.label(),
            kernel.release,
            kernel.root.display()
        );
        let label = match work {
            Work::Tests { .. } => series.label().to_owned(),
            Work::Bench => format!("{}-bench", series.label()),
            Work::Nic => format!("{}-nic", series.label()),
        };
        let summary = match work {
            Work::Tests { full, only } => {
                let mut steps = matrix::steps(&binaries, &repo_root().join("tests"), *full)?;
                if !only.is_empty() {
                    steps.retain(|s| only.iter().any(|o| s.label.contains(o.as_str())));
                    if steps.is_empty() {
                        bail!("vm-test: --only matches no test");
                    }
                }
                boot(&label, &kernel, &vm_dir, &steps, Vec::new(), |_| Ok(()))?
            }
            Work::Bench => bench(&label, &kernel, &vm_dir)?,
            Work::Nic => nic::run(&label, &kernel, &vm_dir)?,
        };
        summaries.push(summary);
    }
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

/// Boots one VM that runs `steps`, then judges what it left.
fn boot<G>(
    label: &str,
    kernel: &Kernel,
    vm_dir: &Path,
    steps: &[Step],
    nics: Vec<TapNic>,
    host_side: impl FnOnce(&netns::HostNetns) -> Result<G>,
) -> Result<Summary> {
    boot_with_env(label, kernel, vm_dir, steps, nics, &[], host_side)
}

/// Time for boot, module loading and power-off on top of the steps' own limits.
const BOOT_ALLOWANCE: Duration = Duration::from_secs(180);
/// No VM runs longer than this, whatever its steps' limits add up to.
const MAX_VM: Duration = Duration::from_secs(100 * 60);

fn boot_with_env<G>(
    label: &str,
    kernel: &Kernel,
    vm_dir: &Path,
    steps: &[Step],
    nics: Vec<TapNic>,
    env: &[(&str, String)],
    host_side: impl FnOnce(&netns::HostNetns) -> Result<G>,
) -> Result<Summary> {
    let results = vm_dir.join("runs").join(label);
    if results.exists() {
        std::fs::remove_dir_all(&results)
            .with_context(|| format!("removing {}", results.display()))?;
    }
    std::fs::create_dir_all(&results)?;
    let script = results.join("guest.sh");
    std::fs::write(&script, guest::script(&results, &kernel.root, env, steps))?;
    let keep = keep_paths();
    let initrd = results.join("initrd.cpio");
    let layout = initramfs::Layout {
        kernel,
        keep,
        results: &results,
        script: &script,
    };
    std::fs::write(&initrd, initramfs::build(&layout)?)?;
    let limits: Duration = steps
        .iter()
        .map(|s| Duration::from_secs(s.timeout_secs + 15))
        .sum();
    let vm = Vm {
        label: label.to_owned(),
        kernel,
        initrd,
        results: results.clone(),
        nics,
        cpus: 2,
        memory_mib: 2048,
        deadline: (BOOT_ALLOWANCE + limits).min(MAX_VM),
    };
    println!(
        "vm {label}: booting {} with {} steps (deadline {} s); console in {}",
        kernel.release,
        steps.len(),
        vm.deadline.as_secs(),
        results.join("console.log").display()
    );
    let outcome = vm.run(host_side)?;
    Ok(report::judge(label, steps, &results, &outcome))
}

/// The bench's per-path table (BPF test runs) in the guest, printed on the host.
fn bench(label: &str, kernel: &Kernel, vm_dir: &Path) -> Result<Summary> {
    let step = Step {
        label: "bench --paths-only".into(),
        argv: vec![
            crate::release_dir().join("bench").display().to_string(),
            "--paths-only".into(),
        ],
        cwd: repo_root(),
        timeout_secs: 1800,
        one_test: false,
    };
    let summary = boot(
        label,
        kernel,
        vm_dir,
        std::slice::from_ref(&step),
        Vec::new(),
        |_| Ok(()),
    )?;
    let log = vm_dir.join("runs").join(label).join(guest::log_name(0));
    println!(
        "vm {label}: the bench's per-path table in the guest ({}):",
        kernel.release
    );
    print!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    Ok(summary)
}

/// Host folders the guest must see where its tmpfs would cover them: the repository and
/// the target folder (without one that lies inside the other).
fn keep_paths() -> Vec<PathBuf> {
    let mut paths = vec![repo_root(), target_dir()];
    paths.sort();
    paths.dedup_by(|inner, outer| inner.starts_with(outer));
    paths
}

fn target_dir() -> PathBuf {
    crate::release_dir()
        .parent()
        .expect("release dir has a parent")
        .to_path_buf()
}
