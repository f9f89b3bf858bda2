//! The script the guest runs (chrooted into the host's root, see initramfs.rs): loads the
//! modules the tests use, then runs each step under `timeout`, its output to a log in the
//! results folder and one line per step to results.tsv, reporting progress on the console.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::initramfs::quote;
use super::qemu::REPORT_PREFIX;

/// Modules loaded up front (autoloading works too, through the initramfs' modprobe hook,
/// but explicit loads fail loudly; no udev loads drivers for devices): veth pairs, tc clsact
/// with bpf filters, the virtio-net driver (the VM's NICs, bridge.rs), the tun device,
/// VLANs, bonds, the nftables/iptables hooks the comparisons use, and netem's delay.
pub const MODULES: &[&str] = &[
    "veth",
    "virtio_net",
    "sch_ingress",
    "cls_bpf",
    "tun",
    "8021q",
    "bonding",
    "nf_tables",
    "nft_chain_nat",
    "iptable_raw",
    "ip6table_raw",
    "sch_netem",
];

/// One command the guest runs.
#[derive(Clone)]
pub struct Step {
    /// Shown in reports ("enforcer::nmap_sees_exactly...").
    pub label: String,
    /// argv of the command.
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub timeout_secs: u64,
    /// A single libtest test: passing also needs its log to say exactly one test passed.
    pub one_test: bool,
    /// Runs in a second guest where the kernel is slow (mod.rs).
    pub second_guest: bool,
}

#[cfg(test)]
impl Step {
    /// A step that runs `true`, for the reports' and lanes' unit tests.
    pub fn for_test(label: &str, second_guest: bool) -> Step {
        Step {
            label: label.into(),
            argv: vec!["true".into()],
            cwd: "/".into(),
            timeout_secs: 10,
            one_test: true,
            second_guest,
        }
    }
}

pub const RESULTS_FILE: &str = "results.tsv";

/// How many times longer the tests' bounds on time are in a guest (tests/src/wait.rs reads
/// it): software emulation runs the suite about 5x slower than the host in a 6.12 guest, and
/// 6.1's verifier takes about 8x as long as 6.12's for the XDP program (16 s per load).
const SLOWDOWN: u32 = 10;

/// Log file of step `i` in the results folder.
pub fn log_name(i: usize) -> String {
    format!("step-{i:03}.log")
}

/// The script text; `results` is the writable shared folder, `kernel_root` the unpacked
/// kernel (modprobe -d), `env` extra environment for every step.
pub fn script(
    results: &Path,
    kernel_root: &Path,
    env: &[(&str, String)],
    steps: &[Step],
) -> String {
    let mut s = String::from("#!/bin/sh\n");
    let r = quote(results);
    let _ = writeln!(
        s,
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
         HOME=/root RUST_BACKTRACE=1 MIRROR_XDP_TEST_SLOWDOWN={SLOWDOWN}"
    );
    for (key, value) in env {
        let _ = writeln!(s, "export {key}={}", quote(Path::new(value)));
    }
    let _ = writeln!(
        s,
        "say() {{ echo \"{REPORT_PREFIX} $*\" > /dev/console; }}\n\
         say \"kernel $(uname -r), $(nproc) CPUs, booted in $(cut -d' ' -f1 /proc/uptime) s\"\n\
         ip link set lo up\n\
         for m in {modules}; do\n  \
           modprobe -d {k} $m || say \"modprobe $m failed\"\n\
         done > {r}/modprobe.log 2>&1\n\
         : > {r}/{RESULTS_FILE}",
        modules = MODULES.join(" "),
        k = quote(kernel_root),
    );
    let n = steps.len();
    for (i, step) in steps.iter().enumerate() {
        let argv: Vec<String> = step.argv.iter().map(|a| quote(Path::new(a))).collect();
        let _ = writeln!(
            s,
            "start=$(date +%s%N)\n\
             (cd {cwd} && exec timeout -k 10 {t} {argv}) > {r}/{log} 2>&1\n\
             rc=$?\n\
             ms=$(( ($(date +%s%N) - start) / 1000000 ))\n\
             printf '%s\\t%s\\t%s\\n' {i} $rc $ms >> {r}/{RESULTS_FILE}\n\
             if [ $rc = 0 ]; then v=ok; elif [ $rc = 124 ]; then v='TIMED OUT'; else v=\"FAILED ($rc)\"; fi\n\
             say \"[{k}/{n}] {label}: $v ($((ms / 1000)) s)\"",
            cwd = quote(&step.cwd),
            t = step.timeout_secs,
            argv = argv.join(" "),
            log = log_name(i),
            k = i + 1,
            label = step.label.replace(['"', '$', '`', '\\'], "_"),
        );
    }
    let _ = writeln!(s, "say done\nsync");
    s
}
