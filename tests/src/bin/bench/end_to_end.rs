//! End to end on a veth pair (root): a fixed number of SYNs to a closed TCP port from the
//! client namespace's live-frames generator, dropped at the server veth by mirror-xdp, a bare
//! XDP_DROP, nftables netdev ingress or iptables raw PREROUTING; received rate and CPU cost.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mirror_xdp::{kernel::trafficgen::Randomise, observe::testrun::Baseline};
use mirror_xdp_tests::{
    flood::{send_frames, syn_template},
    netns::{Netns, is_root},
    testbed::{CLIENT_V4, SERVER_IF, Testbed},
};

pub const FRAMES: u64 = 2_000_000;
pub const REPETITIONS: usize = 5;
pub const CLOSED_PORT: u16 = 3306;
const FLOOD_LIMIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq)]
pub enum Dropper {
    BareDrop,
    MirrorXdp,
    Nft,
    /// An nftables chain with a large set: counted by what reached IP instead of by rule
    /// counters (listing a chain makes nft fetch the whole set: a minute for a million).
    NftSet,
    Iptables,
}

impl Dropper {
    pub fn name(self) -> &'static str {
        match self {
            Dropper::BareDrop => "bare XDP_DROP (native)",
            Dropper::MirrorXdp => "mirror-xdp (native, bench policy)",
            Dropper::Nft => "nftables netdev ingress drop (+ bare XDP_PASS)",
            Dropper::NftSet => "nftables netdev ingress, interval set (+ bare XDP_PASS)",
            Dropper::Iptables => "iptables raw PREROUTING DROP (+ bare XDP_PASS)",
        }
    }
}

/// One dropper's samples, one per repetition.
pub struct Row {
    pub name: &'static str,
    pub pps: Vec<f64>,
    pub cpu_ns: Vec<f64>,
    /// CPU time of the receiving thread per received frame.
    pub receiver_ns: Vec<f64>,
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
    let rows = sample_all(
        &bed,
        &bin,
        &policy,
        &droppers,
        &template,
        FRAMES,
        REPETITIONS,
    )?;
    Ok(Outcome { rows, skipped })
}

/// `repetitions` interleaved samples of each dropper, a row each.
pub fn sample_all(
    bed: &Testbed,
    bin: &Path,
    policy: &Path,
    droppers: &[Dropper],
    template: &[u8],
    frames: u64,
    repetitions: usize,
) -> Result<Vec<Row>> {
    let mut rows: Vec<Row> = droppers
        .iter()
        .map(|d| Row {
            name: d.name(),
            pps: Vec::new(),
            cpu_ns: Vec::new(),
            receiver_ns: Vec::new(),
            dropped: Vec::new(),
            received: Vec::new(),
        })
        .collect();
    for rep in 0..repetitions {
        for (row, &dropper) in rows.iter_mut().zip(droppers) {
            let sample = measure(bed, bin, policy, dropper, template, frames)
                .with_context(|| format!("{} (repetition {})", dropper.name(), rep + 1))?;
            row.pps.push(sample.pps);
            row.cpu_ns.push(sample.cpu_ns);
            row.receiver_ns.push(sample.receiver_ns);
            row.dropped.push(sample.dropped);
            row.received.push(sample.received);
        }
    }
    Ok(rows)
}

pub fn tool_present(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub struct Sample {
    pub pps: f64,
    pub cpu_ns: f64,
    pub receiver_ns: f64,
    pub dropped: u64,
    pub received: u64,
}

/// One sample of `dropper`: attaches it to the server's interface, floods `frames` copies of
/// `template` from the client, detaches.
fn measure(
    bed: &Testbed,
    bin: &Path,
    policy: &Path,
    dropper: Dropper,
    template: &[u8],
    frames: u64,
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
        Dropper::NftSet => bail!("the deny-list bench sets up its own nftables set"),
    }

    let result = ReceiverThread::start(bed).and_then(|receiver| {
        let sample = flood(bed, dropper, template, 0, frames, &receiver);
        receiver.stop(bed);
        sample
    });

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
        Dropper::BareDrop | Dropper::NftSet => {}
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

pub fn attach_baseline(bed: &Testbed, name: &'static str) -> Result<Baseline> {
    let mut program = Baseline::load(name)?;
    bed.server.enter(|| program.attach_native(SERVER_IF))?;
    Ok(program)
}

/// The server veth's receive work (NAPI: the XDP program, and for nftables and iptables
/// the stack) in a kernel thread of its own, pinned to the last CPU, while the sender runs
/// on CPU 0: its CPU time is the receiver's cost alone, and where the receiver is slower
/// than the sender the received rate is the receiver's.
pub struct ReceiverThread {
    pids: Vec<u32>,
}

impl ReceiverThread {
    pub fn start(bed: &Testbed) -> Result<ReceiverThread> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            bail!("the end-to-end bench needs 2 CPUs: one sends, one receives");
        }
        let before = napi_threads();
        set_threaded(bed, true)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        // A veth makes its NAPI instances (and so new threads) whenever XDP is attached; a
        // virtio-net NIC keeps its own, and their threads stay once made.
        let pids = loop {
            let now = napi_threads();
            let new: Vec<u32> = now
                .iter()
                .copied()
                .filter(|p| !before.contains(p))
                .collect();
            if !new.is_empty() {
                break new;
            }
            if Instant::now() > deadline {
                if now.is_empty() {
                    bail!("no NAPI thread appeared for {SERVER_IF}");
                }
                break now;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let receiver = ReceiverThread { pids };
        for pid in &receiver.pids {
            let status = Command::new("taskset")
                .args(["-pc", &(cpus - 1).to_string(), &pid.to_string()])
                .output()?;
            if !status.status.success() {
                receiver.stop(bed);
                bail!("taskset {pid}: {}", String::from_utf8_lossy(&status.stderr));
            }
        }
        Ok(receiver)
    }

    /// CPU time of the receive threads so far, in clock ticks.
    pub fn ticks(&self) -> u64 {
        self.pids.iter().map(|pid| thread_ticks(*pid)).sum()
    }

    pub fn stop(&self, bed: &Testbed) {
        if let Err(e) = set_threaded(bed, false) {
            eprintln!("warning: threaded NAPI off: {e:#}");
        }
    }
}

fn set_threaded(bed: &Testbed, on: bool) -> Result<()> {
    // `ip netns exec` mounts the namespace's own /sys, where the veth is.
    let value = if on { 1 } else { 0 };
    bed.server.run_ok(
        "sh",
        &[
            "-c",
            &format!("echo {value} > /sys/class/net/{SERVER_IF}/threaded"),
        ],
    )?;
    Ok(())
}

/// Kernel threads named `napi/<device>-<id>` (any device: the caller takes the new ones).
fn napi_threads() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with(&format!("napi/{SERVER_IF}")))
        })
        .collect()
}

/// utime + stime of a thread (`/proc/PID/stat` fields 14 and 15), in clock ticks.
fn thread_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may hold spaces: count fields after its closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // fields[0] is field 3 (state).
    fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
}

/// Runs `f` with this thread on CPU 0, then lets it run anywhere again.
pub fn on_cpu0<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: plain libc calls on a zeroed cpu_set_t for the calling thread.
    unsafe {
        let mut all: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut all);
        let mut zero: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut zero);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &zero);
        let result = f();
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &all);
        result
    }
}

/// Sends `frames` copies of `template` (source ports, sequence numbers and the low
/// `src_bits` bits of the source address random) and measures the receiving side.
pub fn flood(
    bed: &Testbed,
    dropper: Dropper,
    template: &[u8],
    src_bits: u32,
    frames: u64,
    receiver: &ReceiverThread,
) -> Result<Sample> {
    let randomise = Randomise {
        src_bits,
        sport: true,
        seq: true,
    };
    let before = xdp_counters(&bed.server)?;
    let drops_before = drop_counter(&bed.server, dropper)?;
    let cpu_before = busy_jiffies()?;
    let receiver_before = receiver.ticks();
    let started = Instant::now();
    let sent = on_cpu0(|| send_frames(bed, template, randomise, frames, None, FLOOD_LIMIT))?;
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
    let receiver_ticks = receiver.ticks() - receiver_before;
    let dropped = drop_counter(&bed.server, dropper)? - drops_before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let per_packet = |ticks: u64| ticks as f64 * 1e9 / hz / received.max(1) as f64;
    Ok(Sample {
        pps: received as f64 / elapsed.as_secs_f64().max(1e-9),
        cpu_ns: per_packet(cpu_after - cpu_before),
        receiver_ns: per_packet(receiver_ticks),
        dropped,
        received,
    })
}

/// Frames the server veth's XDP program saw and dropped (`ethtool -S`, all queues).
pub fn xdp_counters(ns: &Netns) -> Result<(u64, u64)> {
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
            // Every rule's counter: a chain may drop in more than one rule.
            let text = String::from_utf8_lossy(&out.stdout);
            let words: Vec<&str> = text.split_whitespace().collect();
            Ok(words
                .windows(2)
                .filter(|w| w[0] == "packets")
                .filter_map(|w| w[1].parse::<u64>().ok())
                .sum())
        }
        // Frames the XDP hook passed on minus those that reached IP (wrapping: only the
        // difference of two readings means anything).
        Dropper::NftSet => Ok(xdp_counters(ns)?.0.wrapping_sub(ip_in_receives(ns)?)),
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

/// The namespace's `Ip: InReceives` (`/proc/net/snmp`): packets that reached IP.
fn ip_in_receives(ns: &Netns) -> Result<u64> {
    let out = ns.run_ok("cat", &["/proc/net/snmp"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next(), ip.next());
    names
        .zip(values)
        .and_then(|(n, v)| {
            let i = n.split_whitespace().position(|w| w == "InReceives")?;
            v.split_whitespace().nth(i)?.parse().ok()
        })
        .context("no Ip InReceives in /proc/net/snmp")
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

/// The Markdown table: each row's figures, and mirror-xdp's as a multiple of them (the
/// goals: at least 0.9x a bare XDP_DROP, 4x nftables, 4.5x iptables).
pub fn table(outcome: &Outcome) -> String {
    let mirror = outcome
        .rows
        .iter()
        .find(|r| r.name == Dropper::MirrorXdp.name())
        .map(|r| (stats(&r.pps).0, capacity(stats(&r.receiver_ns).0)));
    let ratio = |mine: Option<f64>, theirs: f64| match mine {
        Some(m) => format!("{:.2}x", m / theirs.max(1e-9)),
        None => String::new(),
    };
    let mut t = String::from(
        "| dropper | received pps (median) | min | max | mirror-xdp vs this | receiver CPU ns/packet (median) | min | max | drops per receiving core-second | mirror-xdp vs this | sender + receiver CPU ns/packet | dropped/received (last rep) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &outcome.rows {
        let (p, pmin, pmax) = stats(&r.pps);
        let (rx, rxmin, rxmax) = stats(&r.receiver_ns);
        t.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {:.0} | {} / {} |\n",
            r.name,
            p,
            pmin,
            pmax,
            ratio(mirror.map(|m| m.0), p),
            rx,
            rxmin,
            rxmax,
            capacity(rx),
            ratio(mirror.map(|m| m.1), capacity(rx)),
            stats(&r.cpu_ns).0,
            r.dropped.last().unwrap_or(&0),
            r.received.last().unwrap_or(&0),
        ));
    }
    for line in &outcome.skipped {
        t.push_str(&format!("\n{line}\n"));
    }
    t
}

/// Frames one receiving core handles per second at this cost per frame.
pub fn capacity(ns_per_packet: f64) -> f64 {
    1e9 / ns_per_packet.max(1e-9)
}
