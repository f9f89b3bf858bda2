//! One guest run: writes the guest script and the initramfs into the run's results folder,
//! boots the VM with a deadline from its steps' limits, and judges what the guest left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::guest::{self, Step};
use super::initramfs;
use super::kernel::Kernel;
use super::netns::HostNetns;
use super::qemu::{TapNic, Vm};
use super::report::{self, Summary};

/// Time for boot, module loading and power-off on top of the steps' own limits.
const BOOT_ALLOWANCE: Duration = Duration::from_secs(180);
/// No VM runs longer than this, whatever its steps' limits add up to: the matrix takes
/// about 45 min here in two lanes (a 6.1 guest; a 6.12 guest then a second 6.1 guest, see
/// mod.rs), and CI must fit it after the host suite (about 19 min) in 90; a CI machine
/// slower than this one must not hit the bound.
pub const MAX_VM: Duration = Duration::from_secs(75 * 60);
/// The same bound for `--full` and `--bench`, which are not part of CI.
pub const MAX_VM_LONG: Duration = Duration::from_secs(100 * 60);

/// The folder a guest run labelled `label` writes its results and logs to.
pub fn results_dir(vm_dir: &Path, label: &str) -> PathBuf {
    vm_dir.join("runs").join(label)
}

pub struct GuestRun<'a> {
    /// Names the results folder (target/vm/runs/<label>) and the report lines.
    pub label: &'a str,
    pub kernel: &'a Kernel,
    pub vm_dir: &'a Path,
    pub steps: &'a [Step],
    pub nics: Vec<TapNic>,
    /// Extra environment for every step.
    pub env: Vec<(&'static str, String)>,
    /// The VM's deadline is the steps' limits added up, at most this.
    pub max: Duration,
}

impl<'a> GuestRun<'a> {
    pub fn new(
        label: &'a str,
        kernel: &'a Kernel,
        vm_dir: &'a Path,
        steps: &'a [Step],
        max: Duration,
    ) -> Self {
        GuestRun {
            label,
            kernel,
            vm_dir,
            steps,
            nics: Vec::new(),
            env: Vec::new(),
            max,
        }
    }

    /// The folder the guest writes its results and logs to.
    pub fn results(&self) -> PathBuf {
        results_dir(self.vm_dir, self.label)
    }

    /// Boots the VM (see [`Vm::run`] for `host_side`) and judges the steps.
    pub fn boot<G>(self, host_side: impl FnOnce(&HostNetns) -> Result<G>) -> Result<Summary> {
        let results = self.results();
        if results.exists() {
            std::fs::remove_dir_all(&results)
                .with_context(|| format!("removing {}", results.display()))?;
        }
        std::fs::create_dir_all(&results)?;
        let script = results.join("guest.sh");
        let env: Vec<(&str, String)> = self.env.clone();
        std::fs::write(
            &script,
            guest::script(&results, &self.kernel.root, &env, self.steps),
        )?;
        let initrd = results.join("initrd.cpio");
        let layout = initramfs::Layout {
            kernel: self.kernel,
            keep: super::keep_paths(),
            results: &results,
            script: &script,
        };
        std::fs::write(&initrd, initramfs::build(&layout)?)?;
        let limits: Duration = self
            .steps
            .iter()
            .map(|s| Duration::from_secs(s.timeout_secs + 15))
            .sum();
        let vm = Vm {
            label: self.label.to_owned(),
            kernel: self.kernel,
            initrd,
            results: results.clone(),
            nics: self.nics,
            cpus: 2,
            memory_mib: 2048,
            deadline: (BOOT_ALLOWANCE + limits).min(self.max),
        };
        println!(
            "vm {}: booting {} with {} steps (deadline {} s); console in {}",
            self.label,
            self.kernel.release,
            self.steps.len(),
            vm.deadline.as_secs(),
            results.join("console.log").display()
        );
        let outcome = vm.run(host_side)?;
        Ok(report::judge(self.label, self.steps, &results, &outcome))
    }
}
