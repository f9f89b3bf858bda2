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

use crate::{cargo, is_root, repo_root, run_step, target_dir};
use guest::Step;
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
            std::thread::scope(|scope| {
                let runs: Vec<_> = lanes(&guests, &steps)
                    .into_iter()
                    .map(|lane| {
                        let vm_dir = &vm_dir;
                        scope.spawn(move || {
                            let mut summaries = Vec::new();
                            for guest in lane {
                                let mut run = GuestRun::new(
                                    &guest.label,
                                    guest.kernel,
                                    vm_dir,
                                    &guest.steps,
                                    max,
                                );
                                run.nics = bridge::nics();
                                summaries.push(run.boot(bridge::connect)?);
                            }
                            Ok::<_, anyhow::Error>(summaries)
                        })
                    })
                    .collect();
                let mut summaries = Vec::new();
                for run in runs {
                    summaries.extend(run.join().expect("a VM's thread panicked")?);
                }
                Ok::<_, anyhow::Error>(summaries)
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

/// `cargo xtask bench`'s guest part (the bench and the CLI already built): the download
/// over a cookie connection, in a Debian 6.12 guest; returns the file of its figures.
pub fn bench_cookie_download() -> Result<PathBuf> {
    if !is_root() {
        bail!("bench: qemu runs in a network namespace of its own, which needs root");
    }
    let vm_dir = target_dir().join("vm");
    let kernel = kernel::fetch(Series::V6_12, &vm_dir.join("kernels"))?;
    bench::cookie_download(&kernel, &vm_dir)
}

/// One guest of a test run: names its results folder and report lines.
struct Guest<'a, K> {
    label: String,
    kernel: &'a K,
    steps: Vec<Step>,
}

/// The guests of a test run in two lanes that run side by side (each guest is one host
/// thread, single-threaded TCG, and the machine has two cores), a lane's guests one after
/// the other. A 6.1 guest runs the matrix about 3.5x slower than a 6.12 one (its verifier
/// needs 16 s per program load), so 6.1's second-guest steps (matrix.rs) boot in a 6.1
/// guest of their own once the other lane's guest is done: both kernels take about 45 min
/// instead of 69.
fn lanes<'a, K>(kernels: &'a [(Series, K)], steps: &[Step]) -> [Vec<Guest<'a, K>>; 2] {
    let mut lanes: [Vec<Guest<K>>; 2] = [Vec::new(), Vec::new()];
    let mut second_guests = Vec::new();
    for (i, (series, kernel)) in kernels.iter().enumerate() {
        let split = *series == Series::V6_1;
        let (second, first): (Vec<Step>, Vec<Step>) =
            steps.iter().cloned().partition(|s| split && s.second_guest);
        let label = series.label();
        if !first.is_empty() {
            lanes[i % 2].push(Guest {
                label: label.to_owned(),
                kernel,
                steps: first,
            });
        }
        if !second.is_empty() {
            second_guests.push(Guest {
                label: format!("{label}-2"),
                kernel,
                steps: second,
            });
        }
    }
    lanes[1].extend(second_guests);
    lanes
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

#[cfg(test)]
mod tests {
    use super::*;

    fn step(label: &str, second_guest: bool) -> Step {
        Step::for_test(label, second_guest)
    }

    fn shape(lanes: &[Vec<Guest<'_, ()>>; 2]) -> Vec<Vec<(String, Vec<String>)>> {
        lanes
            .iter()
            .map(|lane| {
                lane.iter()
                    .map(|g| {
                        (
                            g.label.clone(),
                            g.steps.iter().map(|s| s.label.clone()).collect(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_slow_kernels_second_guest_follows_the_other_kernel() {
        let steps = [step("a", false), step("long", true), step("b", false)];
        let both = [(Series::V6_1, ()), (Series::V6_12, ())];
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shape(&lanes(&both, &steps)),
            vec![
                vec![("6.1".into(), s(&["a", "b"]))],
                vec![
                    ("6.12".into(), s(&["a", "long", "b"])),
                    ("6.1-2".into(), s(&["long"]))
                ],
            ]
        );
        // One kernel: its two guests side by side.
        let one = [(Series::V6_1, ())];
        assert_eq!(
            shape(&lanes(&one, &steps)),
            vec![
                vec![("6.1".into(), s(&["a", "b"]))],
                vec![("6.1-2".into(), s(&["long"]))]
            ]
        );
        // No guest without steps.
        assert_eq!(
            shape(&lanes(&one, &steps[1..2])),
            vec![vec![], vec![("6.1-2".into(), s(&["long"]))]]
        );
    }
}
