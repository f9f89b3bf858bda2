//! Steps 5, 6 and 12: bans, per-source rates and the global SYN budget, with a model clock.

use super::*;
use crate::compile::config;
use crate::policy::Limits;

const SEC: u64 = 1_000_000_000;

/// The example policy with these limits, and a state at t = 100 s compiled for one CPU.
fn limited(limits: Limits) -> (Policy, ModelState) {
    let mut p = policy();
    p.limits = limits;
    let state = ModelState {
        now_ns: 100 * SEC,
        config: config(&p, 1).unwrap(),
        ..ModelState::default()
    };
    (p, state)
}

fn udp4(src: Ipv4Addr) -> Vec<u8> {
    v4(src, ipproto::UDP, &udp(40000, 5140))
}

#[test]
fn per_source_rate_limits_then_bans_then_forgives() {
    let (p, mut s) = limited(Limits {
        per_source_pps: 10,
        per_source_burst: 3,
        ban_seconds: 2,
        ..Limits::default()
    });
    // A burst of 3 passes, the 4th is over the rate and bans the source.
    for _ in 0..3 {
        passes(classify(&udp4(PEER4), &p, &mut s), Reason::Allowed);
    }
    drops(classify(&udp4(PEER4), &p, &mut s), Reason::RateLimited);
    s.now_ns += SEC;
    drops(classify(&udp4(PEER4), &p, &mut s), Reason::Banned);
    // Another source is unaffected; a trusted one is never limited.
    passes(classify(&udp4(OTHER4), &p, &mut s), Reason::Allowed);
    for _ in 0..10 {
        passes(classify(&udp4(ADMIN4), &p, &mut s), Reason::Trusted);
    }
    // After the ban, the bucket has refilled.
    s.now_ns += 2 * SEC;
    passes(classify(&udp4(PEER4), &p, &mut s), Reason::Allowed);
}

#[test]
fn sources_share_a_bucket_per_prefix() {
    let (p, mut s) = limited(Limits {
        per_source_pps: 1,
        per_source_burst: 1,
        source_prefix_v4: 24,
        ..Limits::default()
    });
    passes(classify(&udp4(PEER4), &p, &mut s), Reason::Allowed);
    let neighbour = Ipv4Addr::new(198, 51, 100, 200);
    drops(classify(&udp4(neighbour), &p, &mut s), Reason::RateLimited);
    // No ban configured: one second later the /24 may send again.
    s.now_ns += SEC;
    passes(classify(&udp4(neighbour), &p, &mut s), Reason::Allowed);
}

#[test]
fn syn_rate_counts_only_new_connections_to_listed_ports() {
    let (p, mut s) = limited(Limits {
        per_source_syn_rate: 1,
        per_source_syn_burst: 2,
        ban_seconds: 5,
        ..Limits::default()
    });
    passes(classify(&tcp4(PEER4, 80), &p, &mut s), Reason::Allowed);
    passes(classify(&tcp4(PEER4, 443), &p, &mut s), Reason::Allowed);
    // Established traffic (ACK) is not a new connection.
    let ack = v4(PEER4, ipproto::TCP, &tcp(40000, 80, tcp_flag::ACK));
    passes(classify(&ack, &p, &mut s), Reason::Allowed);
    // A SYN to a closed port is judged by the port, not the SYN budget.
    drops(classify(&tcp4(PEER4, 3306), &p, &mut s), Reason::PortClosed);
    let j = classify(&tcp4(PEER4, 80), &p, &mut s);
    drops(j, Reason::SynFlood);
    assert_eq!(j.rule_port, Some((Proto::Tcp, 80)));
    // The per-source SYN limit bans too.
    drops(classify(&ack, &p, &mut s), Reason::Banned);
}

#[test]
fn global_syn_budget_holds_for_all_sources_together() {
    let (p, mut s) = limited(Limits {
        global_syn_rate: 5,
        ..Limits::default()
    });
    let mut admitted = 0;
    for i in 0..20u8 {
        let src = Ipv4Addr::new(100, 64, 0, i);
        if !classify(&tcp4(src, 80), &p, &mut s).dropped {
            admitted += 1;
        }
    }
    // A burst of one second's worth, then nothing until time passes; no bans.
    assert_eq!(admitted, 5);
    s.now_ns += SEC;
    passes(classify(&tcp4(OTHER4, 80), &p, &mut s), Reason::Allowed);
}

#[test]
fn live_entries_trust_and_deny_until_they_expire() {
    let mut s = ModelState {
        now_ns: 10 * SEC,
        live_allow: nets(&["192.0.2.9/32"]),
        live_deny: vec![
            ("198.51.100.0/24".parse().unwrap(), 20 * SEC),
            ("198.51.100.7/32".parse().unwrap(), u64::MAX),
        ],
        ..ModelState::default()
    };
    let p = policy();
    // A live allow beats the policy's deny list.
    passes(classify(&udp4(BAD4), &p, &mut s), Reason::Trusted);
    drops(classify(&udp4(PEER4), &p, &mut s), Reason::Denied);
    let other = Ipv4Addr::new(198, 51, 100, 8);
    drops(classify(&udp4(other), &p, &mut s), Reason::Denied);
    s.now_ns = 20 * SEC;
    passes(classify(&udp4(other), &p, &mut s), Reason::Allowed);
    drops(classify(&udp4(PEER4), &p, &mut s), Reason::Denied);
}
