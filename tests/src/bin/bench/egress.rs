//! What the egress program costs per packet this host sends: the same frames through it
//! with the hook idle (no return traffic, no `[egress]`), with return traffic alone (the
//! default: a connection the host opens records a flow), and with `[egress] default =
//! "drop"` and a mirror's rules, side by side.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};
use mirror_xdp::{
    model::classify_egress,
    observe::testrun::{TC_DROP, TC_NEXT, TestProgram},
    policy::Policy,
};
use mirror_xdp_tests::frames::{Frame, Ipv4, Ipv6, L4};

use crate::{ACK, POLICY, REPEAT, SERVER, SERVER6, SYN, median};

pub const ROUNDS: usize = 9;

/// A mirror's egress rules: sync from its upstreams (two addresses and an IPv6 /48), DNS
/// and NTP to its resolvers, HTTP anywhere (package fetches), everything else dropped.
const EGRESS_RULES: &str = r#"
[egress]
default = "drop"
[[egress.ports]]
proto = "tcp"
ports = [873, 443]
to = ["192.0.2.80", "192.0.2.81", "2001:db8:80::/48"]
[[egress.ports]]
proto = "udp"
ports = [53, 123]
to = ["198.51.100.53", "2001:db8:1::53"]
[[egress.ports]]
proto = "tcp"
ports = [80]
"#;

/// The three configurations, in the table's column order.
const COLUMNS: [&str; 3] = ["idle", "return traffic", "egress rules"];

pub struct Row {
    pub name: &'static str,
    /// What the egress rules do with the frame: sent or dropped.
    pub outcome: &'static str,
    /// Nanoseconds per run, per column, per round.
    pub ns: [Vec<u64>; 3],
}

pub fn run() -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let parse = |text: &str| {
        Policy::parse(text, &dir.path().join("policy.toml")).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let idle = parse(&POLICY.replacen(
        "version = 1",
        "version = 1\n[settings]\nreturn_traffic = false",
        1,
    ))?;
    let policies = [
        idle,
        parse(POLICY)?,
        parse(&format!("{POLICY}{EGRESS_RULES}"))?,
    ];
    let mut programs = Vec::new();
    for policy in &policies {
        let mut program = TestProgram::load(policy)?;
        program.load_egress()?;
        programs.push(program);
    }

    let upstream = Ipv4Addr::new(192, 0, 2, 81);
    let elsewhere = Ipv4Addr::new(203, 0, 113, 99);
    let tcp4 = |dst: Ipv4Addr, sport: u16, dport: u16, flags: u8| {
        Frame::ipv4(Ipv4::new(SERVER, dst, L4::tcp(sport, dport, flags)))
            .pad_to(60)
            .build()
    };
    let udp4 = |dst: Ipv4Addr, sport: u16, dport: u16| {
        Frame::ipv4(Ipv4::new(SERVER, dst, L4::udp(sport, dport)))
            .pad_to(60)
            .build()
    };
    let upstream6 = Ipv6Addr::new(0x2001, 0xdb8, 0x80, 0, 0, 0, 0, 1);
    let paths: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "tcp SYN v4 to an upstream's 873 (`to`)",
            tcp4(upstream, 45000, 873, SYN),
        ),
        (
            "tcp SYN v6 to an upstream's 443 (`to`)",
            Frame::ipv6(Ipv6::new(SERVER6, upstream6, L4::tcp(45000, 443, SYN))).build(),
        ),
        ("tcp SYN v4 to 80 anywhere", tcp4(elsewhere, 45000, 80, SYN)),
        ("tcp SYN v4 to 25", tcp4(elsewhere, 45000, 25, SYN)),
        (
            "udp v4 to a resolver's 53 (`to`)",
            udp4(Ipv4Addr::new(198, 51, 100, 53), 45000, 53),
        ),
        ("udp v4 to another's 53", udp4(elsewhere, 45000, 53)),
        (
            "tcp ACK v4 (data of a connection)",
            tcp4(elsewhere, 80, 45000, ACK),
        ),
        (
            "udp v4 reply from 5140 (a served port)",
            udp4(elsewhere, 5140, 45000),
        ),
    ];
    let mut rows = Vec::new();
    for (name, frame) in &paths {
        // Each frame must get, from every configuration, what the model says it gets.
        for (policy, program) in policies.iter().zip(&mut programs) {
            let want = match classify_egress(frame, policy).passes {
                true => TC_NEXT,
                false => TC_DROP,
            };
            let (got, _) = program.time_egress(frame, 1)?;
            if got != want {
                bail!("egress bench frame {name:?}: kernel {got:#x}, model {want:#x}");
            }
        }
        let judged = classify_egress(frame, &policies[2]);
        rows.push(Row {
            name,
            outcome: if judged.passes { "sent" } else { "dropped" },
            ns: Default::default(),
        });
    }
    for _ in 0..ROUNDS {
        for (row, (_, frame)) in rows.iter_mut().zip(&paths) {
            for (samples, program) in row.ns.iter_mut().zip(&mut programs) {
                samples.push(program.time_egress(frame, REPEAT)?.1);
            }
        }
    }
    Ok(rows)
}

pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "| frame sent | with the rules | {} ns | {} ns | {} ns | rules - return traffic |\n\
         |---|---|---:|---:|---:|---:|\n",
        COLUMNS[0], COLUMNS[1], COLUMNS[2]
    );
    for row in rows {
        let [idle, flows, rules] = row.ns.each_ref().map(|s| median(s));
        out.push_str(&format!(
            "| {} | {} | {idle} | {flows} | {rules} | {:+} ns |\n",
            row.name,
            row.outcome,
            rules as i64 - flows as i64
        ));
    }
    out
}
