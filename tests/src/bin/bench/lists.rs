//! Every verdict path with the lists a real mirror runs (100,000 IPv4 and 100,000 IPv6 deny
//! prefixes of mixed lengths in the policy, 100,000 live deny entries with TTLs and 1,000
//! live allow entries, in both families) next to the same paths with small lists (the
//! bench policy's, with an IPv6 prefix in each list, plus the one live entry each live path
//! needs), measured side by side.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result, bail};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mirror_xdp::{
    lifecycle::lockout::start_state,
    live::sources::{Clock, LiveSet},
    model::{ModelState, classify},
    observe::testrun::{Baseline, TestProgram},
    policy::Policy,
};
use mirror_xdp_tests::frames::{Frame, Ipv4, Ipv6, L4};

use crate::{CLIENT, CLIENT6, POLICY, REPEAT, SERVER, SERVER6, SYN, median, scaling::Rng};

pub const STATIC_PREFIXES: usize = 100_000;
pub const LIVE_DENY: usize = 100_000;
pub const LIVE_ALLOW: usize = 1_000;
pub const ROUNDS: usize = 9;

/// The bench policy, with the big deny list added from a file.
fn policy_text(deny_file: Option<&Path>) -> String {
    match deny_file {
        Some(file) => POLICY.replace(
            r#"deny = ["192.0.2.0/24", "2001:db8:bad::/48"]"#,
            &format!(
                r#"deny = ["192.0.2.0/24", "2001:db8:bad::/48", {{ file = "{}" }}]"#,
                file.display()
            ),
        ),
        None => POLICY.to_string(),
    }
}

/// Live entries every configuration has: the ones the live paths are measured with.
const LIVE_DENIED_V4: Ipv4Addr = Ipv4Addr::new(100, 64, 5, 5);
const LIVE_DENIED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xdead, 0, 0, 0, 0, 7);
const LIVE_TRUSTED_V4: Ipv4Addr = Ipv4Addr::new(100, 64, 6, 6);
const LIVE_TRUSTED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xbeef, 0, 0, 0, 0, 6);

/// Addresses the bench frames come from: no generated entry may contain one.
fn reserved() -> Vec<IpAddr> {
    vec![
        CLIENT.into(),
        CLIENT6.into(),
        Ipv4Addr::new(192, 0, 2, 9).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 9).into(),
        Ipv4Addr::new(203, 0, 113, 200).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0x8000, 0, 0, 0, 1).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1).into(),
        LIVE_DENIED_V4.into(),
        LIVE_DENIED_V6.into(),
        LIVE_TRUSTED_V4.into(),
        LIVE_TRUSTED_V6.into(),
    ]
}

/// `count` prefixes of one family: IPv4 60% /32, the rest /16../31; IPv6 in 2000::/3, 40%
/// /128, 25% /64, 15% /48, 10% /56, the rest /32../127. None contains a reserved address.
pub fn prefixes(rng: &mut Rng, count: usize, v6: bool) -> Vec<IpNet> {
    let reserved = reserved();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let pick = rng.next() % 100;
        let net = if v6 {
            let len = match pick {
                0..40 => 128,
                40..65 => 64,
                65..80 => 48,
                80..90 => 56,
                _ => 32 + (rng.next() % 96) as u8,
            };
            let addr = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3 | 1 << 125;
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(addr), len)
                    .expect("length")
                    .trunc(),
            )
        } else {
            let len = if pick < 60 {
                32
            } else {
                16 + (rng.next() % 16) as u8
            };
            IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), len)
                    .expect("length")
                    .trunc(),
            )
        };
        if !reserved.iter().any(|a| net.contains(a)) {
            out.push(net);
        }
    }
    out
}

/// One measured configuration: the program and the model state that mirrors its live set.
struct Setup {
    program: TestProgram,
    policy: Policy,
    model: ModelState,
}

fn setup(dir: &Path, big: bool) -> Result<Setup> {
    let mut rng = Rng(0x11575);
    let deny_file = if big {
        let mut text = String::new();
        for net in prefixes(&mut rng, STATIC_PREFIXES, false)
            .into_iter()
            .chain(prefixes(&mut rng, STATIC_PREFIXES, true))
        {
            text.push_str(&format!("{net}\n"));
        }
        let file = dir.join("deny.txt");
        std::fs::write(&file, text)?;
        Some(file)
    } else {
        None
    };
    let text = policy_text(deny_file.as_deref());
    if deny_file.is_some() && text == POLICY {
        bail!("the bench policy's deny line changed: the big list has nowhere to go");
    }
    let policy =
        Policy::parse(&text, &dir.join("policy.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut program = TestProgram::load(&policy)?;

    let mut live = LiveSet::default();
    let clock = Clock::now();
    let host = |a: IpAddr| IpNet::from(a);
    live.deny(
        &[host(LIVE_DENIED_V4.into()), host(LIVE_DENIED_V6.into())],
        clock.expiry_after(3600),
    );
    live.allow(&[host(LIVE_TRUSTED_V4.into()), host(LIVE_TRUSTED_V6.into())]);
    if big {
        // Half of each family; TTLs from one to 24 hours, as bans from a feed have.
        for v6 in [false, true] {
            for net in prefixes(&mut rng, LIVE_DENY / 2, v6) {
                live.deny(&[net], clock.expiry_after(3600 + rng.next() % 82_800));
            }
            live.allow(&prefixes(&mut rng, LIVE_ALLOW / 2, v6));
        }
    }
    let flags = live.apply_at(&mut program.maps, &clock)?;
    let mut config = program.maps.config()?;
    config.flags |= flags;
    program.maps.set_config(&config)?;
    let model = ModelState {
        config,
        ..start_state(&policy, &live, &clock)
    };
    Ok(Setup {
        program,
        policy,
        model,
    })
}

pub struct Row {
    pub name: &'static str,
    pub small: Vec<u64>,
    pub big: Vec<u64>,
}

pub struct Outcome {
    pub bare_drop: Vec<u64>,
    pub rows: Vec<Row>,
}

pub fn run() -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let mut small = setup(dir.path(), false).context("small lists")?;
    let mut big = setup(dir.path(), true).context("realistic lists")?;
    let mut bare_drop = Baseline::load("bare_drop")?;

    let tcp4 = |src: Ipv4Addr, port: u16| {
        Frame::ipv4(Ipv4::new(src, SERVER, L4::tcp(40000, port, SYN)))
            .pad_to(60)
            .build()
    };
    let tcp6 = |src: Ipv6Addr, port: u16| {
        Frame::ipv6(Ipv6::new(src, SERVER6, L4::tcp(40000, port, SYN))).build()
    };
    let udp6 = |port: u16| Frame::ipv6(Ipv6::new(CLIENT6, SERVER6, L4::udp(40000, port))).build();
    let paths: Vec<(&'static str, Vec<u8>)> = vec![
        ("allowed tcp v4", tcp4(CLIENT, 80)),
        ("allowed tcp v6", tcp6(CLIENT6, 443)),
        ("port_closed tcp v4", tcp4(CLIENT, 3306)),
        ("port_closed udp v6", udp6(161)),
        ("source_not_allowed v4", tcp4(CLIENT, 22)),
        ("source_not_allowed v6", tcp6(CLIENT6, 22)),
        ("denied v4 (policy)", tcp4(Ipv4Addr::new(192, 0, 2, 9), 80)),
        (
            "denied v6 (policy)",
            tcp6(Ipv6Addr::new(0x2001, 0xdb8, 0xbad, 0, 0, 0, 0, 9), 80),
        ),
        ("denied v4 (live)", tcp4(LIVE_DENIED_V4, 80)),
        ("denied v6 (live)", tcp6(LIVE_DENIED_V6, 80)),
        (
            "trusted v4 (policy)",
            tcp4(Ipv4Addr::new(203, 0, 113, 200), 3306),
        ),
        (
            "trusted v6 (policy)",
            tcp6(Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0x8000, 0, 0, 0, 1), 3306),
        ),
        ("trusted v4 (live)", tcp4(LIVE_TRUSTED_V4, 3306)),
        ("trusted v6 (live)", tcp6(LIVE_TRUSTED_V6, 3306)),
    ];
    // Each frame takes the path it is named after, in both configurations.
    for (name, frame) in &paths {
        for (setup, which) in [(&mut small, "small"), (&mut big, "realistic")] {
            let reason = classify(frame, &setup.policy, &mut setup.model)
                .reason
                .name();
            if !name.starts_with(reason) {
                bail!("{which} lists: bench frame {name:?} takes the {reason} path");
            }
        }
    }

    let mut rows: Vec<Row> = paths
        .iter()
        .map(|(name, _)| Row {
            name,
            small: Vec::new(),
            big: Vec::new(),
        })
        .collect();
    let mut bare = Vec::new();
    let drop_frame = tcp4(CLIENT, 3306);
    for _ in 0..ROUNDS {
        bare.push(bare_drop.time(&drop_frame, REPEAT)?.1);
        for (row, (_, frame)) in rows.iter_mut().zip(&paths) {
            row.small.push(small.program.time(frame, REPEAT)?.1);
            row.big.push(big.program.time(frame, REPEAT)?.1);
        }
    }
    Ok(Outcome {
        bare_drop: bare,
        rows,
    })
}

/// The goals' figures: the worst path's cost over a bare drop, and over its small-list cost.
pub fn worst(outcome: &Outcome) -> (f64, f64) {
    let drop = median(&outcome.bare_drop).max(1) as f64;
    let mut vs_drop: f64 = 0.0;
    let mut vs_small: f64 = 0.0;
    for row in &outcome.rows {
        let big = median(&row.big) as f64;
        vs_drop = vs_drop.max(big / drop);
        vs_small = vs_small.max(big / median(&row.small).max(1) as f64);
    }
    (vs_drop, vs_small)
}

pub fn table(outcome: &Outcome) -> String {
    let drop = median(&outcome.bare_drop).max(1);
    let mut out = format!(
        "bare XDP_DROP: {drop} ns (median; min {}, max {}).\n\n\
         | path | small lists ns (median) | realistic lists ns (median) | min | max | vs bare XDP_DROP | vs small lists |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        outcome.bare_drop.iter().min().unwrap_or(&0),
        outcome.bare_drop.iter().max().unwrap_or(&0),
    );
    for row in &outcome.rows {
        let (small, big) = (median(&row.small), median(&row.big));
        out.push_str(&format!(
            "| {} | {small} | {big} | {} | {} | {:.2}x | {:.2}x |\n",
            row.name,
            row.big.iter().min().unwrap_or(&0),
            row.big.iter().max().unwrap_or(&0),
            big as f64 / drop as f64,
            big as f64 / small.max(1) as f64,
        ));
    }
    out
}
