//! Parsing: the link layer, IPv4, IPv6 and L4 checks of docs/semantics.md, frame by frame.

use mirror_xdp_common::{Reason, ipproto};

use super::*;
use crate::policy::{Action, Proto};

// Link layer

#[test]
fn shorter_than_ethernet_is_malformed() {
    drops(judge(&[0; 13]), Reason::Malformed);
    passes(judge(&eth(&[], 0x0806, &[])), Reason::NonIp);
}

#[test]
fn arp_and_lldp_are_non_ip() {
    passes(judge(&eth(&[], 0x0806, &[0; 28])), Reason::NonIp);
    passes(judge(&eth(&[], 0x88CC, &[0; 30])), Reason::NonIp);
    passes(judge(&eth(&[VLAN], 0x0806, &[0; 28])), Reason::NonIp);
}

#[test]
fn one_or_two_vlan_tags_are_followed() {
    let ip = ipv4(OTHER4, LOCAL4, ipproto::TCP, &[], 0, &tcp(1, 80, SYN));
    for tags in [&[VLAN][..], &[QINQ], &[QINQ, VLAN], &[VLAN, VLAN]] {
        let j = judge(&eth(tags, IPV4, &ip));
        passes(j, Reason::Allowed);
        assert_eq!(j.rule_port, Some((Proto::Tcp, 80)));
    }
}

#[test]
fn third_vlan_tag_is_malformed() {
    let ip = ipv4(OTHER4, LOCAL4, ipproto::TCP, &[], 0, &tcp(1, 80, SYN));
    drops(
        judge(&eth(&[QINQ, VLAN, VLAN], IPV4, &ip)),
        Reason::Malformed,
    );
    // Even when what follows the third tag is not IP.
    drops(
        judge(&eth(&[VLAN, VLAN, VLAN], 0x0806, &[0; 28])),
        Reason::Malformed,
    );
}

#[test]
fn truncated_vlan_tag_is_malformed() {
    // EtherType 0x8100 and only 2 of the 4 tag bytes.
    let mut f = eth(&[], VLAN, &[0, 100]);
    drops(judge(&f), Reason::Malformed);
    // A whole tag with nothing after it: next EtherType is IPv4, header missing.
    f.extend(IPV4.to_be_bytes());
    drops(judge(&f), Reason::Malformed);
    // ... or not IP at all: non_ip, nothing more needs to fit.
    let f = eth(&[VLAN], 0x0806, &[]);
    passes(judge(&f), Reason::NonIp);
}

// IPv4

#[test]
fn ipv4_options_of_any_length() {
    for len in [4, 8, 20, 40] {
        let ip = ipv4(
            OTHER4,
            LOCAL4,
            ipproto::TCP,
            &vec![1; len],
            0,
            &tcp(1, 443, SYN),
        );
        passes(judge(&eth(&[], IPV4, &ip)), Reason::Allowed);
    }
}

#[test]
fn ipv4_header_checks() {
    let good = ipv4(OTHER4, LOCAL4, ipproto::TCP, &[], 0, &tcp(1, 80, SYN));
    passes(judge(&eth(&[], IPV4, &good)), Reason::Allowed);
    let broken = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut ip = good.clone();
        f(&mut ip);
        judge(&eth(&[], IPV4, &ip))
    };
    // Fewer than 20 bytes.
    drops(broken(&|ip| ip.truncate(19)), Reason::Malformed);
    // Version 6 under EtherType IPv4.
    drops(broken(&|ip| ip[0] = 0x65), Reason::Malformed);
    // IHL < 5.
    drops(broken(&|ip| ip[0] = 0x44), Reason::Malformed);
    // IHL beyond the frame (15 * 4 = 60 > 40 bytes).
    drops(broken(&|ip| ip[0] = 0x4F), Reason::Malformed);
    // Total length < IHL * 4.
    drops(
        broken(&|ip| ip[2..4].copy_from_slice(&19u16.to_be_bytes())),
        Reason::Malformed,
    );
    // Total length beyond the frame.
    drops(
        broken(&|ip| ip[2..4].copy_from_slice(&41u16.to_be_bytes())),
        Reason::Malformed,
    );
    // Total length cutting into the TCP header.
    drops(
        broken(&|ip| ip[2..4].copy_from_slice(&39u16.to_be_bytes())),
        Reason::Malformed,
    );
}

#[test]
fn ipv4_link_padding_is_ignored() {
    // A 20 + 8 byte UDP packet padded to the 60-byte Ethernet minimum.
    let mut f = v4(OTHER4, ipproto::UDP, &udp(1, 5140));
    f.resize(60, 0xAA);
    let j = judge(&f);
    passes(j, Reason::Allowed);
    assert_eq!(j.rule_port, Some((Proto::Udp, 5140)));
    // Padding does not make up for a short L4 header.
    let mut ip = ipv4(OTHER4, LOCAL4, ipproto::UDP, &[], 0, &udp(1, 5140));
    ip.truncate(27);
    ip[2..4].copy_from_slice(&27u16.to_be_bytes());
    let mut f = eth(&[], IPV4, &ip);
    f.resize(60, 0);
    drops(judge(&f), Reason::Malformed);
}

#[test]
fn ipv4_non_first_fragment() {
    // Offset 185 (* 8 bytes), a few payload bytes, no L4 header at all.
    let f = eth(
        &[],
        IPV4,
        &ipv4(OTHER4, LOCAL4, ipproto::TCP, &[], 185, &[1, 2, 3]),
    );
    passes(judge(&f), Reason::Fragment);
    drops(
        judge_with(&f, &with(|s| s.fragments = Action::Drop)),
        Reason::Fragment,
    );
    // Fragment handling comes after the source lists.
    let f = eth(&[], IPV4, &ipv4(ADMIN4, LOCAL4, ipproto::UDP, &[], 1, &[]));
    passes(
        judge_with(&f, &with(|s| s.fragments = Action::Drop)),
        Reason::Trusted,
    );
    let f = eth(&[], IPV4, &ipv4(BAD4, LOCAL4, ipproto::UDP, &[], 1, &[]));
    drops(judge(&f), Reason::Denied);
    // An ICMP non-first fragment is a fragment, not ICMP.
    let f = eth(
        &[],
        IPV4,
        &ipv4(OTHER4, LOCAL4, ipproto::ICMP, &[], 0x2000 | 3, &[]),
    );
    drops(
        judge_with(&f, &with(|s| s.fragments = Action::Drop)),
        Reason::Fragment,
    );
}

#[test]
fn ipv4_first_fragment_needs_its_l4_header() {
    // MF set, offset 0: a first fragment is parsed like a whole packet.
    let f = eth(
        &[],
        IPV4,
        &ipv4(OTHER4, LOCAL4, ipproto::TCP, &[], 0x2000, &tcp(1, 80, SYN)),
    );
    passes(judge(&f), Reason::Allowed);
    // The tiny-fragment evasion: only 8 bytes of TCP in the first fragment.
    let f = eth(
        &[],
        IPV4,
        &ipv4(
            OTHER4,
            LOCAL4,
            ipproto::TCP,
            &[],
            0x2000,
            &tcp(1, 80, SYN)[..8],
        ),
    );
    drops(judge(&f), Reason::Malformed);
    // DF alone is not a fragment either.
    let f = eth(
        &[],
        IPV4,
        &ipv4(OTHER4, LOCAL4, ipproto::TCP, &[], 0x4000, &tcp(1, 81, SYN)),
    );
    drops(judge(&f), Reason::PortClosed);
}

#[test]
fn ipv4_protocol_58_is_another_protocol() {
    let f = v4(OTHER4, ipproto::ICMPV6, &icmp(129, 0));
    drops(judge(&f), Reason::Protocol);
    passes(
        judge_with(&f, &with(|s| s.other_protocols = Action::Pass)),
        Reason::Protocol,
    );
    // GRE with no payload: nothing to read, nothing to be short of.
    drops(judge(&v4(OTHER4, 47, &[])), Reason::Protocol);
}

// IPv6

#[test]
fn ipv6_header_checks() {
    let good = ipv6(OTHER6, LOCAL6, ipproto::TCP, &tcp(1, 80, SYN));
    passes(judge(&eth(&[], IPV6, &good)), Reason::Allowed);
    let broken = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut ip = good.clone();
        f(&mut ip);
        judge(&eth(&[], IPV6, &ip))
    };
    drops(broken(&|ip| ip.truncate(39)), Reason::Malformed);
    drops(broken(&|ip| ip[0] = 0x40), Reason::Malformed);
    // Payload length 0: a jumbogram, not supported.
    drops(
        broken(&|ip| ip[4..6].copy_from_slice(&[0, 0])),
        Reason::Malformed,
    );
    drops(
        broken(&|ip| ip[4..6].copy_from_slice(&21u16.to_be_bytes())),
        Reason::Malformed,
    );
    // A payload length that cuts the TCP header short.
    drops(
        broken(&|ip| ip[4..6].copy_from_slice(&19u16.to_be_bytes())),
        Reason::Malformed,
    );
    // Bytes past the payload are link padding.
    let mut f = eth(&[], IPV6, &good);
    f.extend([0; 6]);
    passes(judge(&f), Reason::Allowed);
}

#[test]
fn ipv6_extension_chain_is_followed() {
    let rest = cat(&[
        &ext8(ipproto::ROUTING, 0),
        &ext8(ipproto::FRAGMENT, 2),
        &frag6(ipproto::DSTOPTS, 0, true),
        &ext8(ipproto::TCP, 1),
        &tcp(1, 22, SYN),
    ]);
    let j = judge(&v6(OTHER6, ipproto::HOPOPTS, &rest));
    drops(j, Reason::SourceNotAllowed);
    assert_eq!(j.rule_port, Some((Proto::Tcp, 22)));
}

#[test]
fn ipv6_non_first_fragment_stops_parsing() {
    let rest = cat(&[
        &ext8(ipproto::ROUTING, 0),
        &ext8(ipproto::FRAGMENT, 0),
        &frag6(ipproto::TCP, 1, false),
        &[0xFF; 4],
    ]);
    let f = v6(OTHER6, ipproto::HOPOPTS, &rest);
    passes(judge(&f), Reason::Fragment);
    drops(
        judge_with(&f, &with(|s| s.fragments = Action::Drop)),
        Reason::Fragment,
    );
    // Whatever follows a non-first fragment header is not looked at, even a broken chain.
    let f = v6(OTHER6, ipproto::FRAGMENT, &frag6(ipproto::HOPOPTS, 9, true));
    passes(judge(&f), Reason::Fragment);
    // A first fragment whose TCP header is cut short: the tiny-fragment evasion.
    let f = v6(
        OTHER6,
        ipproto::FRAGMENT,
        &cat(&[&frag6(ipproto::TCP, 0, true), &[0; 12]]),
    );
    drops(judge(&f), Reason::Malformed);
}

#[test]
fn ipv6_eight_extension_headers_but_not_nine() {
    let chain = |n: usize| {
        let mut rest = Vec::new();
        for i in 0..n {
            let next = if i + 1 == n {
                ipproto::UDP
            } else {
                ipproto::DSTOPTS
            };
            rest.extend(ext8(next, 0));
        }
        rest.extend(udp(1, 5140));
        v6(OTHER6, ipproto::DSTOPTS, &rest)
    };
    passes(judge(&chain(8)), Reason::Allowed);
    drops(judge(&chain(9)), Reason::Malformed);
}

#[test]
fn ipv6_ah_is_skipped() {
    // AH length 4: (4 + 2) * 4 = 24 bytes.
    let rest = cat(&[&ah(ipproto::UDP, 4), &udp(1, 5140)]);
    passes(judge(&v6(OTHER6, ipproto::AH, &rest)), Reason::Allowed);
    // AH claiming more than the payload holds.
    let rest = cat(&[&ah(ipproto::UDP, 4)[..8], &udp(1, 5140)]);
    drops(judge(&v6(OTHER6, ipproto::AH, &rest)), Reason::Malformed);
    // IPv4 has no extension chain: AH is another protocol there.
    drops(
        judge(&v4(OTHER4, ipproto::AH, &ah(ipproto::UDP, 4))),
        Reason::Protocol,
    );
}

#[test]
fn ipv6_extension_header_that_does_not_fit() {
    // Only one byte left for a hop-by-hop header.
    drops(
        judge(&v6(OTHER6, ipproto::HOPOPTS, &[ipproto::UDP])),
        Reason::Malformed,
    );
    // Length field says 16 bytes, 8 are there.
    let mut h = ext8(ipproto::UDP, 0);
    h[1] = 1;
    drops(judge(&v6(OTHER6, ipproto::HOPOPTS, &h)), Reason::Malformed);
    // A fragment header needs all 8 bytes.
    drops(
        judge(&v6(
            OTHER6,
            ipproto::FRAGMENT,
            &frag6(ipproto::UDP, 0, false)[..7],
        )),
        Reason::Malformed,
    );
    // The payload length, not the frame, is the end: padding does not count.
    let ip = ipv6(
        OTHER6,
        LOCAL6,
        ipproto::HOPOPTS,
        &ext8(ipproto::UDP, 0)[..4],
    );
    let mut f = eth(&[], IPV6, &ip);
    f.extend([0; 20]);
    drops(judge(&f), Reason::Malformed);
}

#[test]
fn ipv6_protocol_1_is_another_protocol() {
    drops(
        judge(&v6(OTHER6, ipproto::ICMP, &icmp(8, 0))),
        Reason::Protocol,
    );
    // No next header (59): nothing follows, another protocol.
    drops(
        judge(&v6(OTHER6, ipproto::HOPOPTS, &ext8(59, 0))),
        Reason::Protocol,
    );
}

// L4

#[test]
fn tcp_header_checks() {
    let frame = |l4: &[u8]| v4(OTHER4, ipproto::TCP, l4);
    drops(judge(&frame(&tcp(1, 80, SYN)[..19])), Reason::Malformed);
    for doff in 0..5 {
        drops(
            judge(&frame(&tcp_doff(1, 80, SYN, doff))),
            Reason::Malformed,
        );
    }
    // Data offset 6 needs 24 bytes.
    drops(
        judge(&frame(&tcp_doff(1, 80, SYN, 6)[..23])),
        Reason::Malformed,
    );
    passes(judge(&frame(&tcp_doff(1, 80, SYN, 15))), Reason::Allowed);
    // Same rules under IPv6.
    drops(
        judge(&v6(OTHER6, ipproto::TCP, &tcp_doff(1, 80, SYN, 4))),
        Reason::Malformed,
    );
}

#[test]
fn udp_and_icmp_header_checks() {
    drops(
        judge(&v4(OTHER4, ipproto::UDP, &udp(1, 5140)[..7])),
        Reason::Malformed,
    );
    drops(
        judge(&v6(OTHER6, ipproto::UDP, &udp(1, 5140)[..7])),
        Reason::Malformed,
    );
    // The UDP length field is not checked.
    let mut u = udp(1, 5140);
    u[4..6].copy_from_slice(&[0xFF, 0xFF]);
    passes(judge(&v4(OTHER4, ipproto::UDP, &u)), Reason::Allowed);
    drops(
        judge(&v4(OTHER4, ipproto::ICMP, &[3, 4, 0])),
        Reason::Malformed,
    );
    passes(
        judge(&v4(OTHER4, ipproto::ICMP, &[3, 4, 0, 0])),
        Reason::Icmp,
    );
    drops(
        judge(&v6(OTHER6, ipproto::ICMPV6, &[2, 0, 0])),
        Reason::Malformed,
    );
}
