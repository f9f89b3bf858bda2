//! The control plane: `mirror-xdp reload` in rounds of three, so each reload changes the
//! policy: from the 10-rule policy to a 100,000-entry one (the spare has too little room:
//! the reload verifies its own copy), to an update of that list (1% of it changed, as a
//! feed update does; the spare fits), and back; `attach` of 1,000,000-prefix deny lists
//! (the scaling mix of /32s and /24s, IPv4 hosts only, IPv6 of mixed lengths), 100,000
//! live deny entries from standard input, and the kernel memory of the pinned maps at the default sizes (the spare generation's
//! included).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mirror_xdp_tests::testbed::{SERVER_IF, Testbed};

use crate::end_to_end::stats;
use crate::lists::prefixes;
use crate::scaling::{Rng, deny_list, deny_list_text};

const RELOADS: usize = 9;
const ATTACHES: usize = 3;

pub struct Outcome {
    /// Each `reload` to the small policy, to the large one and to its update: ms until the
    /// new policy was in force (as the command reports it), and the command's wall time (it
    /// prepares the next spare generation after that).
    pub reload_small_ms: Vec<f64>,
    pub reload_large_ms: Vec<f64>,
    pub reload_update_ms: Vec<f64>,
    pub reload_small_wall_ms: Vec<f64>,
    pub reload_large_wall_ms: Vec<f64>,
    pub reload_update_wall_ms: Vec<f64>,
    /// Wall time of each `attach` with a 1M-prefix list (policy, load, fill, link): the
    /// scaling mix, IPv4 /32s only, IPv6 prefixes.
    pub attach_1m_ms: Vec<f64>,
    pub attach_1m_hosts_ms: Vec<f64>,
    pub attach_1m_v6_ms: Vec<f64>,
    /// Wall time of each `source deny --ttl 1h --file -` of 100,000 new entries.
    pub live_100k_ms: Vec<f64>,
    /// Pinned maps with the bench policy attached: name, max entries, bytes.
    pub maps: Vec<(String, u64, u64)>,
}

pub fn run(small_policy: &str) -> Result<Outcome> {
    let bin = std::env::current_exe()?.with_file_name("mirror-xdp");
    let bed = Testbed::new()?;
    let dir = bed.work_dir();
    let large_list = dir.join("deny-100k.txt");
    let large_prefixes = deny_list(100_000);
    std::fs::write(&large_list, deny_list_text(&large_prefixes))?;
    let updated_list = dir.join("deny-100k-updated.txt");
    let mut updated = large_prefixes[1000..].to_vec();
    updated.extend(deny_list(1000));
    std::fs::write(&updated_list, deny_list_text(&updated))?;
    let huge_list = dir.join("deny-1m.txt");
    std::fs::write(&huge_list, deny_list_text(&deny_list(1_000_000)))?;
    let large = deny_policy(&large_list);
    let update = deny_policy(&updated_list);
    let huge_policy = dir.join("huge.toml");
    std::fs::write(&huge_policy, deny_policy(&huge_list))?;
    let mut rng = Rng(0x1_000_000);
    let hosts: String = (0..1_000_000)
        .map(|_| format!("{}\n", Ipv4Addr::from(rng.next() as u32)))
        .collect();
    let hosts_list = dir.join("hosts-1m.txt");
    std::fs::write(&hosts_list, hosts)?;
    let hosts_policy = dir.join("hosts.toml");
    std::fs::write(&hosts_policy, deny_policy(&hosts_list))?;
    let v6: String = prefixes(&mut rng, 1_000_000, true)
        .iter()
        .map(|net| format!("{net}\n"))
        .collect();
    let v6_list = dir.join("v6-1m.txt");
    std::fs::write(&v6_list, v6)?;
    let v6_policy = dir.join("v6.toml");
    std::fs::write(&v6_policy, deny_policy(&v6_list))?;

    let policy = dir.join("policy.toml");
    std::fs::write(&policy, small_policy)?;
    cli(
        &bed,
        &bin,
        &["attach", "--iface", SERVER_IF, "--policy", path(&policy)?],
    )?;
    let maps = pinned_maps(bed.bpffs_dir())?;
    let mut outcome = Outcome {
        reload_small_ms: Vec::new(),
        reload_large_ms: Vec::new(),
        reload_update_ms: Vec::new(),
        reload_small_wall_ms: Vec::new(),
        reload_large_wall_ms: Vec::new(),
        reload_update_wall_ms: Vec::new(),
        attach_1m_ms: Vec::new(),
        attach_1m_hosts_ms: Vec::new(),
        attach_1m_v6_ms: Vec::new(),
        live_100k_ms: Vec::new(),
        maps,
    };
    for _ in 0..RELOADS {
        for (text, in_force, wall) in [
            (
                large.as_str(),
                &mut outcome.reload_large_ms,
                &mut outcome.reload_large_wall_ms,
            ),
            (
                update.as_str(),
                &mut outcome.reload_update_ms,
                &mut outcome.reload_update_wall_ms,
            ),
            (
                small_policy,
                &mut outcome.reload_small_ms,
                &mut outcome.reload_small_wall_ms,
            ),
        ] {
            std::fs::write(&policy, text)?;
            let (ms, out) = cli_output(&bed, &bin, &["reload"])?;
            wall.push(ms);
            in_force.push(reported_ms(&out).context("no `reloaded ... in N ms` line")?);
        }
    }
    // Live entries into the small policy: new ones each round (removed after).
    std::fs::write(&policy, small_policy)?;
    cli(&bed, &bin, &["reload"])?;
    for _ in 0..ATTACHES {
        let live = dir.join("live-100k.txt");
        let text: String = (0..100_000)
            .map(|_| format!("{}\n", Ipv4Addr::from(rng.next() as u32)))
            .collect();
        std::fs::write(&live, text)?;
        let mut deny = bed.cli_command(&bin);
        deny.args(["source", "deny", "--ttl", "1h", "--file", "-"])
            .stdin(std::fs::File::open(&live)?);
        outcome.live_100k_ms.push(timed(deny)?.0);
        cli(&bed, &bin, &["source", "remove", "--file", path(&live)?])?;
    }
    cli(&bed, &bin, &["detach"])?;
    for _ in 0..ATTACHES {
        for (list, times) in [
            (&huge_policy, &mut outcome.attach_1m_ms),
            (&hosts_policy, &mut outcome.attach_1m_hosts_ms),
            (&v6_policy, &mut outcome.attach_1m_v6_ms),
        ] {
            let args = ["attach", "--iface", SERVER_IF, "--policy", path(list)?];
            times.push(cli(&bed, &bin, &args)?);
            cli(&bed, &bin, &["detach"])?;
        }
    }
    Ok(outcome)
}

fn deny_policy(list: &Path) -> String {
    format!(
        "version = 1\n[[ports]]\nproto = \"tcp\"\nports = [80, 443]\n[sources]\ndeny = [{{ file = \"{}\" }}]\n",
        list.display()
    )
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("UTF-8 path")
}

/// Runs the CLI in the server namespace; returns its wall time in ms.
fn cli(bed: &Testbed, bin: &Path, args: &[&str]) -> Result<f64> {
    Ok(cli_output(bed, bin, args)?.0)
}

/// Runs the CLI; returns its wall time in ms and its standard output.
fn cli_output(bed: &Testbed, bin: &Path, args: &[&str]) -> Result<(f64, String)> {
    let mut cmd = bed.cli_command(bin);
    cmd.args(args);
    timed(cmd)
}

/// Runs a CLI command; returns its wall time in ms and its standard output.
fn timed(mut cmd: Command) -> Result<(f64, String)> {
    let started = Instant::now();
    let out = cmd.output()?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok((ms, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The N of `reloaded ... in N ms`.
fn reported_ms(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| l.starts_with("reloaded "))?;
    line.trim()
        .rsplit_once(" in ")?
        .1
        .strip_suffix(" ms")?
        .parse()
        .ok()
}

/// Every map pinned under `dir` (bpftool's `bytes_memlock`: what the kernel charges).
fn pinned_maps(dir: &Path) -> Result<Vec<(String, u64, u64)>> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    let mut maps = Vec::new();
    for file in files {
        let out = std::process::Command::new("bpftool")
            .args(["-j", "map", "show", "pinned"])
            .arg(&file)
            .output()?;
        // Program and link pins are not maps.
        let Ok(info) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            continue;
        };
        if let (Some(name), Some(bytes)) = (info["name"].as_str(), info["bytes_memlock"].as_u64()) {
            // Policy maps by folder: the generation in force, or the spare.
            let folder = match file
                .parent()
                .filter(|p| *p != dir)
                .and_then(|p| p.file_name())
            {
                Some(f) if f.to_string_lossy().starts_with("spare-") => "spare/".to_string(),
                Some(f) => format!("{}/", f.to_string_lossy()),
                None => String::new(),
            };
            maps.push((
                format!("{folder}{name}"),
                info["max_entries"].as_u64().unwrap_or(0),
                bytes,
            ));
        }
    }
    maps.sort();
    Ok(maps)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

pub fn table(o: &Outcome) -> String {
    let row = |name: &str, ms: &[f64]| {
        let (m, min, max) = stats(ms);
        format!(
            "| {name} | {m:.0} ms | {min:.0} ms | {max:.0} ms | {} |\n",
            ms.len()
        )
    };
    let mut t =
        String::from("| operation | median | min | max | runs |\n|---|---:|---:|---:|---:|\n");
    for (what, in_force, wall) in [
        (
            "the 10-rule bench policy",
            &o.reload_small_ms,
            &o.reload_small_wall_ms,
        ),
        (
            "a 100,000-prefix deny policy from the 10-rule one (no spare fits)",
            &o.reload_large_ms,
            &o.reload_large_wall_ms,
        ),
        (
            "an update of the 100,000-prefix policy (1% changed)",
            &o.reload_update_ms,
            &o.reload_update_wall_ms,
        ),
    ] {
        t.push_str(&row(
            &format!("`reload` to {what}: in force after (as the command reports)"),
            in_force,
        ));
        t.push_str(&row(
            &format!("`reload` to {what}: the command, with the next spare"),
            wall,
        ));
    }
    for (what, ms) in [
        (
            "`attach` with a 1,000,000-prefix deny list (60% /32, 40% /24)",
            &o.attach_1m_ms,
        ),
        (
            "`attach` with 1,000,000 IPv4 /32s (a feed of single addresses)",
            &o.attach_1m_hosts_ms,
        ),
        (
            "`attach` with 1,000,000 IPv6 prefixes (/128 to /32)",
            &o.attach_1m_v6_ms,
        ),
        (
            "`source deny --ttl 1h --file -` of 100,000 addresses",
            &o.live_100k_ms,
        ),
    ] {
        t.push_str(&row(what, ms));
    }
    let total: u64 = o.maps.iter().map(|m| m.2).sum();
    t.push_str(&format!(
        "\nKernel memory of the pinned maps with the bench policy attached (default sizes; \
         bpftool's `bytes_memlock`): {:.1} MiB in all.\n\n| map | max entries | memory |\n|---|---:|---:|\n",
        total as f64 / (1 << 20) as f64
    ));
    for (name, entries, bytes) in &o.maps {
        t.push_str(&format!(
            "| {name} | {entries} | {:.1} KiB |\n",
            *bytes as f64 / 1024.0
        ));
    }
    t
}
