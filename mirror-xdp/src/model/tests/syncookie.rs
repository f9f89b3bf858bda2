//! Step 12 with `syn_cookies`: cookies over the global budget, the keepalive SYN per
//! (family, port), the SYNs that still drop, monitor mode, and the SYN-ACK's bytes.

use super::*;
use crate::compile::config;
use crate::policy::Limits;
use mirror_xdp_common::{
    cookie_option,
    tcp_flag::{CWR, ECE},
};

const SEC: u64 = 1_000_000_000;
const KEEPALIVE: u64 = mirror_xdp_common::limits::SYN_KEEPALIVE_NS;

/// The example policy with a global budget of 2 SYNs a second and cookies on, at t = 100 s
/// (compiled for one CPU).
fn cookies(mode: Mode) -> (Policy, ModelState) {
    let mut p = policy();
    p.settings.mode = mode;
    p.limits = Limits {
        global_syn_rate: 2,
        syn_cookies: true,
        ..Limits::default()
    };
    let state = ModelState {
        now_ns: 100 * SEC,
        config: config(&p, 1).unwrap(),
        ..ModelState::default()
    };
    (p, state)
}

#[track_caller]
fn answers(j: Judgement) {
    assert_eq!(
        (j.reason, j.dropped, j.passes, j.tx),
        (Reason::SynCookie, false, false, true),
        "{j:?}"
    );
}

fn syn6(src: Ipv6Addr, dport: u16) -> Vec<u8> {
    v6(src, ipproto::TCP, &tcp(40000, dport, SYN))
}

#[test]
fn over_the_budget_a_syn_gets_a_cookie_but_one_a_port_goes_to_the_kernel() {
    let (p, mut s) = cookies(Mode::Enforce);
    // The budget's burst passes and stamps port 80 as fed.
    passes(classify(&tcp4(OTHER4, 80), &p, &mut s), Reason::Allowed);
    passes(classify(&tcp4(OTHER4, 80), &p, &mut s), Reason::Allowed);
    let j = classify(&tcp4(OTHER4, 80), &p, &mut s);
    answers(j);
    assert_eq!(j.rule_port, Some((Proto::Tcp, 80)));
    // Port 443 has not had a SYN yet: its first one over the budget goes to the kernel.
    passes(classify(&tcp4(OTHER4, 443), &p, &mut s), Reason::Allowed);
    answers(classify(&tcp4(OTHER4, 443), &p, &mut s));
    // So does IPv6's first to port 80: its listener is another socket.
    passes(classify(&syn6(OTHER6, 80), &p, &mut s), Reason::Allowed);
    answers(classify(&syn6(OTHER6, 80), &p, &mut s));
    // Only SYNs: the handshake's ACK passes as ever.
    let ack = v4(OTHER4, ipproto::TCP, &tcp(40000, 80, tcp_flag::ACK));
    passes(classify(&ack, &p, &mut s), Reason::Allowed);
}

#[test]
fn the_keepalive_comes_round_again_after_its_interval() {
    let (p, mut s) = cookies(Mode::Enforce);
    s.syn_keepalive.insert((false, 80), s.now_ns);
    s.global_syn_tat_ns = u64::MAX / 2; // the budget is spent for good
    answers(classify(&tcp4(OTHER4, 80), &p, &mut s));
    s.now_ns += KEEPALIVE - 1;
    answers(classify(&tcp4(OTHER4, 80), &p, &mut s));
    s.now_ns += 1;
    passes(classify(&tcp4(OTHER4, 80), &p, &mut s), Reason::Allowed);
    answers(classify(&tcp4(OTHER4, 80), &p, &mut s));
    assert_eq!(s.syn_keepalive[&(false, 80)], s.now_ns);
}

#[test]
fn syns_within_the_budget_stamp_the_keepalive() {
    let (p, mut s) = cookies(Mode::Enforce);
    passes(classify(&tcp4(OTHER4, 873), &p, &mut s), Reason::Allowed);
    assert_eq!(s.syn_keepalive[&(false, 873)], 100 * SEC);
    // Without cookies nothing is stamped.
    let mut plain = policy();
    plain.limits.global_syn_rate = 2;
    let mut s = ModelState {
        now_ns: 100 * SEC,
        config: config(&plain, 1).unwrap(),
        ..ModelState::default()
    };
    passes(
        classify(&tcp4(OTHER4, 873), &plain, &mut s),
        Reason::Allowed,
    );
    assert!(s.syn_keepalive.is_empty());
}

#[test]
fn syns_that_cannot_get_a_cookie_are_dropped() {
    let (p, mut s) = cookies(Mode::Enforce);
    for port in [80, 443] {
        s.syn_keepalive.insert((false, port), s.now_ns);
        s.syn_keepalive.insert((true, port), s.now_ns);
    }
    s.global_syn_tat_ns = u64::MAX / 2;
    // IPv4 options, IPv6 extension headers: no cookie, the usual drop.
    let options = eth(
        &[],
        IPV4,
        &ipv4(
            OTHER4,
            LOCAL4,
            ipproto::TCP,
            &[1, 1, 1, 1],
            0,
            &tcp(1, 80, SYN),
        ),
    );
    drops(classify(&options, &p, &mut s), Reason::SynFlood);
    let ext = v6(
        OTHER6,
        ipproto::DSTOPTS,
        &cat(&[&ext8(ipproto::TCP, 0), &tcp(1, 443, SYN)]),
    );
    drops(classify(&ext, &p, &mut s), Reason::SynFlood);
    // Behind VLAN tags a SYN still gets one.
    let tagged = eth(
        &[QINQ, VLAN],
        IPV4,
        &ipv4(OTHER4, LOCAL4, ipproto::TCP, &[], 0, &tcp(1, 80, SYN)),
    );
    answers(classify(&tagged, &p, &mut s));
}

#[test]
fn a_source_over_its_own_syn_rate_is_dropped_and_banned_not_answered() {
    let (mut p, _) = cookies(Mode::Enforce);
    p.limits.per_source_syn_rate = 1;
    p.limits.per_source_syn_burst = 1;
    p.limits.ban_seconds = 10;
    let mut s = ModelState {
        now_ns: 100 * SEC,
        config: config(&p, 1).unwrap(),
        ..ModelState::default()
    };
    passes(classify(&tcp4(PEER4, 80), &p, &mut s), Reason::Allowed);
    drops(classify(&tcp4(PEER4, 80), &p, &mut s), Reason::SynFlood);
    drops(classify(&tcp4(PEER4, 80), &p, &mut s), Reason::Banned);
}

#[test]
fn monitor_mode_passes_the_syn_and_counts_it_as_a_cookie() {
    let (p, mut s) = cookies(Mode::Monitor);
    s.syn_keepalive.insert((false, 80), s.now_ns);
    s.global_syn_tat_ns = u64::MAX / 2;
    let j = classify(&tcp4(OTHER4, 80), &p, &mut s);
    assert_eq!(
        (j.reason, j.dropped, j.passes, j.tx),
        (Reason::SynCookie, false, true, false)
    );
}

#[test]
fn cookie_mss_is_the_largest_table_value_not_above_the_clients() {
    let with_mss = |mss: u16| {
        let mut t = tcp_doff(1, 80, SYN, 6);
        t[20..24].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
        t
    };
    assert_eq!(cookie_mss(false, &with_mss(1460)), 1460);
    assert_eq!(cookie_mss(false, &with_mss(1459)), 1440);
    assert_eq!(cookie_mss(false, &with_mss(1300)), 1300);
    assert_eq!(cookie_mss(false, &with_mss(100)), 536);
    assert_eq!(cookie_mss(true, &with_mss(9000)), 8940);
    assert_eq!(cookie_mss(true, &with_mss(1500)), 1440);
    assert_eq!(cookie_mss(true, &with_mss(1280)), 1220);
    // No option (or MSS 0): 536 assumed, so IPv6 gets its smallest value.
    assert_eq!(cookie_mss(false, &tcp(1, 80, SYN)), 536);
    assert_eq!(cookie_mss(false, &with_mss(0)), 536);
    assert_eq!(cookie_mss(true, &tcp(1, 80, SYN)), 1220);
    // NOPs are skipped; end-of-list and a broken length end the walk.
    let mut t = tcp_doff(1, 80, SYN, 7);
    t[20..28].copy_from_slice(&[1, 1, 1, 1, 2, 4, 0x05, 0x14]);
    assert_eq!(cookie_mss(false, &t), 1300);
    t[20] = 0;
    assert_eq!(cookie_mss(false, &t), 536);
    t[20..22].copy_from_slice(&[8, 1]);
    assert_eq!(cookie_mss(false, &t), 536);
}

#[test]
fn window_offers_ten_segments_within_sixteen_bits() {
    assert_eq!(window(536), 5360);
    assert_eq!(window(1460), 14600);
    assert_eq!(window(8940), 17880);
    assert_eq!(window(1440), 14400);
}

/// Sums 16-bit words; a header with a correct checksum sums to 0xFFFF.
fn ones_sum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

#[test]
fn the_syn_ack_answers_the_syn() {
    let mut syn_tcp = tcp_doff(40000, 80, SYN, 10);
    syn_tcp[4..8].copy_from_slice(&0xFFFF_FFFFu32.to_be_bytes());
    syn_tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xB4]);
    let frame = eth(
        &[VLAN],
        IPV4,
        &ipv4(OTHER4, LOCAL4, ipproto::TCP, &[], 0, &syn_tcp),
    );
    let reply = syn_ack(&frame, 0x1234_5678, &Config::default(), 0).unwrap();
    // 14 + 4 (tag) + 20 + 24 bytes; MACs swapped, tag kept.
    assert_eq!(reply.len(), 62);
    assert_eq!(reply[..6], frame[6..12]);
    assert_eq!(reply[6..12], frame[..6]);
    assert_eq!(reply[12..18], frame[12..18]);
    let (ip, th) = (&reply[18..38], &reply[38..]);
    assert_eq!(ip[12..16], LOCAL4.octets());
    assert_eq!(ip[16..20], OTHER4.octets());
    assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 44);
    assert_eq!(ones_sum(ip), 0xFFFF);
    assert_eq!(th[..4], [0, 80, 0x9C, 0x40]);
    assert_eq!(th[4..8], 0x1234_5678u32.to_be_bytes());
    assert_eq!(th[8..12], [0, 0, 0, 0]); // seq + 1 wraps
    assert_eq!((th[12], th[13]), (6 << 4, 0x12));
    assert_eq!(u16::from_be_bytes([th[14], th[15]]), 14600);
    assert_eq!(th[20..24], [2, 4, 0x05, 0xB4]);
    let pseudo = cat(&[&ip[12..20], &[0, 6, 0, 24]]);
    assert_eq!(ones_sum(&cat(&[&pseudo, th])), 0xFFFF);

    // A bare SYN gets a bare SYN-ACK; IPv6 keeps its next header and sets hop limit 64.
    let frame = syn6(OTHER6, 443);
    let reply = syn_ack(&frame, 7, &Config::default(), 0).unwrap();
    assert_eq!(reply.len(), 14 + 40 + 20);
    let (ip, th) = (&reply[14..54], &reply[54..]);
    assert_eq!(ip[..8], [0x60, 0, 0, 0, 0, 20, 6, 64]);
    assert_eq!(ip[8..24], LOCAL6.octets());
    assert_eq!(th[12], 5 << 4);
    assert_eq!(u16::from_be_bytes([th[14], th[15]]), window(1220));
    let pseudo = cat(&[&ip[8..40], &[0, 6, 0, 20]]);
    assert_eq!(ones_sum(&cat(&[&pseudo, th])), 0xFFFF);

    // Not a SYN the program answers: no reply.
    let options = eth(
        &[],
        IPV4,
        &ipv4(
            OTHER4,
            LOCAL4,
            ipproto::TCP,
            &[1, 1, 1, 1],
            0,
            &tcp(1, 80, SYN),
        ),
    );
    assert_eq!(syn_ack(&options, 1, &Config::default(), 0), None);
}

/// Every cookie option the host may allow, and a window scale of 7.
fn all_options() -> Config {
    Config {
        cookie_options: cookie_option::TIMESTAMPS
            | cookie_option::WINDOW_SCALE
            | cookie_option::SACK
            | cookie_option::ECN,
        cookie_wscale: 7,
        ..Config::default()
    }
}

/// A Linux client's SYN: MSS 1460, SACK-permitted, timestamp 0xAABBCCDD, NOP, window
/// scale `ws`; `flags` on top of SYN (ECE and CWR ask for ECN).
fn linux_syn(ws: u8, flags: u8, tos: u8) -> Vec<u8> {
    let mut syn_tcp = tcp_doff(40000, 80, SYN | flags, 10);
    syn_tcp[20..40].copy_from_slice(&[
        2, 4, 0x05, 0xB4, 4, 2, 8, 10, 0xAA, 0xBB, 0xCC, 0xDD, 0, 0, 0, 0, 1, 3, 3, ws,
    ]);
    let mut ip = ipv4(OTHER4, LOCAL4, ipproto::TCP, &[], 0, &syn_tcp);
    ip[1] = tos;
    eth(&[], IPV4, &ip)
}

/// The SYN-ACK's TCP header (a frame without VLAN tags, IPv4 without options).
fn reply_tcp(reply: &[u8]) -> &[u8] {
    &reply[34..]
}

#[test]
fn a_syn_with_timestamps_gets_the_kernels_timestamp_cookie() {
    // 1,000,042 ms: the clock's low 6 bits are 42 (1,000,042 = 15,625 * 64 + 42).
    let now = 1_000_042 * 1_000_000 + 999_999;
    let reply = syn_ack(&linux_syn(9, ECE | CWR, 0), 1, &all_options(), now).unwrap();
    let th = reply_tcp(&reply);
    assert_eq!(th.len(), 40);
    assert_eq!((th[12], th[13]), (10 << 4, 0x52), "SYN, ACK and ECE");
    assert_eq!(th[20..28], [2, 4, 0x05, 0xB4, 4, 2, 8, 10]);
    // Scale 9, SACK (16) and ECN (32): 57 is above 42, so one step back.
    let low = 9 | 16 | 32;
    assert_eq!(th[28..32], ((15_625 - 1) * 64 + low as u32).to_be_bytes());
    assert_eq!(
        th[32..36],
        [0xAA, 0xBB, 0xCC, 0xDD],
        "the echo is the client's"
    );
    assert_eq!(
        th[36..40],
        [1, 3, 3, 7],
        "the host's scale, not the client's"
    );
    let ip = &reply[14..34];
    let pseudo = cat(&[&ip[12..20], &[0, 6, 0, 40]]);
    assert_eq!(ones_sum(&cat(&[&pseudo, th])), 0xFFFF);
}

#[test]
fn the_timestamp_carries_only_what_the_host_allows() {
    let now = 64 * 1_000_000 * 1000 + 63 * 1_000_000; // low bits 63: never a step back
    let ts = |th: &[u8]| u32::from_be_bytes([th[28], th[29], th[30], th[31]]);
    let without = |option: u8| Config {
        cookie_options: all_options().cookie_options & !option,
        ..all_options()
    };
    // No SACK: two NOPs before the timestamp, bit 4 clear.
    let reply = syn_ack(&linux_syn(2, 0, 0), 1, &without(cookie_option::SACK), now).unwrap();
    let th = reply_tcp(&reply);
    assert_eq!(th[24..28], [1, 1, 8, 10]);
    assert_eq!(ts(th) & 63, 2);
    // No window scaling: no option, 0xF in the timestamp, a 36-byte header.
    let scale = without(cookie_option::WINDOW_SCALE);
    let reply = syn_ack(&linux_syn(2, 0, 0), 1, &scale, now).unwrap();
    let th = reply_tcp(&reply);
    assert_eq!(th.len(), 36);
    assert_eq!(ts(th) & 63, 0xF | 16);
    // ECN only for a SYN that asks with ECE and CWR, is not ECN-marked, on a host with ECN.
    for (flags, tos, config, ecn) in [
        (ECE | CWR, 0, all_options(), true),
        (ECE, 0, all_options(), false),
        (ECE | CWR, 2, all_options(), false),
        (ECE | CWR, 0, without(cookie_option::ECN), false),
    ] {
        let reply = syn_ack(&linux_syn(2, flags, tos), 1, &config, now).unwrap();
        let th = reply_tcp(&reply);
        assert_eq!(th[13] & ECE != 0, ecn, "flags {flags:#x} tos {tos}");
        assert_eq!(ts(th) & 32 != 0, ecn, "flags {flags:#x} tos {tos}");
    }
    // Scales over 14 are taken as 14, as the kernel does.
    let reply = syn_ack(&linux_syn(15, 0, 0), 1, &all_options(), now).unwrap();
    assert_eq!(ts(reply_tcp(&reply)) & 0xF, 14);
    // No timestamps on the host: the MSS alone, whatever the SYN has.
    let reply = syn_ack(
        &linux_syn(2, ECE | CWR, 0),
        1,
        &without(cookie_option::TIMESTAMPS),
        now,
    );
    let th = reply.as_deref().map(reply_tcp).unwrap();
    assert_eq!((th.len(), th[13]), (24, 0x12));
}

#[test]
fn a_syn_too_short_for_an_option_goes_without_it() {
    let now = 1_000 * 1_000_000;
    let build = |options: &[u8]| {
        let words = 5 + options.len() / 4;
        let mut syn_tcp = tcp_doff(40000, 80, SYN, words as u8);
        syn_tcp[20..].copy_from_slice(options);
        eth(
            &[],
            IPV4,
            &ipv4(OTHER4, LOCAL4, ipproto::TCP, &[], 0, &syn_tcp),
        )
    };
    // Timestamp and window scale in 16 bytes (no MSS): room for the timestamp only.
    let syn = build(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 5, 0, 0]);
    let reply = syn_ack(&syn, 1, &all_options(), now).unwrap();
    let th = reply_tcp(&reply);
    assert_eq!(th.len(), 36);
    assert_eq!(
        u32::from_be_bytes([th[28], th[29], th[30], th[31]]) & 0xF,
        0xF
    );
    // A timestamp in 12 bytes: no room for it in the reply, the MSS alone.
    let syn = build(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        reply_tcp(&syn_ack(&syn, 1, &all_options(), now).unwrap()).len(),
        24
    );
    // A timestamp after an end-of-list is not read.
    let syn = build(&[0, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        reply_tcp(&syn_ack(&syn, 1, &all_options(), now).unwrap()).len(),
        24
    );
}

#[test]
fn the_cookie_timestamp_is_never_ahead_of_the_clock() {
    for now_ms in [0u64, 5, 63, 64, 100, 1_000_042, u64::from(u32::MAX) + 7] {
        for low in [0, 0xF, 9 | 16, 0x3F] {
            let ts = cookie_timestamp(now_ms * 1_000_000, low);
            assert_eq!(ts & 63, low, "{now_ms} ms, {low}");
            // Within one step behind the clock (mod 2^32, as TCP timestamps wrap).
            let behind = (now_ms as u32).wrapping_sub(ts);
            assert!(behind < 64, "{now_ms} ms, {low}: {ts}");
        }
    }
}
