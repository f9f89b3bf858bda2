//! Which root tests run in each kernel's VM, and why: the one table of the VM matrix (the
//! README's "Tests in the VM" lists the same). Emulation makes a guest about 5x slower than
//! the host (a 6.1 guest more, where its verifier works), so the matrix is what differs
//! between kernels: every attach, hook and map path, real clients, crash recovery.
//! `vm-test --full` runs every root test instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::guest::Step;

/// A group of tests: the test binary (tests/tests/<binary>.rs), the tests' exact names (none:
/// all of them), why they run on every kernel, the guest's time limit per test, whether
/// they need the VM (its virtio-net NICs, the bonding module the host kernel lacks): such
/// tests are `#[ignore]`d, so the host reports them ignored and the guest runs them with
/// `--include-ignored`; and whether a slow kernel runs them in a second guest (mod.rs).
pub struct Entry {
    pub binary: &'static str,
    pub tests: &'static [&'static str],
    pub why: &'static str,
    pub timeout_secs: u64,
    pub vm_only: bool,
    pub second_guest: bool,
}

/// The guest's limit per test unless an entry says otherwise: the slowest of the usual
/// tests takes about a minute in a 6.1 guest.
const TIMEOUT_SECS: u64 = 300;

/// The host runs every test twice, once per egress hook (`..._on_the_tc_hook`). In a VM the
/// kernel's own hook is what counts: `auto` takes tc on 6.1 and TCX on 6.12, and
/// egress_hooks.rs forces tc on 6.12 too.
const TC_TWIN: &str = "_on_the_tc_hook";

const fn entry(binary: &'static str, tests: &'static [&'static str], why: &'static str) -> Entry {
    Entry {
        binary,
        tests,
        why,
        timeout_secs: TIMEOUT_SECS,
        vm_only: false,
        second_guest: false,
    }
}

impl Entry {
    /// For tests that take minutes in a guest.
    const fn limit(self, timeout_secs: u64) -> Entry {
        Entry {
            timeout_secs,
            ..self
        }
    }

    /// For tests that only the VM can run (ignored on the host).
    const fn in_vm_only(self) -> Entry {
        Entry {
            vm_only: true,
            ..self
        }
    }

    /// For the longest tests: a slow kernel runs them in a second guest.
    const fn in_second_guest(self) -> Entry {
        Entry {
            second_guest: true,
            ..self
        }
    }
}

const ALL: &[&str] = &[];

/// About 69 min in a 6.1 guest, 18 in a 6.12 guest (virtio_net, bond and vlan: about 8 min
/// of it in a 6.1 guest, 4 in a 6.12 guest); the 6.1 guest's second-guest tests take 25 of
/// its minutes.
pub const MATRIX: &[Entry] = &[
    entry(
        "cli",
        &[
            "detach_restores_reachability_and_removes_pins",
            "native_mode_works_on_veth",
            "jumbo_mtu_attaches_in_native_mode",
            "two_interfaces_attach_and_detach_one_at_a_time",
            "attach_adds_an_interface_to_the_running_enforcer",
        ],
        "attach/detach, native and skb modes, native at MTU 9000 (frags), two interfaces, adding one",
    ),
    entry(
        "enforcer",
        &["from_limited_port_answers_admins_only"],
        "`from` lists for admins, v4 and v6 (virtio_net has the real clients and nmap)",
    ),
    entry(
        "egress_hooks",
        ALL,
        "the egress hook: TCX where the kernel has it, else a tc clsact filter",
    ),
    entry(
        "return_traffic",
        ALL,
        "the egress program: TCP and UDP replies, flows kept across a reload",
    ),
    // 10 reloads in a guest (100 on the host), about 6 min in a 6.1 guest.
    entry(
        "reload_under_traffic",
        ALL,
        "reload under traffic with zero loss",
    )
    .limit(900),
    entry(
        "live_ports",
        &[
            "live_rules_open_at_once_and_survive_reload_and_reattach",
            "set_names_ranges_and_udp",
        ],
        "live ports",
    ),
    entry(
        "live_sources",
        &[
            "deny_takes_effect_at_once_counts_hits_and_goes_away",
            "a_live_allow_wins_over_the_policy_deny_and_a_live_deny",
            "a_ttl_runs_out_in_the_kernel_without_any_command",
        ],
        "live sources, TTLs in the kernel",
    ),
    entry(
        "live_hits",
        ALL,
        "live deny hits counted exactly across CPUs",
    ),
    entry(
        "daemon",
        &["run_restart_adopts_without_a_gap"],
        "the daemon adopts the enforcer after SIGKILL without a gap",
    ),
    // About 33 min in a 6.1 guest (its verifier needs 16 s per program load there, and
    // the attach and reload tests load hundreds of times, 25 min of it).
    entry(
        "faults",
        &[
            "attach_killed_at_each_step_enforces_nothing_or_all_and_attach_recovers",
            "reload_killed_at_each_step_of_both_paths_keeps_one_policy_whole_and_the_next_command_recovers",
        ],
        "crash recovery at every step of attach and of reload on both paths",
    )
    .limit(1500)
    .in_second_guest(),
    entry(
        "faults",
        &[
            "adding_an_interface_killed_at_each_step_leaves_the_first_enforcing_and_is_rolled_back",
            "detach_killed_at_each_step_leaves_the_policy_or_nothing_and_is_finished_later",
            "run_adopting_finishes_a_reload_that_was_killed_half_way",
        ],
        "crash recovery at every step of adding an interface, detach and adoption",
    )
    .limit(900),
    entry(
        "egress",
        ALL,
        "`[egress]`: the egress program drops what the host opens unless a rule lists it",
    ),
    entry(
        "keepalived",
        ALL,
        "`[[protocols]]`: keepalived elects through the enforcer, VRRP from the peer only",
    ),
    entry(
        "trace",
        ALL,
        "`trace`: the XDP program's filtered, rate-bounded records in their ring buffer",
    ),
    entry(
        "audit",
        &["the_example_policy_audits_clean_with_every_class_checked"],
        "the audit (live program, test-run corpus)",
    ),
    entry(
        "virtio_net",
        ALL,
        "native XDP on multi-queue virtio-net: real clients, SYN cookies by XDP_TX, MTU 9000",
    )
    .in_vm_only(),
    entry(
        "bond",
        ALL,
        "native XDP on a bond of two veths; a slave released and enslaved again while attached",
    )
    .in_vm_only(),
    // The host kernel has no sch_netem; the other tests of syn_cookies.rs run on the host.
    entry(
        "syn_cookies",
        &["a_connection_made_from_a_cookie_downloads_at_full_speed"],
        "timestamp cookies (window scale, SACK) accepted by the kernel: 64 MiB at 50 ms",
    )
    .in_vm_only(),
    // The host kernel has no 8021q module; the other two tests of vlan.rs run on the host.
    entry(
        "vlan",
        &[
            "vlan_devices_carry_connections_through_the_enforcer_on_the_parent",
            "a_vlan_device_takes_xdp_in_skb_mode_and_auto_says_why",
        ],
        "VLAN devices: through the enforcer on the parent (native), attached themselves (skb)",
    )
    .in_vm_only(),
];

/// The table, as the run's log shows it before the VMs boot.
pub fn print() {
    println!("vm: the matrix (tests/tests/<binary>.rs, tests, why):");
    for e in MATRIX {
        let tests = if e.tests.is_empty() {
            "all".to_owned()
        } else {
            e.tests.len().to_string()
        };
        println!("  {:<22} {:<4} {}", e.binary, tests, e.why);
    }
}

/// The test binaries of the tests package that cargo built, by name.
pub fn test_binaries(cargo_json: &str) -> Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    for line in cargo_json.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        if msg["reason"] == "compiler-artifact"
            && is_test
            && let (Some(name), Some(exe)) =
                (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            found.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    if found.is_empty() {
        bail!("cargo reported no test executables");
    }
    Ok(found)
}

/// One step per test (so each has its own time limit, log and wall time): the matrix, or
/// with `full` every test of every binary.
pub fn steps(binaries: &BTreeMap<String, PathBuf>, cwd: &Path, full: bool) -> Result<Vec<Step>> {
    let vm_only = |binary: &str| MATRIX.iter().any(|e| e.binary == binary && e.vm_only);
    let groups: Vec<(&str, &[&str], u64, bool, bool)> = if full {
        binaries
            .keys()
            .map(|b| (b.as_str(), ALL, 900, vm_only(b), false))
            .collect()
    } else {
        MATRIX
            .iter()
            .map(|e| (e.binary, e.tests, e.timeout_secs, e.vm_only, e.second_guest))
            .collect()
    };
    let mut steps = Vec::new();
    for (binary, tests, timeout_secs, vm_only, second_guest) in groups {
        let exe = binaries
            .get(binary)
            .with_context(|| format!("VM matrix: no test binary named {binary}"))?;
        for name in chosen(binary, &list(exe, vm_only)?, tests, full)? {
            let mut argv = vec![exe.display().to_string(), "--exact".into(), name];
            if vm_only {
                argv.push("--include-ignored".into());
            }
            // The tests' own lines (timings, what they measured) in the step's log too.
            argv.extend(["--test-threads=1".into(), "--show-output".into()]);
            steps.push(Step {
                label: format!("{binary}::{name}", name = argv[2]),
                argv,
                cwd: cwd.to_path_buf(),
                timeout_secs,
                one_test: true,
                second_guest,
            });
        }
    }
    Ok(steps)
}

/// The tests of `binary` (`names`, as it lists them) that run: those the matrix names, each
/// of which must exist, or all of them; the tc-hook twins only with `full`.
fn chosen(binary: &str, names: &[String], tests: &[&str], full: bool) -> Result<Vec<String>> {
    if let Some(missing) = tests.iter().find(|t| !names.iter().any(|n| n == *t)) {
        bail!("VM matrix: {binary} has no test named {missing}");
    }
    let chosen: Vec<String> = names
        .iter()
        .filter(|n| tests.is_empty() || tests.contains(&n.as_str()))
        .filter(|n| full || !n.contains(TC_TWIN))
        .cloned()
        .collect();
    if chosen.is_empty() {
        bail!("VM matrix: no test of {binary} is chosen");
    }
    Ok(chosen)
}

/// The names of the tests a binary would run: its ignored tests left out, unless the binary
/// is the VM's own (`vm_only`: run with `--include-ignored`).
fn list(exe: &Path, vm_only: bool) -> Result<Vec<String>> {
    let names = |ignored: bool| -> Result<Vec<String>> {
        let mut cmd = Command::new(exe);
        cmd.args(["--list", "--format", "terse"]);
        if ignored {
            cmd.arg("--ignored");
        }
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", exe.display()))?;
        if !out.status.success() {
            bail!("{} --list failed", exe.display());
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_owned)
            .collect())
    };
    if vm_only {
        return names(false);
    }
    let ignored = names(true)?;
    Ok(names(false)?
        .into_iter()
        .filter(|n| !ignored.contains(n))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn named_tests_must_exist_and_tc_twins_run_only_in_full() {
        let listed = names(&["a", "a_on_the_tc_hook", "b"]);
        assert_eq!(
            chosen("x", &listed, ALL, false).unwrap(),
            names(&["a", "b"])
        );
        assert_eq!(chosen("x", &listed, ALL, true).unwrap(), listed);
        assert_eq!(chosen("x", &listed, &["b"], false).unwrap(), names(&["b"]));
        let err = chosen("x", &listed, &["c"], false).unwrap_err();
        assert_eq!(err.to_string(), "VM matrix: x has no test named c");
        assert!(chosen("x", &names(&["a_on_the_tc_hook"]), ALL, false).is_err());
    }
}
