//! `vm-test --bench`: the bench's per-path table (BPF test runs of every verdict path next
//! to bare XDP_DROP/XDP_PASS programs) and its end-to-end table over the VM's virtio-net NICs
//! (mirror-xdp next to a bare XDP_DROP, natively in the driver), measured in the guest and
//! printed on the host. It writes no file: docs/benchmarks.md holds the host's numbers.
//!
//! `cargo xtask bench` runs one part of its own report in a guest: the download over a
//! connection made from a SYN cookie, which needs netem (the host's kernel has none).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::bridge;
use super::guest::{Step, log_name};
use super::kernel::Kernel;
use super::report::Summary;
use super::run::{GuestRun, MAX_VM_LONG, results_dir};
use crate::repo_root;

pub fn run(label: &str, kernel: &Kernel, vm_dir: &Path) -> Result<Summary> {
    let bench = crate::release_dir().join("bench").display().to_string();
    let step = |label: &str, arg: &str| Step {
        label: label.into(),
        argv: vec![bench.clone(), arg.into()],
        cwd: repo_root(),
        timeout_secs: 1800,
        one_test: false,
        second_guest: false,
    };
    let steps = [
        step("bench --paths-only", "--paths-only"),
        step("bench --virtio-only", "--virtio-only"),
    ];
    let mut run = GuestRun::new(label, kernel, vm_dir, &steps, MAX_VM_LONG);
    run.nics = bridge::nics();
    let logs: Vec<_> = (0..steps.len())
        .map(|i| run.results().join(log_name(i)))
        .collect();
    let summary = run.boot(bridge::connect)?;
    println!(
        "vm {label}: the bench's tables in the guest ({}):",
        kernel.release
    );
    for log in logs {
        print!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    Ok(summary)
}

/// The bench's download over a cookie connection next to a normal one, in a guest of
/// `kernel`; returns the file of figures it saved, for the host's bench to report.
pub fn cookie_download(kernel: &Kernel, vm_dir: &Path) -> Result<PathBuf> {
    let label = "cookie-download";
    let figures = results_dir(vm_dir, label).join("cookie-download.json");
    let steps = [Step {
        label: "bench --cookie-download-only".into(),
        argv: vec![
            crate::release_dir().join("bench").display().to_string(),
            "--cookie-download-only".into(),
            "--save".into(),
            figures.display().to_string(),
        ],
        cwd: repo_root(),
        // Each download is bounded (curl --max-time 60, the flood 120 s): ample.
        timeout_secs: 900,
        one_test: false,
        second_guest: false,
    }];
    let run = GuestRun::new(label, kernel, vm_dir, &steps, MAX_VM_LONG);
    let log = run.results().join(log_name(0));
    let summary = run.boot(|_| Ok(()))?;
    print!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    if !summary.ok() || !figures.is_file() {
        bail!(
            "the guest's cookie download failed; its log: {}",
            log.display()
        );
    }
    Ok(figures)
}
