//! The egress model: which packets open a connection, which of those the rules admit, and
//! the flow an admitted one records.

use super::*;

const UPSTREAM4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);

/// The example policy (udp/5140 served) with `[egress] default = "drop"`, rsync out to
/// one upstream, DNS out anywhere.
fn egress_policy() -> Policy {
    let text = "version = 1\n[[ports]]\nproto = \"udp\"\nports = [5140]\n\
                [egress]\ndefault = \"drop\"\n\
                [[egress.ports]]\nproto = \"tcp\"\nports = [873]\nto = [\"192.0.2.80\"]\n\
                [[egress.ports]]\nproto = \"udp\"\nports = [53]\n";
    Policy::parse(text, std::path::Path::new("egress.toml")).unwrap()
}

fn out4(dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    eth(&[], IPV4, &ipv4(LOCAL4, dst, proto, &[], 0, l4))
}

#[test]
fn a_listed_upstream_is_reached_and_its_flow_recorded() {
    let policy = egress_policy();
    let syn = out4(UPSTREAM4, ipproto::TCP, &tcp(40000, 873, SYN));
    let judged = classify_egress(&syn, &policy);
    assert!(judged.passes && !judged.denied);
    // The reply (upstream:873 -> local:40000) finds the flow.
    let reply = eth(
        &[],
        IPV4,
        &ipv4(
            UPSTREAM4,
            LOCAL4,
            ipproto::TCP,
            &[],
            0,
            &tcp(873, 40000, SYN | tcp_flag::ACK),
        ),
    );
    let Ok(Parsed::Ip(packet)) = parse(&reply) else {
        panic!("the reply parses")
    };
    assert_eq!(judged.records, flow_key(&packet));
    assert!(judged.records.is_some());
}

#[test]
fn other_destinations_and_ports_are_denied_without_a_flow() {
    let policy = egress_policy();
    for frame in [
        out4(OTHER4, ipproto::TCP, &tcp(40000, 873, SYN)),
        out4(UPSTREAM4, ipproto::TCP, &tcp(40000, 22, SYN)),
        out4(OTHER4, ipproto::UDP, &udp(40000, 123)),
    ] {
        let judged = classify_egress(&frame, &policy);
        assert_eq!(
            (judged.passes, judged.denied, judged.records),
            (false, true, None)
        );
    }
    // DNS goes anywhere.
    let dns = classify_egress(&out4(OTHER4, ipproto::UDP, &udp(40000, 53)), &policy);
    assert!(dns.passes && dns.records.is_some());
}

#[test]
fn what_opens_no_connection_is_sent_unjudged() {
    let policy = egress_policy();
    for frame in [
        // A reply of the syslog service (from the listed udp/5140), a SYN-ACK, an ACK.
        out4(OTHER4, ipproto::UDP, &udp(5140, 40000)),
        out4(OTHER4, ipproto::TCP, &tcp(80, 40000, SYN | tcp_flag::ACK)),
        out4(OTHER4, ipproto::TCP, &tcp(40000, 22, tcp_flag::ACK)),
        out4(OTHER4, ipproto::ICMP, &icmp(8, 0)),
        out4(OTHER4, 112, &[0; 8]),
        eth(&[], mirror_xdp_common::wire::ethertype::ARP, &[0; 28]),
    ] {
        let judged = classify_egress(&frame, &policy);
        assert_eq!(
            (judged.passes, judged.denied, judged.records),
            (true, false, None)
        );
    }
}

#[test]
fn monitor_mode_sends_and_records_what_it_counts() {
    let mut policy = egress_policy();
    policy.settings.mode = Mode::Monitor;
    let judged = classify_egress(&out4(OTHER4, ipproto::TCP, &tcp(40000, 22, SYN)), &policy);
    assert!(judged.passes && judged.denied && judged.records.is_some());
    policy.settings.return_traffic = false;
    let judged = classify_egress(&out4(OTHER4, ipproto::TCP, &tcp(40000, 22, SYN)), &policy);
    assert_eq!(judged.records, None);
}
