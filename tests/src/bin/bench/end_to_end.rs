//! End to end on a veth pair (root): a fixed number of SYNs to a closed TCP port from the
//! client namespace's live-frames generator, dropped at the server veth by mirror-xdp, a bare
//! XDP_DROP, nftables netdev ingress or iptables raw PREROUTING; received rate and CPU cost.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mirror_xdp::{testrun::Baseline, trafficgen::Randomise};
use mirror_xdp_tests::{
    flood::{send_frames, syn_template},
    netns::{Netns, is_root},
    testbed::{CLIENT_V4, SERVER_IF, Testbed},
};

pub const FRAMES: u64 = 2_000_000;
pub const REPETITIONS: usize = 3;
const CLOSED_PORT: u16 = 3306;
const FLOOD_LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq)]
enum Dropper {
    BareDrop,
    MirrorXdp,
    Nft,
    Iptables,
}

impl Dropper {
    fn name(self) -> &'static str {
        match self {
            Dropper::BareDrop => "bare XDP_DROP (native)",
            Dropper::MirrorXdp => "mirror-xdp (native, bench policy)",
            Dropper::Nft => "nftables netdev ingress drop (+ bare XDP_PASS)",
            Dropper::Iptables => "iptables raw PREROUTING DROP (+ bare XDP_PASS)",
        }
    }
}

/// One dropper's samples, one per repetition.
pub struct Row {
    pub name: &'static str,
    pub pps: Vec<f64>,
    pub cpu_ns: Vec<f64>,
    pub dropped: Vec<u64>,
    pub received: Vec<u64>,
}

pub struct Outcome {
    pub rows: Vec<Row>,
    /// Lines for the report: droppers that did not run, and why.
    pub skipped: Vec<String>,
}

pub fn run(policy_text: &str) -> Result<Outcome> {
    let mut skipped = Vec::new();
    if !is_root() {
        skipped.push("skipped: end-to-end runs need root".to_string());
        return Ok(Outcome {
            rows: Vec::new(),
            skipped,
        });
    }
    let mut droppers = vec![Dropper::BareDrop];
    let bin = std::env::current_exe()?.with_file_name("mirror-xdp");
    if bin.exists() {
        droppers.push(Dropper::MirrorXdp);
    } else {
        skipped.push(format!("skipped mirror-xdp: no {}", bin.display()));
    }
    if tool_present("nft") {
        droppers.push(Dropper::Nft);
    } else {
        skipped.push("skipped: nftables not installed".to_string());
    }
    if tool_present("iptables") {
        droppers.push(Dropper::Iptables);
    } else {
        skipped.push("skipped: iptables not installed".to_string());
    }

    let bed = Testbed::new()?;
    let policy = bed.work_dir().join("bench-policy.toml");
    std::fs::write(&policy, policy_text)?;
    let template = syn_template(&bed, CLIENT_V4.into(), CLOSED_PORT)?;
    let mut rows: Vec<Row> = droppers
        .iter()
        .map(|d| Row {
            name: d.name(),
            pps: Vec::new(),
            cpu_ns: Vec::new(),
            dropped: Vec::new(),
            received: Vec::new(),
        })
        .collect();
    for rep in 0..REPETITIONS {
        for (i, &dropper) in droppers.iter().enumerate() {
            let sample = measure(&bed, &bin, &policy, dropper, &template)
                .with_context(|| format!("{} (repetition {})", dropper.name(), rep + 1))?;
            rows[i].pps.push(sample.pps);
            rows[i].cpu_ns.push(sample.cpu_ns);
            rows[i].dropped.push(sample.dropped);
            rows[i].received.push(sample.received);
        }
    }
    Ok(Outcome { rows, skipped })
}

fn tool_present(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Sample {
    pps: f64,
    cpu_ns: f64,
    dropped: u64,
    received: u64,
}

fn measure(
    bed: &Testbed,
    bin: &Path,
    policy: &Path,
    dropper: Dropper,
    template: &[u8],
) -> Result<Sample> {
    // Set up: whatever is attached stays until the end of this function.
    let mut xdp: Option<Baseline> = None;
    match dropper {
        Dropper::BareDrop => xdp = Some(attach_baseline(bed, "bare_drop")?),
        Dropper::MirrorXdp => {
            let policy = policy.to_str().context("UTF-8 policy path")?;
            let out = bed.cli(bin, &["attach", "--iface", SERVER_IF, "--policy", policy]);
            if !out.status.success() {
                bail!(
                    "mirror-xdp attach: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Dropper::Nft => {
            xdp = Some(attach_baseline(bed, "bare_pass")?);
            for cmd in [
                "add table netdev mxbench".to_string(),
                format!(
                    "add chain netdev mxbench ingress {{ type filter hook ingress device {SERVER_IF} priority 0 ; }}"
                ),
                format!("add rule netdev mxbench ingress tcp dport {CLOSED_PORT} counter drop"),
            ] {
                bed.server.run_ok("nft", &[&cmd])?;
            }
        }
        Dropper::Iptables => {
            xdp = Some(attach_baseline(bed, "bare_pass")?);
            bed.server.run_ok("iptables", &iptables_rule("-A"))?;
        }
    }

    let result = flood(bed, dropper, template);

    // Tear down before any error is returned.
    match dropper {
        Dropper::MirrorXdp => {
            let out = bed.cli(bin, &["detach"]);
            if !out.status.success() {
                eprintln!(
                    "warning: mirror-xdp detach: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Dropper::Nft => {
            let _ = bed.server.run_ok("nft", &["delete table netdev mxbench"]);
        }
        Dropper::Iptables => {
            let _ = bed.server.run_ok("iptables", &iptables_rule("-D"));
        }
        Dropper::BareDrop => {}
    }
    drop(xdp);
    result
}

fn iptables_rule(op: &str) -> [&str; 10] {
    [
        "-t",
        "raw",
        op,
        "PREROUTING",
        "-p",
        "tcp",
        "--dport",
        "3306",
        "-j",
        "DROP",
    ]
}

fn attach_baseline(bed: &Testbed, name: &'static str) -> Result<Baseline> {
    let mut program = Baseline::load(name)?;
    bed.server.enter(|| program.attach_native(SERVER_IF))?;
    Ok(program)
}

fn flood(bed: &Testbed, dropper: Dropper, template: &[u8]) -> Result<Sample> {
    let randomise = Randomise {
        src_bits: 0,
        sport: true,
        seq: true,
    };
    let before = xdp_counters(&bed.server)?;
    let drops_before = drop_counter(&bed.server, dropper)?;
    let cpu_before = busy_jiffies()?;
    let started = Instant::now();
    let sent = send_frames(bed, template, randomise, FRAMES, None, FLOOD_LIMIT)?;
    // The receive side is done once the server's XDP packet counter stops moving.
    let mut received = xdp_counters(&bed.server)?.0 - before.0;
    let mut done = Instant::now();
    let deadline = done + Duration::from_secs(2);
    while received < sent.frames && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        let now = xdp_counters(&bed.server)?.0 - before.0;
        if now == received {
            break;
        }
        received = now;
        done = Instant::now();
    }
    let elapsed = done - started;
    let cpu_after = busy_jiffies()?;
    let dropped = drop_counter(&bed.server, dropper)? - drops_before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu_ns = (cpu_after - cpu_before) as f64 * 1e9 / hz / received.max(1) as f64;
    Ok(Sample {
        pps: received as f64 / elapsed.as_secs_f64().max(1e-9),
        cpu_ns,
        dropped,
        received,
    })
}

/// Frames the server veth's XDP program saw and dropped (`ethtool -S`, all queues).
fn xdp_counters(ns: &Netns) -> Result<(u64, u64)> {
    let out = ns.run_ok("ethtool", &["-S", SERVER_IF])?;
    let (mut packets, mut drops) = (0, 0);
    for (name, value) in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
    {
        let value: u64 = value.trim().parse().unwrap_or(0);
        if name.ends_with("_xdp_packets") {
            packets += value;
        } else if name.ends_with("_xdp_drops") {
            drops += value;
        }
    }
    Ok((packets, drops))
}

/// The dropper's own count of dropped frames.
fn drop_counter(ns: &Netns, dropper: Dropper) -> Result<u64> {
    match dropper {
        Dropper::BareDrop | Dropper::MirrorXdp => Ok(xdp_counters(ns)?.1),
        Dropper::Nft => {
            let out = ns.run_ok("nft", &["list chain netdev mxbench ingress"])?;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(text
                .split_whitespace()
                .skip_while(|w| *w != "packets")
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0))
        }
        Dropper::Iptables => {
            let out = ns.run_ok(
                "iptables",
                &["-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"],
            )?;
            let text = String::from_utf8_lossy(&out.stdout);
            Ok(text
                .lines()
                .find(|l| l.contains("DROP"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0))
        }
    }
}

/// user + nice + system + irq + softirq jiffies of all CPUs (`/proc/stat`): the sender's
/// test-run syscalls and the receiver's NAPI/softirq work both land here.
fn busy_jiffies() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq
    Ok([0, 1, 2, 5, 6]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum())
}

/// Median, min, max.
pub fn stats(samples: &[f64]) -> (f64, f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    (
        s.get(s.len() / 2).copied().unwrap_or(0.0),
        s.first().copied().unwrap_or(0.0),
        s.last().copied().unwrap_or(0.0),
    )
}

/// The Markdown table, ratios against the bare XDP_DROP row.
pub fn table(outcome: &Outcome) -> String {
    let base = outcome
        .rows
        .first()
        .map(|r| (stats(&r.pps).0, stats(&r.cpu_ns).0))
        .unwrap_or((0.0, 0.0));
    let mut t = String::from(
        "| dropper | received pps (median) | min | max | vs bare XDP_DROP | CPU ns/packet (median) | min | max | vs bare XDP_DROP | dropped/received (last rep) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &outcome.rows {
        let (p, pmin, pmax) = stats(&r.pps);
        let (c, cmin, cmax) = stats(&r.cpu_ns);
        t.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2}x | {:.0} | {:.0} | {:.0} | {:.2}x | {} / {} |\n",
            r.name,
            p,
            pmin,
            pmax,
            p / base.0.max(1e-9),
            c,
            cmin,
            cmax,
            c / base.1.max(1e-9),
            r.dropped.last().unwrap_or(&0),
            r.received.last().unwrap_or(&0),
        ));
    }
    for line in &outcome.skipped {
        t.push_str(&format!("\n{line}\n"));
    }
    t
}
