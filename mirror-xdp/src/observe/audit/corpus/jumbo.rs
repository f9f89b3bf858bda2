//! Multi-buffer frames, as a link with MTU 9000 delivers them: segments with 8,000 bytes of
//! data to every aim (judged like the same segment without data), and IPv6 extension chains
//! that push the TCP header out of the frame's first buffer, to the refusals
//! (docs/semantics.md, "Multi-buffer frames").

use std::net::{IpAddr, Ipv6Addr};

use super::{ALL_AIMS, Class, Corpus, REFUSED, flags_for, segment};
use crate::observe::audit::frame::{DSTOPTS, ExtHeader, ethernet, ip, ipv6, tcp};

/// TCP data that makes a 9000-byte-MTU frame: far past a test run's first buffer (3,520 bytes).
const DATA: usize = 8000;
/// The longest extension header: 2,048 bytes.
const LONGEST_UNITS: u8 = 255;

pub(super) fn add(c: &mut Corpus) {
    let data = vec![0x6d; DATA];
    for v6 in [false, true] {
        for aim in c.aims(&ALL_AIMS, v6) {
            let payload = tcp(aim.port, flags_for(&aim), 5, &data);
            let frame = ethernet(&[], &ip(aim.src, aim.dst, payload));
            c.port_probe(Class::MultiBuffer, "8,000 bytes of data", &aim, frame);
        }
    }
    let chain = [longest_dstopts(), longest_dstopts()];
    for aim in c.aims(&REFUSED, true) {
        let frame = ethernet(&[], &ipv6(v6(aim.src), v6(aim.dst), &chain, segment(&aim)));
        let trick = "TCP header 4 KB in, behind two 2,048-byte destination options headers";
        c.port_probe(Class::MultiBuffer, trick, &aim, frame);
    }
}

/// A destination options header of 2,048 bytes, filled with valid PadN options (each at
/// most 257 bytes).
fn longest_dstopts() -> ExtHeader {
    let len = (usize::from(LONGEST_UNITS) + 1) * 8;
    let mut bytes = vec![0u8, LONGEST_UNITS];
    while bytes.len() < len {
        let pad = (len - bytes.len() - 2).min(255);
        bytes.extend([1, pad as u8]);
        bytes.resize(bytes.len() + pad, 0);
    }
    ExtHeader {
        kind: DSTOPTS,
        bytes,
    }
}

fn v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => panic!("{a} is not an IPv6 address"),
    }
}
