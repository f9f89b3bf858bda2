//! What `to` costs per packet: the bench policy with a VRRP rule, next to the same rules
//! with `to` lists (the rule's port is then looked up in the destination trie too), the
//! same frames through both side by side.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};
use mirror_xdp::{
    model::{ModelState, classify},
    observe::testrun::TestProgram,
    policy::Policy,
};
use mirror_xdp_tests::frames::{Frame, Ipv4, Ipv6, L4};

use crate::{CLIENT, CLIENT6, POLICY, REPEAT, SERVER, SERVER6, SYN, median};

pub const ROUNDS: usize = 9;

/// The extra rule both configurations have: VRRP from the peers.
const VRRP: &str = "\n[[protocols]]\nprotocols = [\"vrrp\"]\nfrom = [\"198.51.100.0/24\"]\n";

/// The bench policy's rules with `to`: the web ports and SSH on the server's addresses and
/// seven more (a host has a few), HTTP for the admins on another one, VRRP on one.
fn with_to() -> String {
    let to = "to = [\"198.51.100.1\", \"198.51.100.3\", \"198.51.100.4\", \"198.51.100.128/26\", \
              \"2001:db8:1::1\", \"2001:db8:1::3\", \"2001:db8:1:1::/64\", \"2001:db8:1:2::/64\"]";
    let ports = "ports = [80, 443, 873, 8080, 5000, 9000, 3128, \"30001-30010\"]";
    let text = POLICY
        .replace(ports, &format!("{ports}\n{to}"))
        .replace("from = [\"admins\"]", &format!("from = [\"admins\"]\n{to}"));
    format!(
        "{text}\n[[ports]]\nproto = \"tcp\"\nports = [80]\nfrom = [\"admins\"]\n\
         to = [\"198.51.100.200\"]\n{}to = [\"198.51.100.1\", \"2001:db8:1::1\"]\n",
        VRRP.trim_start()
    )
}

pub struct Row {
    pub name: &'static str,
    /// A rule with `to` lists the frame's port or protocol in the policy with `to`: the
    /// trie lookup is its cost; the other rows must cost what they did.
    pub with_to: bool,
    /// The reason without and with `to`.
    pub reasons: (&'static str, &'static str),
    pub without: Vec<u64>,
    pub with: Vec<u64>,
}

pub fn run() -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let parse = |text: &str| {
        Policy::parse(text, &dir.path().join("policy.toml")).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let without = parse(&format!("{POLICY}{VRRP}"))?;
    let with = parse(&with_to())?;
    if with.rules.iter().filter(|r| r.to.is_some()).count() != 3 {
        bail!("the bench policy's rules changed: `to` went nowhere");
    }
    let mut programs = [
        (TestProgram::load(&without)?, &without),
        (TestProgram::load(&with)?, &with),
    ];

    let tcp4 = |dst: Ipv4Addr, port: u16| {
        Frame::ipv4(Ipv4::new(CLIENT, dst, L4::tcp(40000, port, SYN)))
            .pad_to(60)
            .build()
    };
    let tcp6 = |dst: Ipv6Addr, port: u16| {
        Frame::ipv6(Ipv6::new(CLIENT6, dst, L4::tcp(40000, port, SYN))).build()
    };
    let vrrp = L4::Other {
        proto: 112,
        payload: vec![0x21, 51, 100, 1, 0, 1, 0, 0],
    };
    // (name, whether a rule with `to` lists its port or protocol there, frame)
    let paths: Vec<(&'static str, bool, Vec<u8>)> = vec![
        ("tcp 80 v4", true, tcp4(SERVER, 80)),
        ("tcp 443 v6", true, tcp6(SERVER6, 443)),
        ("tcp 22 v4, not an admin", true, tcp4(SERVER, 22)),
        (
            "tcp 80 v4, another address",
            true,
            tcp4(Ipv4Addr::new(198, 51, 100, 9), 80),
        ),
        ("tcp 3306 v4, no rule", false, tcp4(SERVER, 3306)),
        (
            "udp 5140 v4, rule without to",
            false,
            Frame::ipv4(Ipv4::new(CLIENT, SERVER, L4::udp(40000, 5140)))
                .pad_to(60)
                .build(),
        ),
        (
            "vrrp v4",
            true,
            Frame::ipv4(Ipv4::new(CLIENT, SERVER, vrrp))
                .pad_to(60)
                .build(),
        ),
    ];
    let mut rows = Vec::new();
    for (name, with_to, frame) in &paths {
        let reason = |policy: &Policy, program: &TestProgram| {
            let mut state = ModelState {
                config: program.config,
                ..ModelState::default()
            };
            classify(frame, policy, &mut state).reason.name()
        };
        rows.push(Row {
            name,
            with_to: *with_to,
            reasons: (
                reason(programs[0].1, &programs[0].0),
                reason(programs[1].1, &programs[1].0),
            ),
            without: Vec::new(),
            with: Vec::new(),
        });
    }
    for _ in 0..ROUNDS {
        for (row, (_, _, frame)) in rows.iter_mut().zip(&paths) {
            let [(a, _), (b, _)] = &mut programs;
            row.without.push(a.time(frame, REPEAT)?.1);
            row.with.push(b.time(frame, REPEAT)?.1);
        }
    }
    Ok(rows)
}

/// The worst ratio, with `to` rules in the policy over without, of the frames whose port
/// or protocol no rule with `to` lists: they must keep the one array lookup.
pub fn worst(rows: &[Row]) -> f64 {
    rows.iter()
        .filter(|r| !r.with_to)
        .map(|r| median(&r.with) as f64 / median(&r.without).max(1) as f64)
        .fold(0.0, f64::max)
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| frame | path without `to` | ns (median) | path with `to` | ns (median) | min | max | with / without |\n\
         |---|---|---:|---|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let (a, b) = (median(&row.without), median(&row.with));
        out.push_str(&format!(
            "| {} | {} | {a} | {} | {b} | {} | {} | {:.2}x |\n",
            row.name,
            row.reasons.0,
            row.reasons.1,
            row.with.iter().min().unwrap_or(&0),
            row.with.iter().max().unwrap_or(&0),
            b as f64 / a.max(1) as f64,
        ));
    }
    out
}
