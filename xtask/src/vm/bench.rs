//! `vm-test --bench`: the bench's per-path table (BPF test runs of every verdict path next
//! to bare XDP_DROP/XDP_PASS programs) and its end-to-end table over the VM's virtio-net NICs
//! (mirror-xdp next to a bare XDP_DROP, natively in the driver), measured in the guest and
//! printed on the host. It writes no file: docs/benchmarks.md holds the host's numbers.

use std::path::Path;

use anyhow::Result;

use super::bridge;
use super::guest::{Step, log_name};
use super::kernel::Kernel;
use super::report::Summary;
use super::run::{GuestRun, MAX_VM_LONG};
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
