//! IPv6 tricks: extension chains (usual, at the limit, too long, of unknown types),
//! fragment headers first, non-first fragments, and IPv4-mapped source addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{ALL_AIMS, Class, Corpus, REFUSED, from_source, segment};
use crate::observe::audit::frame::{
    DSTOPTS, ExtHeader, HOPOPTS, PROTO_TCP, Payload, ROUTING, ah, ethernet, ext8, frag6, ip, ipv6,
    unknown_ext,
};
use crate::observe::audit::intent::Meaning;
use crate::observe::audit::targets::{Aim, TargetKind};

/// The most extension headers the filter follows (docs/semantics.md).
const FOLLOWED: usize = 8;

pub(super) fn add(c: &mut Corpus) {
    ext_chains(c);
    fragment_first(c);
    non_first_fragments(c);
    mapped_sources(c);
}

fn ext_chains(c: &mut Corpus) {
    let usual = vec![ext8(HOPOPTS, 0), ext8(ROUTING, 0), ext8(DSTOPTS, 1), ah(4)];
    let at_limit = chain_of(FOLLOWED);
    for (trick, chain) in [
        (
            "hop-by-hop, routing, destination options and AH headers",
            usual,
        ),
        ("8 extension headers (the most followed)", at_limit),
    ] {
        chained(c, Class::Ipv6ExtChain, trick, &chain, &ALL_AIMS);
    }
    chained(
        c,
        Class::Ipv6ExtLong,
        "9 extension headers",
        &chain_of(FOLLOWED + 1),
        &REFUSED,
    );
    chained(
        c,
        Class::Ipv6ExtLong,
        "30 extension headers",
        &chain_of(30),
        &REFUSED,
    );
    for (trick, kind) in [
        ("Shim6 header (140)", 140),
        ("HIP header (139)", 139),
        ("experimental header 253", 253),
    ] {
        let chain = [ext8(DSTOPTS, 0), unknown_ext(kind)];
        chained(c, Class::Ipv6ExtUnknown, trick, &chain, &REFUSED);
    }
}

/// A hop-by-hop header followed by destination options headers, `n` in all.
fn chain_of(n: usize) -> Vec<ExtHeader> {
    std::iter::once(ext8(HOPOPTS, 0))
        .chain(std::iter::repeat_with(|| ext8(DSTOPTS, 0)))
        .take(n)
        .collect()
}

fn chained(c: &mut Corpus, class: Class, trick: &str, chain: &[ExtHeader], kinds: &[TargetKind]) {
    for aim in c.aims(kinds, true) {
        let frame = ethernet(&[], &ipv6(v6(aim.src), v6(aim.dst), chain, segment(&aim)));
        c.port_probe(class, trick, &aim, frame);
    }
}

/// Fragment headers first: an atomic fragment (RFC 6946), a first fragment, a first
/// fragment cut after 8 bytes of TCP, and one whose TCP header is left to the next
/// fragment (RFC 7112 forbids it).
fn fragment_first(c: &mut Corpus) {
    let class = Class::Ipv6FragmentFirst;
    chained(
        c,
        class,
        "atomic fragment header",
        &[frag6(0, false)],
        &ALL_AIMS,
    );
    chained(c, class, "first fragment", &[frag6(0, true)], &REFUSED);
    for aim in c.aims(&REFUSED, true) {
        let mut cut = segment(&aim);
        cut.bytes.truncate(8);
        let empty = Payload {
            proto: PROTO_TCP,
            bytes: Vec::new(),
        };
        for (trick, chain, payload) in [
            (
                "first fragment with 8 bytes of the TCP header",
                vec![frag6(0, true)],
                cut,
            ),
            (
                "first fragment ending before the TCP header",
                vec![frag6(0, true), ext8(DSTOPTS, 0)],
                empty,
            ),
        ] {
            let frame = ethernet(&[], &ipv6(v6(aim.src), v6(aim.dst), &chain, payload));
            c.port_probe(class, trick, &aim, frame);
        }
    }
}

fn non_first_fragments(c: &mut Corpus) {
    for src in super::ipv4::fragment_sources(c, true) {
        let payload = Payload {
            proto: PROTO_TCP,
            bytes: vec![0x5a; 40],
        };
        let frame = ethernet(
            &[],
            &ipv6(v6(src), c.targets.dst_v6, &[frag6(181, false)], payload),
        );
        c.probe(
            Class::NonFirstFragment,
            format!("IPv6 fragment at offset 1448 from {src}"),
            src,
            Meaning::Fragment,
            frame,
        );
    }
}

/// IPv4-mapped IPv6 sources (::ffff:a.b.c.d) of a trusted, a `from` and a denied IPv4
/// address and of an unnamed one: the mapping must earn no trust and no `from` membership.
fn mapped_sources(c: &mut Corpus) {
    let t = c.targets.clone();
    let closed = c.aims(&[TargetKind::Closed], true);
    let restricted = c.aims(&[TargetKind::Restricted], true);
    let cases: [(&str, Option<Ipv4Addr>, &[Aim]); 4] = [
        ("mapped trusted address", t.trusted_v4, &closed),
        ("mapped `from` address", t.from_v4, &restricted),
        ("mapped denied address", t.denied_v4, &closed),
        ("mapped unnamed address", Some(t.outsider_v4), &closed),
    ];
    for (trick, addr, aims) in cases {
        let Some(addr) = addr else { continue };
        for aim in aims {
            let aim = from_source(aim, IpAddr::V6(addr.to_ipv6_mapped()));
            let frame = ethernet(&[], &ip(aim.src, aim.dst, segment(&aim)));
            c.port_probe(Class::Ipv4MappedIpv6, trick, &aim, frame);
        }
    }
}

fn v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => panic!("{a} is not an IPv6 address"),
    }
}
