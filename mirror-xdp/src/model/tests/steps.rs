//! The verdict steps 3 to 15 and monitor mode, for frames that parse.

use std::net::IpAddr;

use mirror_xdp_common::{FlowKey, Reason, ipproto};

use super::*;
use crate::policy::{Action, Mode, Proto};

// Steps 3 and 4

#[test]
fn allow_before_deny() {
    passes(judge(&tcp4(ADMIN4, 81)), Reason::Trusted);
    passes(
        judge(&v6(ADMIN6, ipproto::TCP, &tcp(1, 81, 0))),
        Reason::Trusted,
    );
    drops(judge(&tcp4(BAD4, 80)), Reason::Denied);
    drops(
        judge(&v6(BAD6, ipproto::ICMPV6, &icmp(2, 0))),
        Reason::Denied,
    );
    // A source in both lists is trusted.
    let mut p = policy();
    p.deny.push("203.0.0.0/16".parse().unwrap());
    passes(judge_with(&tcp4(ADMIN4, 80), &p), Reason::Trusted);
    // An IPv4-mapped IPv6 address is an IPv6 source: the IPv4 lists do not see it.
    let mapped = BAD4.to_ipv6_mapped();
    passes(
        judge(&v6(mapped, ipproto::TCP, &tcp(1, 80, SYN))),
        Reason::Allowed,
    );
}

// Steps 7 and 8

#[test]
fn icmpv4_essentials_always_pass() {
    let p = with(|s| s.icmp = Action::Drop);
    for (ty, code) in [(0, 0), (3, 0), (3, 4), (11, 0), (11, 1)] {
        passes(
            judge_with(&v4(OTHER4, ipproto::ICMP, &icmp(ty, code)), &p),
            Reason::Icmp,
        );
    }
    for ty in [8, 5, 12, 13, 4, 255] {
        let f = v4(OTHER4, ipproto::ICMP, &icmp(ty, 0));
        drops(judge_with(&f, &p), Reason::Icmp);
        passes(judge(&f), Reason::Icmp);
    }
}

#[test]
fn icmpv6_essentials_always_pass() {
    let p = with(|s| s.icmp = Action::Drop);
    for ty in [1, 2, 3, 129, 133, 134, 135, 136, 137] {
        passes(
            judge_with(&v6(OTHER6, ipproto::ICMPV6, &icmp(ty, 0)), &p),
            Reason::Icmp,
        );
    }
    for ty in [128, 4, 130, 132, 138, 143, 0] {
        let f = v6(OTHER6, ipproto::ICMPV6, &icmp(ty, 0));
        drops(judge_with(&f, &p), Reason::Icmp);
        passes(judge(&f), Reason::Icmp);
    }
    // Behind an extension header too.
    let rest = cat(&[&ext8(ipproto::ICMPV6, 0), &icmp(128, 0)]);
    drops(
        judge_with(&v6(OTHER6, ipproto::HOPOPTS, &rest), &p),
        Reason::Icmp,
    );
}

// Step 10

fn state_for(frame: &[u8]) -> ModelState {
    let Ok(Parsed::Ip(packet)) = parse(frame) else {
        panic!("not an IP frame")
    };
    ModelState {
        flows: [flow_key(&packet).unwrap()].into(),
        ..ModelState::default()
    }
}

#[test]
fn flow_key_layout() {
    let f = v4(OTHER4, ipproto::UDP, &udp(53, 40000));
    let Ok(Parsed::Ip(packet)) = parse(&f) else {
        panic!()
    };
    let mut local = [0; 16];
    local[..4].copy_from_slice(&LOCAL4.octets());
    let mut remote = [0; 16];
    remote[..4].copy_from_slice(&OTHER4.octets());
    let want = FlowKey {
        local_addr: local,
        remote_addr: remote,
        local_port: 40000u16.to_be_bytes(),
        remote_port: 53u16.to_be_bytes(),
        proto: ipproto::UDP,
        family: 4,
        _pad: [0; 2],
    };
    assert_eq!(flow_key(&packet), Some(want));
    assert_eq!(packet.src, IpAddr::V4(OTHER4));
    let f = v6(OTHER6, ipproto::TCP, &tcp(443, 50000, SYN | tcp_flag::ACK));
    let Ok(Parsed::Ip(packet)) = parse(&f) else {
        panic!()
    };
    let key = flow_key(&packet).unwrap();
    assert_eq!(
        (key.local_addr, key.remote_addr),
        (LOCAL6.octets(), OTHER6.octets())
    );
    assert_eq!((key.proto, key.family), (ipproto::TCP, 6));
    assert_eq!(
        flow_key(&IpPacket {
            l4: L4::Fragment,
            ..packet
        }),
        None
    );
}

#[test]
fn return_traffic() {
    let reply = v4(OTHER4, ipproto::TCP, &tcp(443, 40000, SYN | tcp_flag::ACK));
    let mut state = state_for(&reply);
    let j = classify(&reply, &policy(), &mut state);
    passes(j, Reason::Return);
    assert_eq!(j.rule_port, None);
    // Off: the reply meets the port rules.
    let off = with(|s| s.return_traffic = false);
    drops(classify(&reply, &off, &mut state), Reason::PortClosed);
    // Another remote port, or UDP instead of TCP, is another flow.
    drops(
        classify(&tcp4(OTHER4, 40000), &policy(), &mut state),
        Reason::PortClosed,
    );
    let udp_reply = v4(OTHER4, ipproto::UDP, &udp(443, 40000));
    drops(
        classify(&udp_reply, &policy(), &mut state),
        Reason::PortClosed,
    );
    // Return comes before the `from` check of step 11 ...
    let to_ssh = v4(OTHER4, ipproto::TCP, &tcp(5000, 22, tcp_flag::ACK));
    passes(
        classify(&to_ssh, &policy(), &mut state_for(&to_ssh)),
        Reason::Return,
    );
    // ... and after deny.
    let denied = v6(BAD6, ipproto::UDP, &udp(53, 40000));
    drops(
        classify(&denied, &policy(), &mut state_for(&denied)),
        Reason::Denied,
    );
}

// Steps 11, 13 and 14

#[test]
fn from_restricted_ports() {
    let j = judge(&tcp4(OTHER4, 22));
    drops(j, Reason::SourceNotAllowed);
    assert_eq!(j.rule_port, Some((Proto::Tcp, 22)));
    let j = judge(&tcp4(PEER4, 9000));
    passes(j, Reason::Allowed);
    assert_eq!(j.rule_port, Some((Proto::Tcp, 9000)));
    // The peer is not in the SSH rule's list; IPv6 sources are not in the IPv4-only list.
    drops(judge(&tcp4(PEER4, 22)), Reason::SourceNotAllowed);
    drops(
        judge(&v6(OTHER6, ipproto::TCP, &tcp(1, 9000, SYN))),
        Reason::SourceNotAllowed,
    );
    // A rule is per protocol: UDP 22 is listed by nothing.
    drops(
        judge(&v4(OTHER4, ipproto::UDP, &udp(1, 22))),
        Reason::PortClosed,
    );
}

#[test]
fn ranges_and_closed_ports() {
    for (port, open) in [
        (30000, false),
        (30001, true),
        (30010, true),
        (30011, false),
        (0, false),
        (65535, false),
    ] {
        let j = judge(&tcp4(OTHER4, port));
        if open {
            passes(j, Reason::Allowed);
            assert_eq!(j.rule_port, Some((Proto::Tcp, port)));
        } else {
            drops(j, Reason::PortClosed);
            assert_eq!(j.rule_port, None);
        }
    }
    let open = with(|s| s.default = Action::Pass);
    passes(judge_with(&tcp4(OTHER4, 81), &open), Reason::Default);
    passes(
        judge_with(&v4(OTHER4, ipproto::UDP, &udp(1, 5141)), &open),
        Reason::Default,
    );
}

// Monitor mode

#[test]
fn monitor_mode_passes_everything() {
    let p = with(|s| s.mode = Mode::Monitor);
    let j = judge_with(&tcp4(OTHER4, 81), &p);
    assert_eq!(
        (j.reason, j.dropped, j.passes),
        (Reason::PortClosed, true, true)
    );
    let j = judge_with(&tcp4(OTHER4, 22), &p);
    assert_eq!(
        (j.reason, j.dropped, j.passes),
        (Reason::SourceNotAllowed, true, true)
    );
    assert_eq!(j.rule_port, Some((Proto::Tcp, 22)));
    let j = judge_with(&eth(&[], IPV4, &[0x45]), &p);
    assert_eq!(
        (j.reason, j.dropped, j.passes),
        (Reason::Malformed, true, true)
    );
    passes(judge_with(&tcp4(OTHER4, 80), &p), Reason::Allowed);
    passes(judge_with(&eth(&[], 0x0806, &[]), &p), Reason::NonIp);
}

// Step 15

#[test]
fn listed_protocols_pass_from_their_sources_only() {
    use crate::policy::protocols::ProtocolRule;
    let mut p = policy();
    p.protocols = vec![
        ProtocolRule {
            protocols: vec![112],
            from: Some(nets(&["198.51.100.0/24", "2001:db8:1::/48"])),
            to: None,
            line: 0,
        },
        ProtocolRule {
            protocols: vec![47, 50],
            from: None,
            to: None,
            line: 0,
        },
    ];
    let vrrp = [0x21, 1, 100, 0, 0, 0, 0, 0];
    let j = judge_with(&v4(PEER4, 112, &vrrp), &p);
    passes(j, Reason::Allowed);
    assert_eq!((j.rule_protocol, j.rule_port), (Some(112), None));
    passes(judge_with(&v6(OTHER6, 112, &vrrp), &p), Reason::Allowed);
    let j = judge_with(&v4(OTHER4, 112, &vrrp), &p);
    drops(j, Reason::SourceNotAllowed);
    assert_eq!(j.rule_protocol, Some(112));
    passes(judge_with(&v4(OTHER4, 47, &[]), &p), Reason::Allowed);
    passes(judge_with(&v6(OTHER6, 50, &[0; 8]), &p), Reason::Allowed);
    // Unlisted protocols stay under `other_protocols`; the earlier steps still come first.
    let j = judge_with(&v4(OTHER4, 51, &[]), &p);
    drops(j, Reason::Protocol);
    assert_eq!(j.rule_protocol, None);
    drops(judge_with(&v4(BAD4, 47, &[]), &p), Reason::Denied);
    p.settings.other_protocols = Action::Pass;
    drops(
        judge_with(&v4(OTHER4, 112, &vrrp), &p),
        Reason::SourceNotAllowed,
    );
}

#[test]
fn rules_apply_to_their_destinations_only() {
    use crate::policy::protocols::ProtocolRule;
    let mut p = policy();
    // 80 and 443 open to all, but at LOCAL4 and LOCAL6 only; VRRP at LOCAL4 only.
    p.rules[0].to = Some(nets(&["10.0.0.1/32", "2001:db8:ffff::1/128"]));
    p.protocols = vec![ProtocolRule {
        protocols: vec![112],
        from: None,
        to: Some(nets(&["10.0.0.1/32"])),
        line: 0,
    }];
    passes(judge_with(&tcp4(OTHER4, 80), &p), Reason::Allowed);
    passes(
        judge_with(&v6(OTHER6, ipproto::TCP, &tcp(1, 443, SYN)), &p),
        Reason::Allowed,
    );
    passes(judge_with(&v4(OTHER4, 112, &[0; 8]), &p), Reason::Allowed);
    let elsewhere = |l4: u8, payload: &[u8]| {
        eth(
            &[],
            IPV4,
            &ipv4(OTHER4, Ipv4Addr::new(10, 0, 0, 2), l4, &[], 0, payload),
        )
    };
    let j = judge_with(&elsewhere(ipproto::TCP, &tcp(1, 80, SYN)), &p);
    drops(j, Reason::PortClosed);
    assert_eq!(j.rule_port, None);
    drops(judge_with(&elsewhere(112, &[0; 8]), &p), Reason::Protocol);
    // The SSH rule has no `to`: every address.
    drops(
        judge_with(&elsewhere(ipproto::TCP, &tcp(1, 22, SYN)), &p),
        Reason::SourceNotAllowed,
    );
}
