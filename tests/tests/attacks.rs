//! Attacks on the veth testbed: a UDP blast over the per-source packet rate (rate limit,
//! ban, expiry), SYN floods from one and from spoofed random sources against the SYN
//! budgets while legitimate clients connect, and a deny list of a million prefixes.
//! Floods come from the live-frames generator (`mirror_xdp::trafficgen`); each is bounded
//! in packets and seconds.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mirror_xdp::trafficgen::{Randomise, Sent};
use mirror_xdp_tests::cli::{
    attach_policy, reason, root_or_skip, stats, stats_when, try_attach, write_policy,
};
use mirror_xdp_tests::flood::{Connects, connect_loop, snmp, syn_flood, syn_template, udp_blast};
use mirror_xdp_tests::probe::{UdpResult, udp_probe};
use mirror_xdp_tests::servers::{TcpListenerSet, UdpEchoSet};
use mirror_xdp_tests::sweep::PROBE_TIMEOUT;
use mirror_xdp_tests::testbed::*;
use serde_json::Value;

const WEB: u16 = 80;
const ECHO: u16 = 5140;
/// A second ordinary client on the client veth: untrusted, never listed.
const CLIENT2_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// Spoofed flood sources: 100.64.0.0/10 (shared address space), never routed anywhere.
const SPOOF_V4: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
/// Off-link for the server, so it sends no neighbour solicitations for them.
const SPOOF_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 0);

fn add_client2(bed: &Testbed) {
    let addr = format!("{CLIENT2_V4}/24");
    bed.client
        .run_ok("ip", &["addr", "add", &addr, "dev", CLIENT_IF])
        .expect("adding the second client");
}

fn echo(src: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(Testbed::server_addr_for(src.into()), ECHO)
}

fn delta(after: &Value, before: &Value, name: &str) -> u64 {
    reason(after, name, "packets") - reason(before, name, "packets")
}

fn all_packets(s: &Value) -> u64 {
    let reasons = s["reasons"].as_object().expect("reasons");
    reasons.values().filter_map(|r| r["packets"].as_u64()).sum()
}

const OPEN_WEB: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [80]
"#;

/// The generator itself: every frame it sends reaches the enforcer (counted `allowed`) and
/// the server's stack takes it (valid IPv4 and TCP checksums after randomisation).
#[test]
fn generator_frames_arrive_with_valid_checksums() {
    if !root_or_skip() {
        return;
    }
    let started = Instant::now();
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, OPEN_WEB);
    let before = stats(&bed);
    let snmp_before = snmp(&bed.server).expect("snmp");
    let randomise = Randomise {
        src_bits: 22,
        sport: true,
        seq: true,
    };
    let mut sent = 0;
    for (src, bits, count) in [
        (IpAddr::from(SPOOF_V4), 22, 500_000),
        (SPOOF_V6.into(), 16, 100_000),
    ] {
        let template = syn_template(&bed, src, WEB).expect("template");
        let randomise = Randomise {
            src_bits: bits,
            ..randomise
        };
        let s = syn_flood(
            &bed,
            &template,
            randomise,
            count,
            None,
            Duration::from_secs(10),
        )
        .expect("flood");
        eprintln!(
            "generator, {src}/{bits} random: {} frames in {:?}, {:.0} pps",
            s.frames,
            s.elapsed,
            s.pps()
        );
        sent += s.frames;
    }
    let after = stats_when(&bed, Duration::from_secs(3), |s| {
        delta(s, &before, "allowed") >= sent
    });
    let snmp_after = snmp(&bed.server).expect("snmp");
    let grew = |k: &str| snmp_after[k] - snmp_before[k];
    eprintln!(
        "allowed {} of {sent}; server Tcp.InSegs +{}, Tcp.InCsumErrors +{}, Ip.InHdrErrors +{}; {:?}",
        delta(&after, &before, "allowed"),
        grew("Tcp.InSegs"),
        grew("Tcp.InCsumErrors"),
        grew("Ip.InHdrErrors"),
        started.elapsed()
    );
    assert_eq!(delta(&after, &before, "allowed"), sent, "{after:#}");
    assert_eq!(grew("Tcp.InCsumErrors"), 0);
    assert_eq!(grew("Ip.InHdrErrors"), 0);
    assert!(
        grew("Tcp.InSegs") >= sent,
        "the stack took {} of {sent}",
        grew("Tcp.InSegs")
    );

    // The control: the stack does check, so a broken TCP checksum stays broken.
    let mut broken = syn_template(&bed, SPOOF_V4.into(), WEB).expect("template");
    let at = broken.len() - 4;
    broken[at] ^= 0xff;
    syn_flood(&bed, &broken, randomise, 1000, None, Duration::from_secs(5)).expect("flood");
    let csum_errors =
        || snmp(&bed.server).expect("snmp")["Tcp.InCsumErrors"] - snmp_after["Tcp.InCsumErrors"];
    let deadline = Instant::now() + Duration::from_secs(2);
    while csum_errors() < 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        csum_errors(),
        1000,
        "frames with a broken checksum were not caught"
    );
}

const PPS_LIMIT: &str = r#"
version = 1

[[ports]]
proto = "udp"
ports = [5140]

[limits]
per_source_pps = 200
per_source_burst = 50
ban_seconds = 2
"#;
const BAN: Duration = Duration::from_secs(2);

/// One source over `per_source_pps` is rate-limited, then banned; another source is not
/// touched meanwhile, and the first is admitted again once the ban has expired.
#[test]
fn blast_over_the_packet_rate_is_limited_then_banned_until_expiry() {
    if !root_or_skip() {
        return;
    }
    let started = Instant::now();
    let bed = Testbed::new().expect("testbed");
    add_client2(&bed);
    let _echo = UdpEchoSet::start(&bed.server, &[ECHO]).expect("udp echo");
    attach_policy(&bed, PPS_LIMIT);
    let probe = |src: Ipv4Addr| {
        udp_probe(&bed.client, src.into(), echo(src), PROBE_TIMEOUT).expect("probe")
    };
    for src in [CLIENT_V4, CLIENT2_V4] {
        assert_eq!(probe(src), UdpResult::Answered, "{src} before the blast");
    }

    let before = stats(&bed);
    let blast_start = Instant::now();
    let sent = udp_blast(
        &bed.client,
        CLIENT_V4.into(),
        echo(CLIENT_V4),
        2000,
        Duration::from_secs(5),
    )
    .expect("blast");
    let blast_time = blast_start.elapsed();
    // The ban started during the blast, so these probes fall inside it.
    let other = probe(CLIENT2_V4);
    let blasted = probe(CLIENT_V4);
    let in_ban = blast_start.elapsed() < BAN;
    let after = stats_when(&bed, Duration::from_secs(2), |s| {
        delta(s, &before, "allowed")
            + delta(s, &before, "rate_limited")
            + delta(s, &before, "banned")
            >= sent + 2
    });
    let passed = delta(&after, &before, "allowed");
    eprintln!(
        "blast: {sent} datagrams in {blast_time:?}; allowed {passed}, rate_limited {}, banned {}; \
         during the ban: {CLIENT2_V4} {other:?}, {CLIENT_V4} {blasted:?} (in ban: {in_ban})",
        delta(&after, &before, "rate_limited"),
        delta(&after, &before, "banned"),
    );
    for name in ["rate_limited", "banned"] {
        let drops = reason(&after, name, "drop_packets") - reason(&before, name, "drop_packets");
        assert!(drops > 0, "no {name} drops: {after:#}");
    }
    // The burst and the rate over the blast, plus the other client's probe.
    let bound = 50 + (200.0 * blast_time.as_secs_f64()).ceil() as u64 + 1;
    assert!(
        passed <= bound,
        "{passed} datagrams passed, bucket allows {bound}"
    );
    assert_eq!(
        other,
        UdpResult::Answered,
        "{CLIENT2_V4} suffered from {CLIENT_V4}'s ban"
    );
    if in_ban {
        assert_eq!(
            blasted,
            UdpResult::NoAnswer,
            "{CLIENT_V4} answered while banned"
        );
    }

    std::thread::sleep(
        (blast_start + BAN + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    );
    assert_eq!(
        probe(CLIENT_V4),
        UdpResult::Answered,
        "{CLIENT_V4} still blocked after the ban"
    );
    eprintln!("pps/ban test took {:?}", started.elapsed());
}

const SYN_LIMITS: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [80]

[sources]
allow = ["203.0.113.0/24"]

[limits]
per_source_syn_rate = 100
per_source_syn_burst = 200
global_syn_rate = 2000
"#;
const SOURCE_SYN_RATE: f64 = 100.0;
const SOURCE_SYN_BURST: f64 = 200.0;
/// The global burst defaults to one second's worth.
const GLOBAL_SYN_RATE: f64 = 2000.0;
/// Far above every budget, yet leaves the two CI cores room for the legitimate clients.
const FLOOD_PPS: u64 = 200_000;
const FLOOD_TIME: Duration = Duration::from_secs(4);
/// Frames still in flight and counters read late: added to the flood's duration.
const LAG: f64 = 0.5;

/// What one flood did while a legitimate client connected from `client`.
struct Round {
    sent: Sent,
    connects: Connects,
    /// SYNs the enforcer let through (`allowed`) and dropped as `syn_flood`.
    admitted: u64,
    dropped: u64,
}

fn flood_round(bed: &Testbed, src: IpAddr, src_bits: u32, client: Ipv4Addr) -> Round {
    let template = syn_template(bed, src, WEB).expect("template");
    let randomise = Randomise {
        src_bits,
        sport: true,
        seq: true,
    };
    let dst = SocketAddr::new(Testbed::server_addr_for(client.into()), WEB);
    let before = stats(bed);
    let stop = AtomicBool::new(false);
    let (sent, connects) = std::thread::scope(|scope| {
        let legit = scope.spawn(|| {
            let t = Duration::from_millis(1500);
            connect_loop(
                &bed.client,
                client.into(),
                dst,
                t,
                200,
                &stop,
                FLOOD_TIME * 2,
            )
        });
        let count = FLOOD_PPS * FLOOD_TIME.as_secs();
        let sent = syn_flood(
            bed,
            &template,
            randomise,
            count,
            Some(FLOOD_PPS),
            FLOOD_TIME + Duration::from_secs(1),
        );
        stop.store(true, Ordering::Relaxed);
        (
            sent.expect("flood"),
            legit.join().expect("client thread").expect("connects"),
        )
    });
    let counted = |s: &Value| {
        ["allowed", "syn_flood", "banned"]
            .iter()
            .map(|r| delta(s, &before, r))
            .sum::<u64>()
    };
    let after = stats_when(bed, Duration::from_secs(3), |s| counted(s) >= sent.frames);
    let round = Round {
        sent,
        connects,
        admitted: delta(&after, &before, "allowed"),
        dropped: delta(&after, &before, "syn_flood"),
    };
    eprintln!(
        "flood from {src}/{} random bits: {} SYNs in {:?} ({:.0} pps): allowed {}, syn_flood {}, \
         other {}; legit client {client}: {}/{} connections ({:.1}%)",
        src_bits,
        round.sent.frames,
        round.sent.elapsed,
        round.sent.pps(),
        round.admitted,
        round.dropped,
        counted(&after) - round.admitted - round.dropped,
        round.connects.ok,
        round.connects.tried,
        100.0 * round.connects.rate()
    );
    round
}

/// SYN floods from one source and from spoofed random sources stay within the per-source
/// and global SYN budgets, while a trusted client keeps connecting.
#[test]
fn syn_floods_stay_within_the_syn_budgets() {
    if !root_or_skip() {
        return;
    }
    let started = Instant::now();
    let bed = Testbed::new().expect("testbed");
    let _web = TcpListenerSet::start(&bed.server, &[WEB]).expect("listener");
    attach_policy(&bed, SYN_LIMITS);

    let one = flood_round(&bed, Ipv4Addr::new(100, 64, 0, 1).into(), 0, ADMIN_V4);
    let t = one.sent.elapsed.as_secs_f64() + LAG;
    let per_source = SOURCE_SYN_BURST + SOURCE_SYN_RATE * t;
    eprintln!(
        "one source: {} SYNs admitted, per-source budget {per_source:.0}",
        one.admitted
    );
    assert!(
        one.admitted as f64 <= per_source,
        "per-source SYN budget exceeded"
    );
    assert!(one.dropped > 0);

    let spoofed = flood_round(&bed, SPOOF_V4.into(), 22, ADMIN_V4);
    let t = spoofed.sent.elapsed.as_secs_f64() + LAG;
    let global = GLOBAL_SYN_RATE + GLOBAL_SYN_RATE * t;
    eprintln!(
        "spoofed: {} SYNs admitted, global budget {global:.0}",
        spoofed.admitted
    );
    assert!(
        spoofed.admitted as f64 <= global,
        "global SYN budget exceeded"
    );
    assert!(spoofed.dropped > 0);

    for (what, round) in [("one source", &one), ("spoofed sources", &spoofed)] {
        let c = round.connects;
        assert!(
            c.tried >= 20,
            "the trusted client tried only {} connections during the flood",
            c.tried
        );
        assert!(
            c.rate() >= 0.99,
            "trusted client during the {what} flood: {c:?}"
        );
    }

    // Reported, not asserted: an untrusted client competes with the flood for the budget.
    let untrusted = flood_round(&bed, SPOOF_V4.into(), 22, CLIENT_V4);
    eprintln!(
        "untrusted client during the spoofed flood: {:.1}% of {} connections; test took {:?}",
        100.0 * untrusted.connects.rate(),
        untrusted.connects.tried,
        started.elapsed()
    );
}

#[test]
fn zz_scratch_overhead() {
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, OPEN_WEB);
    let template = syn_template(&bed, SPOOF_V4.into(), WEB).expect("template");
    for n in [1u64, 64, 1000, 10_000, 100_000] {
        let r = Randomise { src_bits: 22, sport: true, seq: true };
        let t = Instant::now();
        let mut calls = 0;
        while t.elapsed() < Duration::from_millis(500) {
            syn_flood(&bed, &template, r, n, None, Duration::from_secs(5)).unwrap();
            calls += 1;
        }
        eprintln!("n={n}: {:?} per call (incl. load)", t.elapsed() / calls);
    }
}
