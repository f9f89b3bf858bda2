//! `vm-test --bench`: the bench's per-path table (BPF test runs of every verdict path next
//! to bare XDP_DROP/XDP_PASS programs) measured in the guest and printed on the host. It
//! writes no file: docs/benchmarks.md holds the host's numbers.

use std::path::Path;

use anyhow::Result;

use super::guest::{Step, log_name};
use super::kernel::Kernel;
use super::report::Summary;
use super::run::{GuestRun, MAX_VM_LONG};
use crate::repo_root;

pub fn run(label: &str, kernel: &Kernel, vm_dir: &Path) -> Result<Summary> {
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
    let run = GuestRun::new(
        label,
        kernel,
        vm_dir,
        std::slice::from_ref(&step),
        MAX_VM_LONG,
    );
    let log = run.results().join(log_name(0));
    let summary = run.boot(|_| Ok(()))?;
    println!(
        "vm {label}: the bench's per-path table in the guest ({}):",
        kernel.release
    );
    print!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    Ok(summary)
}
