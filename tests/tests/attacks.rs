//! Attacks on the veth testbed: a UDP blast over the per-source packet rate (rate limit,
//! ban, expiry), SYN floods from one and from spoofed random sources against the SYN
//! budgets while legitimate clients connect, and a deny list of a million prefixes.
//! Floods come from the live-frames generator (`mirror_xdp::kernel::trafficgen`); each is bounded
//! in packets and seconds.
#![expect(
    unused_crate_dependencies,
    reason = "an integration test links every dependency of the tests package and uses a few"
)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mirror_xdp::kernel::trafficgen::{Randomise, Sent};
use mirror_xdp_tests::cli::{attach_policy, reason, stats, stats_when, try_attach, write_policy};
use mirror_xdp_tests::flood::{
    Connects, SynFlood, connect_loop, send_frames, snmp, syn_flood, syn_template, template,
    udp_blast, xdp_xmit_errors,
};
use mirror_xdp_tests::frames::{L4, tcp_flag};
use mirror_xdp_tests::probe::UdpResult;
use mirror_xdp_tests::require_root;
use mirror_xdp_tests::servers::{TcpListenerSet, UdpEchoSet};
use mirror_xdp_tests::sweep::{PROBE_TIMEOUT, udp_probe_within};
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
const SECOND: Duration = Duration::from_secs(1);

fn add_client2(bed: &Testbed) {
    let addr = format!("{CLIENT2_V4}/24");
    let args = ["addr", "add", &addr, "dev", CLIENT_IF];
    bed.client.run_ok("ip", &args).expect("second client");
}

fn udp_answers(bed: &Testbed, src: Ipv4Addr) -> UdpResult {
    udp_probe_within(&bed.client, src.into(), ECHO, PROBE_TIMEOUT)
}

/// Growth of `reasons.<name>.<field>` between two stats documents.
fn grew(after: &Value, before: &Value, name: &str, field: &str) -> u64 {
    reason(after, name, field) - reason(before, name, field)
}

fn packets(after: &Value, before: &Value, names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| grew(after, before, n, "packets"))
        .sum()
}

const OPEN: &str = r#"
version = 1

[[ports]]
proto = "tcp"
ports = [80]

[[ports]]
proto = "udp"
ports = [5140]
"#;

/// The generator itself: every frame reaches the enforcer (counted `allowed`) unless the
/// veth ring overflowed (counted by the sending veth: a busy shared machine does that), and
/// the server's stack takes it, so the checksums are still valid after randomisation.
#[test]
fn generator_frames_arrive_with_valid_checksums() {
    require_root();
    let started = Instant::now();
    let bed = Testbed::new().expect("testbed");
    attach_policy(&bed, OPEN);
    let before = stats(&bed);
    let snmp_before = snmp(&bed.server).expect("snmp");
    let lost_before = xdp_xmit_errors(&bed.client, CLIENT_IF).expect("ethtool");
    let syn = L4::tcp(40000, WEB, tcp_flag::SYN);
    let payload = b"mirror-xdp flood".to_vec();
    let udp = L4::Udp {
        src_port: 40000,
        dst_port: ECHO,
        payload,
    };
    let floods: [(IpAddr, L4, u32, u64); 3] = [
        (SPOOF_V4.into(), syn.clone(), 22, 500_000),
        (SPOOF_V6.into(), syn, 16, 100_000),
        (SPOOF_V4.into(), udp, 22, 100_000),
    ];
    let (mut tcp_sent, mut udp_sent) = (0, 0);
    for (src, l4, src_bits, count) in floods {
        let is_tcp = matches!(l4, L4::Tcp(_));
        let frame = template(&bed, src, l4).expect("template");
        let randomise = Randomise {
            src_bits,
            sport: true,
            seq: true,
        };
        let s = send_frames(&bed, &frame, randomise, count, None, 10 * SECOND).expect("flood");
        let what = if is_tcp { "TCP SYN" } else { "UDP" };
        eprintln!(
            "generator, {what} from {src} + {src_bits} random bits: {} frames in {:?}, {:.0} pps",
            s.frames,
            s.elapsed,
            s.pps()
        );
        *(if is_tcp { &mut tcp_sent } else { &mut udp_sent }) += s.frames;
    }
    let sent = tcp_sent + udp_sent;
    let lost = xdp_xmit_errors(&bed.client, CLIENT_IF).expect("ethtool") - lost_before;
    let after = stats_when(&bed, 3 * SECOND, |s| {
        packets(s, &before, &["allowed"]) + lost >= sent
    });
    let snmp_after = snmp(&bed.server).expect("snmp");
    let stack = |k: &str| snmp_after[k] - snmp_before[k];
    let allowed = packets(&after, &before, &["allowed"]);
    let udp_taken = stack("Udp.NoPorts") + stack("Udp.InDatagrams");
    eprintln!(
        "allowed {allowed} of {sent} ({lost} lost in the veth ring); server Tcp.InSegs +{}, \
         UDP taken +{udp_taken}, csum errors TCP +{} UDP +{}, Ip.InHdrErrors +{}",
        stack("Tcp.InSegs"),
        stack("Tcp.InCsumErrors"),
        stack("Udp.InCsumErrors"),
        stack("Ip.InHdrErrors"),
    );
    assert_eq!(allowed + lost, sent, "{after:#}");
    assert!(lost * 4 < sent, "the veth ring dropped {lost} of {sent}");
    for counter in ["Tcp.InCsumErrors", "Udp.InCsumErrors", "Ip.InHdrErrors"] {
        assert_eq!(stack(counter), 0, "{counter}");
    }
    // Everything the enforcer passed, the stack took: valid checksums, no header errors.
    assert!(
        stack("Tcp.InSegs") + udp_taken >= allowed,
        "the stack took TCP {} + UDP {udp_taken} of {allowed}",
        stack("Tcp.InSegs")
    );
    assert!(udp_taken > 0, "UDP: the stack took nothing");

    // The control: the stack does check, so a broken TCP checksum is caught.
    let mut broken = syn_template(&bed, SPOOF_V4.into(), WEB).expect("template");
    broken[14 + 20 + 16] ^= 0xff;
    let randomise = Randomise {
        src_bits: 22,
        sport: true,
        seq: true,
    };
    send_frames(&bed, &broken, randomise, 1000, None, 5 * SECOND).expect("flood");
    let caught = || snmp(&bed.server).expect("snmp")["Tcp.InCsumErrors"];
    let deadline = Instant::now() + 2 * SECOND;
    while caught() < snmp_after["Tcp.InCsumErrors"] + 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let caught = caught() - snmp_after["Tcp.InCsumErrors"];
    assert_eq!(caught, 1000, "broken checksums passed");
    eprintln!("generator test took {:?}", started.elapsed());
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
    require_root();
    let started = Instant::now();
    let bed = Testbed::new().expect("testbed");
    add_client2(&bed);
    let _echo = UdpEchoSet::start(&bed.server, &[ECHO]).expect("udp echo");
    attach_policy(&bed, PPS_LIMIT);
    for src in [CLIENT_V4, CLIENT2_V4] {
        assert_eq!(
            udp_answers(&bed, src),
            UdpResult::Answered,
            "{src} before the blast"
        );
    }

    let before = stats(&bed);
    let blast_start = Instant::now();
    let dst = SocketAddr::new(SERVER_V4.into(), ECHO);
    let sent = udp_blast(&bed.client, CLIENT_V4.into(), dst, 2000, 5 * SECOND).expect("blast");
    let blast_time = blast_start.elapsed();
    // The ban began during the blast, so these probes fall inside it (checked below).
    let other = udp_answers(&bed, CLIENT2_V4);
    let blasted = udp_answers(&bed, CLIENT_V4);
    let in_ban = blast_start.elapsed() < BAN;
    let names = ["allowed", "rate_limited", "banned"];
    let after = stats_when(&bed, 2 * SECOND, |s| {
        packets(s, &before, &names) >= sent + 2
    });
    let passed = packets(&after, &before, &["allowed"]);
    eprintln!(
        "blast: {sent} datagrams in {blast_time:?}; allowed {passed}, rate_limited {}, banned \
         {}; during the ban: {CLIENT2_V4} {other:?}, {CLIENT_V4} {blasted:?} (in ban: {in_ban})",
        packets(&after, &before, &["rate_limited"]),
        packets(&after, &before, &["banned"]),
    );
    for name in ["rate_limited", "banned"] {
        let drops = grew(&after, &before, name, "drop_packets");
        assert!(drops > 0, "no {name} drops: {after:#}");
    }
    // The burst and the rate over the blast, plus the other client's probe.
    let bound = 50 + (200.0 * blast_time.as_secs_f64()).ceil() as u64 + 1;
    assert!(
        passed <= bound,
        "{passed} datagrams passed, the bucket allows {bound}"
    );
    assert_eq!(
        other,
        UdpResult::Answered,
        "{CLIENT2_V4} suffered from the ban"
    );
    if in_ban {
        assert_eq!(
            blasted,
            UdpResult::NoAnswer,
            "{CLIENT_V4} answered while banned"
        );
    }

    std::thread::sleep((blast_start + BAN + SECOND).saturating_duration_since(Instant::now()));
    let back = udp_answers(&bed, CLIENT_V4);
    assert_eq!(
        back,
        UdpResult::Answered,
        "{CLIENT_V4} still blocked after the ban"
    );
    eprintln!("rate limit test took {:?}", started.elapsed());
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
/// A hundred times the global budget, yet leaving the two CI cores room for the clients.
const FLOOD_PPS: u64 = 200_000;
const FLOOD_TIME: Duration = Duration::from_secs(4);
/// Frames still in flight when the generator returns: added to the flood's duration.
const LAG: f64 = 0.5;

/// What one flood did while a legitimate client connected.
struct Round {
    sent: Sent,
    connects: Connects,
    /// SYNs the enforcer let through (`allowed`) and dropped (`syn_flood`).
    admitted: u64,
    dropped: u64,
}

/// A paced SYN flood from `src` (+ `src_bits` random bits) at port 80 while `client`
/// connects to the same port again and again (1.5 s timeout each, at most 200).
fn flood_round(bed: &Testbed, src: IpAddr, src_bits: u32, client: Ipv4Addr) -> Round {
    let dst = SocketAddr::new(Testbed::server_addr_for(client.into()), WEB);
    let count = FLOOD_PPS * FLOOD_TIME.as_secs();
    let (rate_pps, limit) = (Some(FLOOD_PPS), FLOOD_TIME + SECOND);
    let flood = SynFlood {
        src,
        src_bits,
        port: WEB,
        count,
        rate_pps,
        limit,
    };
    let before = stats(bed);
    let lost_before = xdp_xmit_errors(&bed.client, CLIENT_IF).expect("ethtool");
    let stop = AtomicBool::new(false);
    let (sent, connects) = std::thread::scope(|scope| {
        let legit = scope.spawn(|| {
            let timeout = Duration::from_millis(1500);
            connect_loop(
                &bed.client,
                client.into(),
                dst,
                timeout,
                200,
                &stop,
                2 * FLOOD_TIME,
            )
        });
        let sent = syn_flood(bed, flood);
        stop.store(true, Ordering::Relaxed);
        let connects = legit.join().expect("client thread");
        (sent.expect("flood"), connects.expect("connects"))
    });
    // Lost frames are counted when the generator returns; the enforcer's counts may lag.
    let lost = xdp_xmit_errors(&bed.client, CLIENT_IF).expect("ethtool") - lost_before;
    let names = ["allowed", "syn_flood", "banned"];
    let after = stats_when(bed, 3 * SECOND, |s| {
        packets(s, &before, &names) + lost >= sent.frames
    });
    let round = Round {
        sent,
        connects,
        admitted: packets(&after, &before, &["allowed"]),
        dropped: packets(&after, &before, &["syn_flood"]),
    };
    eprintln!(
        "flood from {src} + {src_bits} random bits: {} SYNs in {:?} ({:.0} pps), {} counted \
         ({lost} lost in the veth): allowed {}, syn_flood {}; client {client}: {}/{} \
         connections ({:.1}%)",
        round.sent.frames,
        round.sent.elapsed,
        round.sent.pps(),
        packets(&after, &before, &names),
        round.admitted,
        round.dropped,
        round.connects.ok,
        round.connects.tried,
        100.0 * round.connects.rate()
    );
    let counted = packets(&after, &before, &names);
    assert!(
        counted + lost >= sent.frames,
        "frames unaccounted for: {after:#}"
    );
    round
}

/// SYN floods from one source and from spoofed random sources stay within the per-source
/// and the global SYN budget, while a trusted client keeps connecting.
#[test]
fn syn_floods_stay_within_the_syn_budgets() {
    require_root();
    let started = Instant::now();
    let bed = Testbed::new().expect("testbed");
    let _web = TcpListenerSet::start(&bed.server, &[WEB]).expect("listener");
    attach_policy(&bed, SYN_LIMITS);

    let one = flood_round(&bed, Ipv4Addr::new(100, 64, 0, 1).into(), 0, ADMIN_V4);
    let t = one.sent.elapsed.as_secs_f64() + LAG;
    let budget = SOURCE_SYN_BURST + SOURCE_SYN_RATE * t;
    eprintln!(
        "one source: {} SYNs admitted, per-source budget {budget:.0}",
        one.admitted
    );
    assert!(
        one.admitted as f64 <= budget,
        "per-source SYN budget exceeded"
    );
    assert!(one.dropped > 0);

    let spoofed = flood_round(&bed, SPOOF_V4.into(), 22, ADMIN_V4);
    let t = spoofed.sent.elapsed.as_secs_f64() + LAG;
    let budget = GLOBAL_SYN_RATE + GLOBAL_SYN_RATE * t;
    eprintln!(
        "spoofed: {} SYNs admitted, global budget {budget:.0}",
        spoofed.admitted
    );
    assert!(
        spoofed.admitted as f64 <= budget,
        "global SYN budget exceeded"
    );
    assert!(spoofed.dropped > 0);
    // More than one source could have had: the spoofed sources really vary.
    assert!(
        spoofed.admitted > one.admitted,
        "random sources look like one"
    );

    for (what, round) in [("one source", &one), ("spoofed sources", &spoofed)] {
        let c = round.connects;
        assert!(
            c.tried >= 20,
            "the trusted client tried only {c:?} during the {what} flood"
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

const DENY_LIST: &str = r#"
version = 1

[[ports]]
proto = "udp"
ports = [5140]

[[ports]]
proto = "tcp"
ports = [80]

[sources]
deny = [{ file = "blocklist.txt" }]
"#;
const PREFIXES: usize = 1_000_000;
/// Where the listed prefixes come from: shared, private and benchmarking space, none of
/// them near the testbed's own networks.
const RANGES: [(Ipv4Addr, u8); 4] = [
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
];

/// `count` distinct random prefixes in [`RANGES`] (a fifth /24s, the rest bare addresses),
/// CLIENT_V4 last; also returns the first /24 listed.
fn blocklist(count: usize) -> (String, Ipv4Addr) {
    let mut rng = fastrand::Rng::with_seed(1_000_000);
    let mut seen = HashSet::with_capacity(count);
    let mut text = String::from("# generated by tests/tests/attacks.rs\n");
    let mut first_24 = None;
    while seen.len() < count - 1 {
        let (base, len) = RANGES[rng.usize(..RANGES.len())];
        let host = u32::from(base) | (rng.u32(..) >> len);
        let prefix = if rng.u8(..5) == 0 {
            (host & !0xff, 24)
        } else {
            (host, 32)
        };
        if seen.insert(prefix) {
            let addr = Ipv4Addr::from(prefix.0);
            if prefix.1 == 24 {
                first_24.get_or_insert(addr);
                let _ = writeln!(text, "{addr}/24");
            } else {
                let _ = writeln!(text, "{addr}");
            }
        }
    }
    let _ = writeln!(text, "{CLIENT_V4}");
    (text, first_24.expect("some /24"))
}

/// A million-prefix deny list loads, drops the listed client (`denied`) and nobody else,
/// and holds under a flood from a listed /24.
#[test]
fn million_prefix_deny_list_drops_only_the_listed() {
    require_root();
    let started = Instant::now();
    let bed = Testbed::new().expect("testbed");
    add_client2(&bed);
    let _echo = UdpEchoSet::start(&bed.server, &[ECHO]).expect("udp echo");
    let (list, listed_24) = blocklist(PREFIXES);
    std::fs::write(bed.work_dir().join("blocklist.txt"), &list).expect("blocklist");
    let policy = write_policy(&bed, "policy.toml", DENY_LIST);
    let attach_started = Instant::now();
    let r = try_attach(&bed, &policy, &[]);
    let attach_time = attach_started.elapsed();
    assert_eq!(r.code, Some(0), "attach with {PREFIXES} prefixes: {r:?}");
    eprintln!(
        "attach with {PREFIXES} deny prefixes ({} MB): {attach_time:?}",
        list.len() >> 20
    );

    let before = stats(&bed);
    let listed = udp_answers(&bed, CLIENT_V4);
    assert_eq!(
        listed,
        UdpResult::NoAnswer,
        "the listed {CLIENT_V4} got through"
    );
    let unlisted = udp_answers(&bed, CLIENT2_V4);
    assert_eq!(
        unlisted,
        UdpResult::Answered,
        "the unlisted {CLIENT2_V4} was dropped"
    );
    let after = stats_when(&bed, 2 * SECOND, |s| packets(s, &before, &["denied"]) > 0);
    assert!(
        grew(&after, &before, "denied", "drop_packets") > 0,
        "{after:#}"
    );

    // Lookups in the full list at flood rate: every source of a listed /24.
    let (rate_pps, limit) = (None, 5 * SECOND);
    let flood = SynFlood {
        src: listed_24.into(),
        src_bits: 8,
        port: WEB,
        count: 500_000,
        rate_pps,
        limit,
    };
    let lost_before = xdp_xmit_errors(&bed.client, CLIENT_IF).expect("ethtool");
    let sent = syn_flood(&bed, flood).expect("flood");
    // Frames the veth could not queue never reach the program; the rest must all be denied.
    let lost = xdp_xmit_errors(&bed.client, CLIENT_IF).expect("ethtool") - lost_before;
    let done = stats_when(&bed, 2 * SECOND, |s| {
        packets(s, &after, &["denied"]) + lost >= sent.frames
    });
    let denied = packets(&done, &after, &["denied"]);
    eprintln!(
        "flood from {listed_24}/24: {} SYNs at {:.0} pps ({lost} lost in the veth), denied \
         {denied}; test took {:?}",
        sent.frames,
        sent.pps(),
        started.elapsed()
    );
    assert_eq!(packets(&done, &after, &["allowed"]), 0, "{done:#}");
    assert_eq!(denied + lost, sent.frames, "{done:#}");
}
