//! IPv4 tricks: options that move the TCP header, fragments that cut it or overlap it,
//! zero and broadcast addresses, and TCP tunnelled inside another IP packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{ALL_AIMS, Class, Corpus, REFUSED, from_source, segment};
use crate::observe::audit::frame::{
    PROTO_IPIP, PROTO_IPV6, PROTO_TCP, Payload, V4Extras, ethernet, flag, ip, ipv4, ipv6, tcp,
};
use crate::observe::audit::intent::Meaning;
use crate::observe::audit::targets::{Aim, TargetKind};

pub(super) fn add(c: &mut Corpus) {
    options(c);
    tiny_fragments(c);
    overlapping_fragments(c);
    non_first_fragments(c);
    zero_and_broadcast(c);
    tunnels(c);
}

/// Record-route (IHL 7) and a loose source route padded to the 40-byte maximum (IHL 15).
fn options(c: &mut Corpus) {
    let record_route = vec![7, 7, 4, 0, 0, 0, 0, 0];
    let mut source_route = vec![0x83, 7, 4, 198, 51, 100, 1];
    source_route.resize(39, 1);
    source_route.push(0);
    for (trick, options) in [
        ("IPv4 record-route option (IHL 7)", record_route),
        (
            "IPv4 loose source route, 40 bytes of options (IHL 15)",
            source_route,
        ),
    ] {
        for aim in c.aims(&ALL_AIMS, false) {
            let extras = V4Extras {
                options: options.clone(),
                ..V4Extras::default()
            };
            let frame = ethernet(&[], &ipv4(v4(aim.src), v4(aim.dst), &extras, segment(&aim)));
            c.port_probe(Class::Ipv4Options, trick, &aim, frame);
        }
    }
}

/// First fragments too short for the TCP header (RFC 1858): 8 bytes (the ports, no flags
/// or data offset), and none at all.
fn tiny_fragments(c: &mut Corpus) {
    for aim in c.aims(&REFUSED, false) {
        let mut cut = segment(&aim);
        cut.bytes.truncate(8);
        let empty = Payload {
            proto: PROTO_TCP,
            bytes: Vec::new(),
        };
        for (trick, payload) in [
            ("first fragment with 8 bytes of the TCP header", cut),
            ("first fragment with no TCP header", empty),
        ] {
            let frame = ethernet(&[], &ipv4(v4(aim.src), v4(aim.dst), &first(), payload));
            c.port_probe(Class::Ipv4TinyFragment, trick, &aim, frame);
        }
    }
}

/// Overlapping fragments (RFC 1858, RFC 3128): a first fragment to the open port, then a
/// second offset-0 fragment that would rewrite its port to a refused one, and a fragment at
/// offset 8 overlapping the TCP header to rewrite its flags.
fn overlapping_fragments(c: &mut Corpus) {
    let open = c.aims(&[TargetKind::Open], false);
    for aim in &open {
        let frame = ethernet(&[], &ipv4(v4(aim.src), v4(aim.dst), &first(), segment(aim)));
        c.port_probe(
            Class::Ipv4OverlappingFragment,
            "first fragment (control)",
            aim,
            frame,
        );
    }
    for aim in c.aims(&[TargetKind::Closed, TargetKind::Restricted], false) {
        let frame = ethernet(
            &[],
            &ipv4(v4(aim.src), v4(aim.dst), &first(), segment(&aim)),
        );
        c.port_probe(
            Class::Ipv4OverlappingFragment,
            "second offset-0 fragment rewriting the port",
            &aim,
            frame,
        );
    }
    // Bytes 8-19 of the TCP header again (acknowledgement, offset, flags SYN, window):
    // no port inside, so its meaning is a fragment.
    let overlap = tcp(0, flag::SYN, 5, &[]).bytes[8..].to_vec();
    let sources = fragment_sources(c, false);
    for src in sources {
        let extras = V4Extras {
            more_fragments: true,
            fragment_offset: 1,
            ..V4Extras::default()
        };
        let payload = Payload {
            proto: PROTO_TCP,
            bytes: overlap.clone(),
        };
        let frame = ethernet(&[], &ipv4(v4(src), c.targets.dst_v4, &extras, payload));
        c.probe(
            Class::Ipv4OverlappingFragment,
            format!("fragment at offset 8 overlapping the TCP flags, from {src}"),
            src,
            Meaning::Fragment,
            frame,
        );
    }
}

/// Last fragments of a 1,500-byte TCP packet, IPv4 here (IPv6 in `ipv6.rs`): from a source
/// the policy does not name (`settings.fragments` decides) and from a denied one (dropped).
fn non_first_fragments(c: &mut Corpus) {
    for src in fragment_sources(c, false) {
        let extras = V4Extras {
            fragment_offset: 185,
            ..V4Extras::default()
        };
        let payload = Payload {
            proto: PROTO_TCP,
            bytes: vec![0x5a; 40],
        };
        let frame = ethernet(&[], &ipv4(v4(src), c.targets.dst_v4, &extras, payload));
        c.probe(
            Class::NonFirstFragment,
            format!("IPv4 fragment at offset 1480 from {src}"),
            src,
            Meaning::Fragment,
            frame,
        );
    }
}

/// The source not named by the policy, and the denied one if there is one.
pub(super) fn fragment_sources(c: &Corpus, v6: bool) -> Vec<IpAddr> {
    let (outsider, denied): (IpAddr, Option<IpAddr>) = if v6 {
        (
            c.targets.outsider_v6.into(),
            c.targets.denied_v6.map(Into::into),
        )
    } else {
        (
            c.targets.outsider_v4.into(),
            c.targets.denied_v4.map(Into::into),
        )
    };
    std::iter::once(outsider).chain(denied).collect()
}

/// Unspecified and broadcast sources, and a broadcast destination, to refused ports.
fn zero_and_broadcast(c: &mut Corpus) {
    let aims4 = c.aims(&[TargetKind::Closed, TargetKind::Restricted], false);
    for aim in &aims4 {
        for (what, src) in [
            ("source 0.0.0.0", Ipv4Addr::UNSPECIFIED),
            ("source 255.255.255.255", Ipv4Addr::BROADCAST),
        ] {
            let aim = from_source(aim, src.into());
            let frame = ethernet(&[], &ip(aim.src, aim.dst, segment(&aim)));
            c.port_probe(Class::ZeroBroadcastAddress, what, &aim, frame);
        }
        let broadcast = Aim {
            dst: Ipv4Addr::BROADCAST.into(),
            ..*aim
        };
        let frame = ethernet(&[], &ip(aim.src, broadcast.dst, segment(aim)));
        c.port_probe(
            Class::ZeroBroadcastAddress,
            "destination 255.255.255.255",
            &broadcast,
            frame,
        );
    }
    for aim in c.aims(&[TargetKind::Closed, TargetKind::Restricted], true) {
        let aim = from_source(&aim, Ipv6Addr::UNSPECIFIED.into());
        let frame = ethernet(&[], &ip(aim.src, aim.dst, segment(&aim)));
        c.port_probe(Class::ZeroBroadcastAddress, "source ::", &aim, frame);
    }
}

/// A TCP SYN to a refused port inside IPv4-in-IPv4, IPv6-in-IPv4 and IPv6-in-IPv6: a host
/// with a tunnel device would unwrap and deliver it.
fn tunnels(c: &mut Corpus) {
    let kinds = [TargetKind::Closed, TargetKind::Restricted];
    let t = c.targets.clone();
    let outer4 = |inner: Vec<u8>, proto| {
        let payload = Payload {
            proto,
            bytes: inner,
        };
        ipv4(t.outsider_v4, t.dst_v4, &V4Extras::default(), payload)
    };
    for aim in c.aims(&kinds, false) {
        let inner = ip(aim.src, aim.dst, segment(&aim));
        let frame = ethernet(&[], &outer4(inner, PROTO_IPIP));
        c.port_probe(Class::IpInIp, "IPv4-in-IPv4", &aim, frame);
    }
    for aim in c.aims(&kinds, true) {
        let inner = ip(aim.src, aim.dst, segment(&aim));
        let frame = ethernet(&[], &outer4(inner.clone(), PROTO_IPV6));
        c.port_probe(Class::IpInIp, "IPv6-in-IPv4", &aim, frame);
        let outer6 = ipv6(
            t.outsider_v6,
            t.dst_v6,
            &[],
            Payload {
                proto: PROTO_IPV6,
                bytes: inner,
            },
        );
        c.port_probe(Class::IpInIp, "IPv6-in-IPv6", &aim, ethernet(&[], &outer6));
    }
}

/// A first fragment: offset 0, more fragments follow.
fn first() -> V4Extras {
    V4Extras {
        more_fragments: true,
        ..V4Extras::default()
    }
}

fn v4(addr: IpAddr) -> Ipv4Addr {
    match addr {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => panic!("{a} is not an IPv4 address"),
    }
}
