//! The control plane: `mirror-xdp reload` of a 10-rule and of a 100,000-entry policy
//! (alternating, so each reload changes the policy), `attach` of a 1,000,000-prefix deny
//! list, and the kernel memory of the pinned maps at the default sizes (the spare
//! generation's included).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use mirror_xdp_tests::testbed::{SERVER_IF, Testbed};

use crate::end_to_end::stats;
use crate::scaling::{deny_list, deny_list_text};

const RELOADS: usize = 9;
const ATTACHES: usize = 3;

pub struct Outcome {
    /// Each `reload` to the small and to the large policy: ms until the new policy was in
    /// force (as the command reports it), and the command's wall time (it prepares the next
    /// spare generation after that).
    pub reload_small_ms: Vec<f64>,
    pub reload_large_ms: Vec<f64>,
    pub reload_small_wall_ms: Vec<f64>,
    pub reload_large_wall_ms: Vec<f64>,
    /// Wall time of each `attach` with the 1M-prefix list (policy, load, fill, link).
    pub attach_1m_ms: Vec<f64>,
    /// Pinned maps with the bench policy attached: name, max entries, bytes.
    pub maps: Vec<(String, u64, u64)>,
}

pub fn run(small_policy: &str) -> Result<Outcome> {
    let bin = std::env::current_exe()?.with_file_name("mirror-xdp");
    let bed = Testbed::new()?;
    let dir = bed.work_dir();
    let large_list = dir.join("deny-100k.txt");
    std::fs::write(&large_list, deny_list_text(&deny_list(100_000)))?;
    let huge_list = dir.join("deny-1m.txt");
    std::fs::write(&huge_list, deny_list_text(&deny_list(1_000_000)))?;
    let large = deny_policy(&large_list);
    let huge_policy = dir.join("huge.toml");
    std::fs::write(&huge_policy, deny_policy(&huge_list))?;

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
        reload_small_wall_ms: Vec::new(),
        reload_large_wall_ms: Vec::new(),
        attach_1m_ms: Vec::new(),
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
    cli(&bed, &bin, &["detach"])?;
    for _ in 0..ATTACHES {
        let args = [
            "attach",
            "--iface",
            SERVER_IF,
            "--policy",
            path(&huge_policy)?,
        ];
        outcome.attach_1m_ms.push(cli(&bed, &bin, &args)?);
        cli(&bed, &bin, &["detach"])?;
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
    let started = Instant::now();
    let out = bed.cli(bin, args);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!(
            "mirror-xdp {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
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
            "a 100,000-prefix deny policy",
            &o.reload_large_ms,
            &o.reload_large_wall_ms,
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
    t.push_str(&row(
        "`attach` with a 1,000,000-prefix deny list",
        &o.attach_1m_ms,
    ));
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
