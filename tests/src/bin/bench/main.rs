//! `cargo xtask bench`: nanoseconds per packet of each verdict path of the enforcer in
//! BPF_PROG_TEST_RUN, next to bare `XDP_DROP` and `XDP_PASS` programs, measured side by side
//! in interleaved rounds on 60-byte frames. Prints a Markdown table; with `--out FILE` also
//! writes it there.

mod scaling;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result, bail};
use mirror_xdp::{
    model::{ModelState, classify, flow_key, parse},
    policy::Policy,
    testrun::{Baseline, TestProgram},
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
allow = ["203.0.113.128/25"]
deny = ["192.0.2.0/24"]
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
}

fn main() -> Result<()> {
    let out = std::env::args()
        .skip_while(|a| a != "--out")
        .nth(1)
        .map(std::path::PathBuf::from);
    let policy = Policy::parse(POLICY, Path::new("bench-policy.toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut enforcer = TestProgram::load(&policy)?;
    let mut bare_drop = Baseline::load("bare_drop")?;
    let mut bare_pass = Baseline::load("bare_pass")?;

    let tcp4 = |src: Ipv4Addr, port: u16, flags: u8| {
        Frame::ipv4(Ipv4::new(src, SERVER, L4::tcp(40000, port, flags))).pad_to(60)
    };
    let udp4 = |port: u16| Frame::ipv4(Ipv4::new(CLIENT, SERVER, L4::udp(40000, port))).pad_to(60);
    let tcp6 = |port: u16| Frame::ipv6(Ipv6::new(CLIENT6, SERVER6, L4::tcp(40000, port, SYN)));
    let udp6 = |port: u16| Frame::ipv6(Ipv6::new(CLIENT6, SERVER6, L4::udp(40000, port)));
    // A reply from an upstream's port 443 to this host's ephemeral port 45000.
    let reply = Frame::ipv4(Ipv4::new(CLIENT, SERVER, L4::tcp(443, 45000, SYN | ACK))).pad_to(60);

    let subjects: Vec<(&str, Subject)> = vec![
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

    // The return path needs its flow recorded, in the kernel and in the model.
    let mut state = ModelState::default();
    if let Ok(mirror_xdp::model::Parsed::Ip(packet)) = parse(&reply.build())
        && let Some(key) = flow_key(&packet)
    {
        enforcer
            .maps
            .insert_flow(&key, mirror_xdp::maps::monotonic_ns())?;
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
            };
            samples[i].push(ns);
        }
    }

    let drop_median = median(&samples[0]);
    let mut table = String::from(
        "| path | ns/packet (median) | min | max | vs bare XDP_DROP |\n|---|---:|---:|---:|---:|\n",
    );
    for ((name, _), s) in subjects.iter().zip(&samples) {
        let m = median(s);
        table.push_str(&format!(
            "| {name} | {m} | {} | {} | {:.2}x |\n",
            s.iter().min().unwrap_or(&0),
            s.iter().max().unwrap_or(&0),
            m as f64 / drop_median.max(1) as f64
        ));
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
    let report = format!(
        "# Benchmarks\n\nBPF_PROG_TEST_RUN, {ROUNDS} interleaved rounds of {REPEAT} runs per path, \
         60-byte frames (IPv6 frames 74 bytes: the smallest with a TCP header), the kernel's \
         average ns per run; median, min and max over the rounds. Kernel {}, {cpu}, {} CPUs.\n\
         Command: `cargo xtask bench`.\n\n{table}\n## Deny list size\n\n\
         The same 20,000 SYN frames, each from another source (half inside listed \
         prefixes, half anywhere), one test run each, {rounds} rounds; the lists are 60% \
         /32 and 40% /24 prefixes spread over the IPv4 space.\n\n{}",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        scaling::table(&scaling),
        rounds = 3,
    );
    print!("{report}");
    if let Some(out) = out {
        std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

fn median(samples: &[u64]) -> u64 {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}
