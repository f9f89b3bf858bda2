//! The egress hooks the tests run with (`attach --egress-hook`), what the kernel accepts,
//! and what `tc` shows on an interface. Tests that matter for both hooks run twice: with
//! `auto` (TCX where the kernel has it, the tc filter on Linux 6.1) and with `tc`.

use std::process::Output;

use mirror_xdp::lifecycle::{Sizes, egress, object};

use crate::netns::Netns;

/// The `--egress-hook` values a hook-parametrized test runs with.
pub const HOOKS: [&str; 2] = ["auto", "tc"];

/// Whether the kernel links a TCX egress program to `iface` in `ns`: the test's own probe
/// (aya with the enforcer's egress program, detached again at once), to compare with what
/// `attach --egress-hook auto` picked.
pub fn kernel_accepts_tcx(ns: &Netns, iface: &str) -> bool {
    ns.enter(|| {
        let sizes = object::MapSizes {
            limiter: Sizes::default().limiter_entries,
            blocks_v4: 1,
            blocks_v6: 1,
            sources_v4: 1024,
            sources_v6: 1024,
            egress_ports: 1,
        };
        let mut ebpf = object::load(None, sizes).expect("loading the eBPF object");
        let program = object::egress_program(&mut ebpf).expect("loading the egress program");
        // Dropping `ebpf` closes the link: the probe leaves nothing attached.
        program
            .attach_with_options(
                iface,
                aya::programs::TcAttachType::Egress,
                aya::programs::tc::TcAttachOptions::TcxOrder(Default::default()),
            )
            .is_ok()
    })
}

/// What `--egress-hook HOOK` gives on `iface` in `ns`: `tcx` or `tc`.
pub fn expected(hook: &str, ns: &Netns, iface: &str) -> &'static str {
    match hook {
        "tc" => "tc",
        "tcx" => "tcx",
        _ if kernel_accepts_tcx(ns, iface) => "tcx",
        _ => "tc",
    }
}

/// `tc filter show dev IFACE egress` in `ns`.
pub fn egress_filters(ns: &Netns, iface: &str) -> String {
    show(ns, &["filter", "show", "dev", iface, "egress"])
}

/// `tc qdisc show dev IFACE` in `ns`.
pub fn qdiscs(ns: &Netns, iface: &str) -> String {
    show(ns, &["qdisc", "show", "dev", iface])
}

/// The lines of `tc filter show` for mirror-xdp's filter (its priority and handle).
pub fn our_filters(ns: &Netns, iface: &str) -> Vec<String> {
    let ours = format!(
        "pref {} bpf chain 0 handle {:#x} ",
        egress::TC_PRIORITY,
        egress::TC_HANDLE
    );
    egress_filters(ns, iface)
        .lines()
        .filter(|l| l.contains(&ours))
        .map(str::to_string)
        .collect()
}

fn show(ns: &Netns, args: &[&str]) -> String {
    let out: Output = ns.run("tc", args);
    assert!(out.status.success(), "tc {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
