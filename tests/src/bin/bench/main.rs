//! `cargo xtask bench`: nanoseconds per packet of each verdict path of the enforcer in
//! BPF_PROG_TEST_RUN, next to bare `XDP_DROP` and `XDP_PASS` programs, measured side by side
//! in interleaved rounds on 60-byte frames. Prints a Markdown table; with `--out FILE` also
//! writes it there.
#![expect(
    unused_crate_dependencies,
    reason = "a binary of the tests package links all its dependencies and uses a few"
)]

mod chart;
mod control_plane;
mod cookie_download;
mod crowdsec_feed;
mod deny_list_e2e;
mod destinations;
mod egress;
mod end_to_end;
mod findings;
mod goals;
mod lists;
mod scaling;
mod syn_absorb;
mod virtio_e2e;
mod xdp_filter;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{ArgGroup, Parser};
use mirror_xdp::{
    model::{ModelState, classify, flow_key, parse},
    observe::testrun::{Baseline, TestProgram, XDP_DROP, XDP_PASS},
    policy::Policy,
};
use mirror_xdp_tests::frames::{Frame, Ipv4, Ipv6, L4};

const ROUNDS: usize = 9;
const REPEAT: u32 = 200_000;

/// The example mirror policy with a trusted admin network.
const POLICY: &str = r#"
version = 1
[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
[[ports]]
proto = "tcp"
ports = [80, 443, 873, 8080, 5000, 9000, 3128, "30001-30010"]
[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]
[[ports]]
proto = "udp"
ports = [5140]
[sources]
allow = ["203.0.113.128/25", "2001:db8:a:8000::/49"]
deny = ["192.0.2.0/24", "2001:db8:bad::/48"]
"#;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

enum Subject {
    Enforcer(Vec<u8>),
    Bare(&'static str, Vec<u8>),
    XdpFilter(Vec<u8>),
}

/// Measures the enforcer's verdict paths, deny-list scaling, veth end-to-end rates and the
/// control plane; prints the report as Markdown (needs root).
#[derive(Parser)]
#[command(name = "bench")]
#[command(group(ArgGroup::new("part").args([
    "paths_only", "lists_only", "end_to_end_only", "control_plane_only", "deny_list_only",
    "syn_flood_only", "virtio_only", "cookie_download_only", "crowdsec_only",
    "destinations_only", "egress_only", "out"
])))]
struct Args {
    /// Also write the report to FILE, and the chart next to it (FILE with `.png`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Only the per-path table, for a quick look while optimising.
    #[arg(long)]
    paths_only: bool,
    /// Only the table of every path with realistic lists next to small ones.
    #[arg(long)]
    lists_only: bool,
    /// Only the end-to-end veth table.
    #[arg(long)]
    end_to_end_only: bool,
    /// Only the control-plane table.
    #[arg(long)]
    control_plane_only: bool,
    /// Only the deny-list end-to-end table.
    #[arg(long)]
    deny_list_only: bool,
    /// Only the SYN-flood table: mirror-xdp's cookies next to the kernel's.
    #[arg(long)]
    syn_flood_only: bool,
    /// Only the end-to-end table over the virtio-net NICs of a `cargo xtask vm-test --bench`
    /// guest.
    #[arg(long)]
    virtio_only: bool,
    /// Only the download over a cookie connection next to a normal one (needs sch_netem:
    /// `cargo xtask bench` runs it in a Debian guest).
    #[arg(long)]
    cookie_download_only: bool,
    /// Only the CrowdSec feed: 100,000 decisions pulled from a real LAPI.
    #[arg(long)]
    crowdsec_only: bool,
    /// Only the cost of `to` (destination) rules: the same frames with and without them.
    #[arg(long)]
    destinations_only: bool,
    /// Only the egress program's cost per sent packet: idle, return traffic, egress rules.
    #[arg(long)]
    egress_only: bool,
    /// With --cookie-download-only: also save the figures to FILE, for --cookie-download.
    #[arg(long, value_name = "FILE", requires = "cookie_download_only")]
    save: Option<PathBuf>,
    /// The cookie-download figures a --cookie-download-only --save run left in FILE: the
    /// report gains their section and goal.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "paths_only", "lists_only", "end_to_end_only", "control_plane_only", "deny_list_only",
        "syn_flood_only", "virtio_only", "cookie_download_only", "crowdsec_only",
        "destinations_only", "egress_only"
    ])]
    cookie_download: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    // One veth table alone, for a quick look.
    if args.end_to_end_only {
        print!("{}", end_to_end::table(&end_to_end::run(POLICY)?));
        return Ok(());
    }
    if args.control_plane_only {
        print!("{}", control_plane::table(&control_plane::run(POLICY)?));
        return Ok(());
    }
    if args.virtio_only {
        print!(
            "virtio-net, {} SYNs per run, {} interleaved repetitions:\n\n{}",
            virtio_e2e::FRAMES,
            virtio_e2e::REPETITIONS,
            end_to_end::table(&virtio_e2e::run(POLICY)?)
        );
        return Ok(());
    }
    if args.lists_only {
        print!("{}", lists::table(&lists::run()?));
        return Ok(());
    }
    if args.deny_list_only {
        print!("{}", deny_list_e2e::table(&deny_list_e2e::run()?));
        return Ok(());
    }
    if args.cookie_download_only {
        let measured = cookie_download::run()?;
        if let Some(path) = &args.save {
            cookie_download::save(&measured, path)?;
        }
        print!("{}", cookie_download::table(&measured));
        return Ok(());
    }
    if args.destinations_only {
        print!("{}", destinations::table(&destinations::run()?));
        return Ok(());
    }
    if args.egress_only {
        print!("{}", egress::table(&egress::run()?));
        return Ok(());
    }
    if args.crowdsec_only {
        print!("{}", crowdsec_feed::table(&crowdsec_feed::run()?));
        return Ok(());
    }
    if args.syn_flood_only {
        print!("{}", syn_absorb::table(&syn_absorb::run()?));
        return Ok(());
    }
    let out = args.out;
    // Read before measuring: a bad file fails the run before its minutes are spent.
    let cookies = args
        .cookie_download
        .as_deref()
        .map(cookie_download::load)
        .transpose()?;
    let policy = Policy::parse(POLICY, Path::new("bench-policy.toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut enforcer = TestProgram::load(&policy)?;
    let mut bare_drop = Baseline::load("bare_drop")?;
    let mut bare_pass = Baseline::load("bare_pass")?;
    let (mut xdp_filter, xdp_filter_note) = match xdp_filter::XdpFilter::load() {
        Ok(f) => (
            Some(f),
            format!(
                "xdp-filter: Debian xdp-tools' `{}` (default deny, the bench policy's TCP and UDP \
                 ports as destination-port rules), loaded by aya as a plain XDP program.",
                xdp_filter::OBJECT
            ),
        ),
        Err(e) => (None, format!("xdp-filter rows skipped: {e:#}")),
    };

    let tcp4 = |src: Ipv4Addr, port: u16, flags: u8| {
        Frame::ipv4(Ipv4::new(src, SERVER, L4::tcp(40000, port, flags))).pad_to(60)
    };
    let udp4 = |port: u16| Frame::ipv4(Ipv4::new(CLIENT, SERVER, L4::udp(40000, port))).pad_to(60);
    let tcp6 = |port: u16| Frame::ipv6(Ipv6::new(CLIENT6, SERVER6, L4::tcp(40000, port, SYN)));
    let udp6 = |port: u16| Frame::ipv6(Ipv6::new(CLIENT6, SERVER6, L4::udp(40000, port)));
    // A reply from an upstream's port 443 to this host's ephemeral port 45000.
    let reply = Frame::ipv4(Ipv4::new(CLIENT, SERVER, L4::tcp(443, 45000, SYN | ACK))).pad_to(60);

    let mut subjects: Vec<(&str, Subject)> = vec![
        (
            "bare XDP_DROP",
            Subject::Bare("drop", tcp4(CLIENT, 3306, SYN).build()),
        ),
        (
            "bare XDP_PASS",
            Subject::Bare("pass", tcp4(CLIENT, 80, SYN).build()),
        ),
        (
            "allowed tcp v4",
            Subject::Enforcer(tcp4(CLIENT, 80, SYN).build()),
        ),
        ("allowed udp v4", Subject::Enforcer(udp4(5140).build())),
        ("allowed tcp v6", Subject::Enforcer(tcp6(443).build())),
        ("allowed udp v6", Subject::Enforcer(udp6(5140).build())),
        (
            "port_closed tcp v4",
            Subject::Enforcer(tcp4(CLIENT, 3306, SYN).build()),
        ),
        ("port_closed udp v6", Subject::Enforcer(udp6(161).build())),
        (
            "source_not_allowed",
            Subject::Enforcer(tcp4(CLIENT, 22, SYN).build()),
        ),
        (
            "denied",
            Subject::Enforcer(tcp4(Ipv4Addr::new(192, 0, 2, 9), 80, SYN).build()),
        ),
        (
            "trusted",
            Subject::Enforcer(tcp4(Ipv4Addr::new(203, 0, 113, 200), 3306, SYN).build()),
        ),
        ("return", Subject::Enforcer(reply.build())),
    ];
    if let Some(filter) = xdp_filter.as_mut() {
        let allowed = tcp4(CLIENT, 80, SYN).build();
        let closed = tcp4(CLIENT, 3306, SYN).build();
        // Each xdp-filter frame must get the verdict its row is named after.
        for (frame, want) in [(&allowed, XDP_PASS), (&closed, XDP_DROP)] {
            let (verdict, _) = filter.time(frame, 1)?;
            if verdict != want {
                bail!("xdp-filter returns {verdict} instead of {want}");
            }
        }
        subjects.push(("xdp-filter allowed tcp v4", Subject::XdpFilter(allowed)));
        subjects.push(("xdp-filter port_closed tcp v4", Subject::XdpFilter(closed)));
    }

    // The return path needs its flow recorded, in the kernel and in the model.
    let mut state = ModelState::default();
    if let Ok(mirror_xdp::model::Parsed::Ip(packet)) = parse(&reply.build())
        && let Some(key) = flow_key(&packet)
    {
        enforcer
            .maps
            .insert_flow(&key, mirror_xdp::kernel::maps::monotonic_ns())?;
        state.flows.insert(key);
    }
    // Each enforcer frame must take the path it is named after.
    for (name, subject) in &subjects {
        if let Subject::Enforcer(frame) = subject {
            let reason = classify(frame, &policy, &mut state).reason.name();
            if !name.starts_with(reason) {
                bail!("bench frame {name:?} takes the {reason} path");
            }
        }
    }

    let mut samples: Vec<Vec<u64>> = vec![Vec::new(); subjects.len()];
    for _ in 0..ROUNDS {
        for (i, (_, subject)) in subjects.iter().enumerate() {
            let (_, ns) = match subject {
                Subject::Enforcer(frame) => enforcer.time(frame, REPEAT)?,
                Subject::Bare("drop", frame) => bare_drop.time(frame, REPEAT)?,
                Subject::Bare(_, frame) => bare_pass.time(frame, REPEAT)?,
                Subject::XdpFilter(frame) => match xdp_filter.as_mut() {
                    Some(filter) => filter.time(frame, REPEAT)?,
                    None => bail!("xdp-filter row without xdp-filter"),
                },
            };
            samples[i].push(ns);
        }
    }

    let drop_median = median(&samples[0]);
    let filter_median = subjects
        .iter()
        .position(|(name, _)| *name == "xdp-filter allowed tcp v4")
        .map(|i| median(&samples[i]));
    let mut table = String::from(
        "| path | ns/packet (median) | min | max | vs bare XDP_DROP | vs xdp-filter |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    for ((name, _), s) in subjects.iter().zip(&samples) {
        let m = median(s);
        let vs_filter = match filter_median {
            Some(f) if *name == "allowed tcp v4" => format!("{:.2}x", m as f64 / f.max(1) as f64),
            _ => String::new(),
        };
        table.push_str(&format!(
            "| {name} | {m} | {} | {} | {:.2}x | {vs_filter} |\n",
            s.iter().min().unwrap_or(&0),
            s.iter().max().unwrap_or(&0),
            m as f64 / drop_median.max(1) as f64
        ));
    }
    drop(xdp_filter);
    if args.paths_only {
        print!("{table}");
        return Ok(());
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let scaling = scaling::run()?;
    let lists = lists::run()?;
    let destinations = destinations::run()?;
    let egress = egress::run()?;
    let end_to_end = end_to_end::run(POLICY)?;
    let deny_list = deny_list_e2e::run();
    let control = control_plane::run(POLICY)?;
    let crowdsec = crowdsec_feed::run();
    let syn_flood = syn_absorb::run();
    let chart_note = chart_note(&out, &subjects, &samples, &end_to_end);
    let path_median = |name: &str| {
        subjects
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| median(&samples[i]) as f64)
    };
    let vs_drop = |name: &str| path_median(name).map(|c| c / drop_median as f64);
    let goals = goals::table(&goals::Figures {
        closed_vs_drop: vs_drop("port_closed tcp v4"),
        trusted_vs_drop: vs_drop("trusted"),
        source_not_allowed_vs_drop: vs_drop("source_not_allowed"),
        return_vs_drop: vs_drop("return"),
        allowed_vs_filter: path_median("allowed tcp v4")
            .zip(path_median("xdp-filter allowed tcp v4"))
            .map(|(a, f)| a / f),
        end_to_end: &end_to_end,
        scaling: &scaling,
        lists_worst: Some(lists::worst(&lists)),
        control: &control,
        syn_flood: syn_flood
            .as_ref()
            .ok()
            .and_then(|rows| syn_absorb::figures(rows)),
        cookie_download: cookies.as_ref().map(|m| m.speeds.ratio()),
        crowdsec: crowdsec.as_ref().ok().map(crowdsec_feed::Outcome::full_ms),
        destinations_worst: Some(destinations::worst(&destinations)),
    });
    let crowdsec_section = match &crowdsec {
        Ok(o) => crowdsec_feed::table(o),
        Err(e) => format!("skipped: {e:#}\n"),
    };
    let cookie_section = match &cookies {
        Some(m) => format!(
            "{}\n\n{}",
            cookie_download::description(),
            cookie_download::table(m)
        ),
        None => "not measured: `bench --cookie-download FILE` was not given the figures of a \
                 guest run (`cargo xtask bench` runs one)\n"
            .to_string(),
    };
    let syn_flood_section = match &syn_flood {
        Ok(rows) => syn_absorb::table(rows),
        Err(e) => format!("skipped: {e:#}\n"),
    };
    let deny_list_section = match &deny_list {
        Ok(rows) => deny_list_e2e::table(rows),
        Err(e) => format!("skipped: {e:#}\n"),
    };
    let report = format!(
        "# Benchmarks\n\nKernel {}, {cpu}, {} CPUs. Command: `cargo xtask bench` (about 3 \
         minutes; needs root). Every figure is the median of interleaved repetitions, with \
         min and max; every ratio pairs two figures of this one run.\n\n## Goals\n\n{goals}\n\
         ## Per-packet cost by verdict path\n\nBPF_PROG_TEST_RUN, {ROUNDS} interleaved rounds of \
         {REPEAT} runs per path, 60-byte frames (IPv6 frames 74 bytes: the smallest with a TCP \
         header), the kernel's average ns per run; median, min and max over the rounds, with \
         the bench policy (the example mirror policy with a trusted network).\n\n{table}\n\
         {xdp_filter_note}\n\n## Every path with realistic lists\n\n\
         The same paths with the lists a public mirror runs, next to small lists, side by \
         side in {lists_rounds} interleaved rounds of {REPEAT} runs. Realistic: {static_n} \
         IPv4 and {static_n} IPv6 deny prefixes in the policy (IPv4 60% /32, the rest \
         /16../31; IPv6 in 2000::/3, 40% /128, 25% /64, 15% /48, 10% /56, the rest \
         /32../127), {live_deny} live deny entries with TTLs of 1 to 24 hours and {live_allow} \
         live allow entries, half of each IPv4 and half IPv6, of the same lengths. Small: the \
         bench policy with an IPv6 prefix in each list, and the one live entry each live path \
         needs.\n\n{lists_table}\n\
         ### Where the nanoseconds go\n\n{findings}\n\
         ## Rules per destination (`to`)\n\n\
         The bench policy with a VRRP rule, next to the same rules with `to` lists (the web \
         ports and SSH to the server's addresses and six more, among them a /26 and two \
         /64s; HTTP for the admins at another address; VRRP at two), the same frames \
         through both, side by side in {destinations_rounds} interleaved rounds of \
         {REPEAT} runs. A port or protocol that a rule with `to` lists costs one more trie \
         lookup (by port and destination); the others keep the array lookup alone (a \
         goal above).\n\n\
         {destinations_table}\n\
         ## The egress program\n\n\
         What the host sends passes the egress program: the same frames (60 bytes; IPv6 74) \
         through it with the hook idle (`return_traffic = false`, no `[egress]`: it reads the \
         config and returns), with return traffic alone (the default: a SYN or a datagram \
         from an unlisted port records a flow), and with the bench policy plus `[egress] \
         default = \"drop\"` and a mirror's egress rules (rsync and HTTPS to three upstream \
         prefixes, DNS and NTP to two resolvers, HTTP anywhere), side by side in \
         {egress_rounds} interleaved rounds of {REPEAT} runs. Only a packet that opens a \
         connection is judged, and with return traffic recorded (an insert into the flow \
         LRU, most of its cost); the rest of a connection's packets pass after the parse, \
         and a dropped one records nothing.\n\n\
         {egress_table}\n\
         ## Deny list size\n\n\
         The same 20,000 SYN frames, each from another source (half inside listed \
         prefixes, half anywhere), one test run each, {rounds} rounds; the lists are 60% \
         /32 and 40% /24 prefixes spread over the IPv4 space.\n\n{}",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        scaling::table(&scaling),
        rounds = 3,
        lists_rounds = lists::ROUNDS,
        static_n = lists::STATIC_PREFIXES,
        live_deny = lists::LIVE_DENY,
        live_allow = lists::LIVE_ALLOW,
        lists_table = lists::table(&lists),
        destinations_rounds = destinations::ROUNDS,
        destinations_table = destinations::table(&destinations),
        egress_rounds = egress::ROUNDS,
        egress_table = egress::table(&egress),
        findings = findings::FINDINGS,
    );
    let report = format!(
        "{report}\n### The same lists end to end, next to an nftables interval set\n\n\
         2,000,000 SYNs to a closed port from random sources (all 32 bits random), sent and \
         received as in the end-to-end table below, 3 interleaved repetitions per size. \
         mirror-xdp drops each (`denied` or `port_closed`); nftables runs a netdev ingress \
         chain `ip saddr @deny drop; tcp dport 3306 drop` with the list as one interval set \
         (`flags interval; auto-merge`), loaded with `nft -f`. Receiver CPU ns/packet as below.\n\n\
         {deny_list_section}\n\
         ## End to end on a veth pair\n\n\
         {frames} SYNs to closed TCP port 3306 (random source ports and sequence numbers) sent \
         from the client namespace with the live-frames generator (BPF_PROG_TEST_RUN) on CPU 0, \
         received by the server veth whose NAPI runs threaded, in a kernel thread pinned to \
         the last CPU: the receiver's CPU time is that thread's alone. {reps} interleaved \
         repetitions, median, min and max. Received pps: frames the server veth's XDP hook saw \
         (`ethtool -S` xdp_packets) over the time from the flood's start until that counter \
         stopped moving; a receiver slower than the sender shows its own rate, a faster one \
         the sender's. Drops per receiving core-second: 10^9 / receiver CPU ns per packet, \
         what one core of this machine drops at full load. Sender + receiver: all CPUs' busy \
         jiffies (`/proc/stat`). nftables and iptables rows run a bare XDP_PASS natively on \
         the server veth (frames from a live-frames sender reach a veth peer promptly only \
         when it runs native XDP). Dropped counts: the veth's xdp_drops, the nft rule counter, \
         the iptables rule counter.\n\n{}\n{chart_note}\n\n## SYN flood: cookies from XDP next to the kernel's\n\n\
         {syn_frames} SYNs at {syn_rate} a second to an open port (a listener on TCP 80), each \
         from a random source (the low 24 bits) and port, sent and received as in the table \
         above, {syn_reps} interleaved repetitions. mirror-xdp: the port open, \
         `global_syn_rate = 1000` and `syn_cookies = true`, so nearly every SYN is answered \
         from XDP (`syn_cookie`). The kernel: a bare XDP_PASS and `tcp_syncookies = 2`, so it \
         answers every SYN with its own cookie (`TcpExtSyncookiesSent`). Answers per \
         receiving core-second: answered SYNs over the receive thread's CPU time. Meanwhile a \
         legitimate client connects to the listener one connect after another over the \
         testbed's second veth pair, from the receiving core (3 s timeout; a banner read: \
         the connection worked); the flood's answers are dropped by a bare XDP_DROP on the \
         client end of the first pair, whose receive work the receiving core also runs.\n\n{syn_flood_section}\n\
         ### A download over a connection made from a cookie\n\n{cookie_section}\n## Control plane\n\n\
         Wall time of the `mirror-xdp` command in the server namespace of a veth testbed.\n\n{}\n\
         ### A CrowdSec feed\n\n\
         100,000 ban decisions (90% IPv4 addresses, 10% IPv6 /64s) imported into \
         Debian's crowdsec 1.4.6 (its Local API alone, on the server namespace's loopback), \
         pulled by `mirror-xdp run` in full at its start, 3 times from no CrowdSec entries, \
         then 3 deltas of 1,000 new ones on top, as the daemon logs them: the pull (the \
         LAPI's work and the transfer) and the time from its answer until the entries are in \
         force (parsed, written to the kernel's tries and the state file).\n\n{crowdsec_section}",
        end_to_end::table(&end_to_end),
        control_plane::table(&control),
        frames = end_to_end::FRAMES,
        reps = end_to_end::REPETITIONS,
        syn_frames = syn_absorb::FRAMES,
        syn_rate = syn_absorb::RATE_PPS,
        syn_reps = syn_absorb::REPETITIONS,
    );
    print!("{report}");
    if let Some(out) = out {
        std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// Draws docs/benchmarks.png next to the report; returns the report's line about it.
fn chart_note(
    out: &Option<PathBuf>,
    subjects: &[(&str, Subject)],
    samples: &[Vec<u64>],
    end_to_end: &end_to_end::Outcome,
) -> String {
    let Some(out) = out else {
        return String::new();
    };
    let png = out.with_extension("png");
    let panels = [
        chart::Panel {
            title: "BPF_PROG_TEST_RUN cost per packet (median)".to_string(),
            unit: "ns per packet",
            bars: subjects
                .iter()
                .zip(samples)
                .map(|((name, _), s)| (name.to_string(), median(s) as f64))
                .collect(),
        },
        chart::Panel {
            title: "End to end on a veth pair: received pps (median)".to_string(),
            unit: "packets per second",
            bars: end_to_end
                .rows
                .iter()
                .map(|r| (r.name.to_string(), end_to_end::stats(&r.pps).0))
                .collect(),
        },
        chart::Panel {
            title: "End to end: receiving core's CPU per packet (median)".to_string(),
            unit: "CPU ns per packet",
            bars: end_to_end
                .rows
                .iter()
                .map(|r| (r.name.to_string(), end_to_end::stats(&r.receiver_ns).0))
                .collect(),
        },
    ];
    let name = png.file_name().unwrap_or_default().to_string_lossy();
    match chart::draw(&png, &panels) {
        Ok(()) => format!("Chart: [{name}]({name})."),
        Err(e) => format!("Chart skipped: {e:#}"),
    }
}

fn median(samples: &[u64]) -> u64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}
