//! Which root tests run in each kernel's VM, and why: the one table of the VM matrix (the
//! README's "Tests in the VM" lists the same). Filters select tests of a test binary as
//! libtest does (substring of the name); every filter must match at least one test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::guest::Step;

/// A group of tests: the test binary (tests/tests/<binary>.rs), a name filter ("" = all),
/// why it runs on every kernel, and the guest's time limit per test.
pub struct Entry {
    pub binary: &'static str,
    pub filter: &'static str,
    pub why: &'static str,
    pub timeout_secs: u64,
}

/// The guest's limit per test unless an entry says otherwise: the slowest of the usual
/// tests takes about 30 s in a 6.12 guest.
const TIMEOUT_SECS: u64 = 300;

const fn entry(binary: &'static str, filter: &'static str, why: &'static str) -> Entry {
    Entry {
        binary,
        filter,
        why,
        timeout_secs: TIMEOUT_SECS,
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
}

/// Every root test file, so the whole suite runs on each kernel (about 19 min in a 6.12
/// guest on a 2-core machine); left out are deploy.rs and deploy_host.rs, which check the
/// deploy kit's files and touch no kernel.
pub const MATRIX: &[Entry] = &[
    entry(
        "testbed",
        "",
        "the namespaces, servers and probes the other tests stand on",
    ),
    entry(
        "cli",
        "",
        "attach/detach, native and skb modes, jumbo MTU fallback, two interfaces",
    ),
    entry(
        "enforcer",
        "",
        "probes by real clients (v4, v6, admin, client, TCP, UDP) and nmap",
    ),
    entry(
        "return_traffic",
        "",
        "the egress program: TCP and UDP replies",
    ),
    entry(
        "egress_hooks",
        "",
        "the egress hook: TCX where the kernel has it, else a tc clsact filter",
    ),
    // About 200 s in a 6.12 guest.
    entry(
        "reload_under_traffic",
        "",
        "reload under traffic with zero loss",
    )
    .limit(900),
    entry(
        "reload",
        "",
        "reload keeps counters and one generation; a bad policy changes nothing",
    ),
    entry("live_ports", "", "live ports"),
    entry("live_sources", "", "live sources, TTLs in the kernel"),
    entry(
        "live_hits",
        "",
        "live deny hits counted exactly across CPUs",
    ),
    // About 100 s in a 6.12 guest.
    entry(
        "live_races",
        "",
        "live denies racing reloads, enforced by the generation in force",
    )
    .limit(600),
    entry(
        "daemon",
        "",
        "the daemon: reload on edits and SIGHUP, adopt after SIGKILL",
    ),
    entry("syn_cookies", "", "SYN cookies (kfuncs) under a SYN flood"),
    // Up to 95 s in a 6.12 guest.
    entry("faults", "", "crash recovery at every step").limit(600),
    entry("audit", "", "the audit (live program, test-run corpus)"),
    entry(
        "differential",
        "",
        "the kernel program against the model, frame by frame",
    ),
    entry(
        "attacks",
        "",
        "floods: rate limits and bans, SYN budgets, a million-prefix deny list",
    ),
    entry(
        "hostile",
        "",
        "hostile input: huge policies, damaged state, spoofed floods",
    ),
    entry(
        "lockout",
        "",
        "lockout protection of the SSH session and established flows",
    ),
    entry(
        "monitor_and_counters",
        "",
        "monitor mode and exact counters",
    ),
    entry("metrics_and_watch", "", "metrics endpoint and watch"),
    entry(
        "permissions",
        "",
        "root-only pins and state, non-root refused",
    ),
    entry(
        "pins",
        "",
        "pins of another version or layout refused or migrated",
    ),
];

/// The table, as the run's log shows it before the VMs boot.
pub fn print() {
    println!("vm: the matrix (tests/tests/<binary>.rs, name filter, why):");
    for e in MATRIX {
        let filter = if e.filter.is_empty() { "all" } else { e.filter };
        println!("  {:<22} {:<12} {}", e.binary, filter, e.why);
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
    let groups: Vec<(&str, &str, u64)> = if full {
        binaries.keys().map(|b| (b.as_str(), "", 900)).collect()
    } else {
        MATRIX
            .iter()
            .map(|e| (e.binary, e.filter, e.timeout_secs))
            .collect()
    };
    let mut steps = Vec::new();
    for (binary, filter, timeout_secs) in groups {
        let exe = binaries
            .get(binary)
            .with_context(|| format!("VM matrix: no test binary named {binary}"))?;
        let names = list(exe)?;
        let chosen: Vec<&String> = names.iter().filter(|n| n.contains(filter)).collect();
        if chosen.is_empty() {
            bail!("VM matrix: filter {filter:?} matches no test in {binary}");
        }
        for name in chosen {
            steps.push(Step {
                label: format!("{binary}::{name}"),
                argv: vec![
                    exe.display().to_string(),
                    "--exact".into(),
                    name.clone(),
                    "--test-threads=1".into(),
                ],
                cwd: cwd.to_path_buf(),
                timeout_secs,
                one_test: true,
            });
        }
    }
    Ok(steps)
}

/// The names of the tests a binary would run (its ignored tests left out).
fn list(exe: &Path) -> Result<Vec<String>> {
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
    let ignored = names(true)?;
    Ok(names(false)?
        .into_iter()
        .filter(|n| !ignored.contains(n))
        .collect())
}
