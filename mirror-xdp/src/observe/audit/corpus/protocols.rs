//! The IP protocols `[[protocols]]` rules list: each from a source its rule admits, from an
//! unnamed one and from a denied one. A listed protocol must pass only from its `from`.

use std::net::IpAddr;

use super::{Class, Corpus};
use crate::observe::audit::frame::{Payload, ethernet, ip};
use crate::observe::audit::intent::Meaning;
use crate::observe::audit::targets::host_in;
use crate::policy::protocols;

/// Protocols probed per policy: a policy lists a few; this bounds the corpus if it lists
/// many.
const MOST: usize = 8;

pub(super) fn add(c: &mut Corpus) {
    let t = c.targets.clone();
    let listed: Vec<(u8, Option<Vec<ipnet::IpNet>>)> = c
        .view
        .policy
        .protocols
        .iter()
        .flat_map(|r| r.protocols.iter().map(|p| (*p, r.from.clone())))
        .take(MOST)
        .collect();
    for (protocol, from) in listed {
        let mut sources: Vec<(&str, IpAddr)> = vec![
            ("unnamed", t.outsider_v4.into()),
            ("unnamed", t.outsider_v6.into()),
        ];
        sources.extend(t.denied_v4.map(|a| ("denied", a.into())));
        sources.extend(t.denied_v6.map(|a| ("denied", a.into())));
        for net in from.iter().flatten().take(2) {
            sources.push(("admitted", host_in(net)));
        }
        for (who, src) in sources {
            let dst: IpAddr = match src {
                IpAddr::V4(_) => t.dst_v4.into(),
                IpAddr::V6(_) => t.dst_v6.into(),
            };
            // An 8-byte body, the size of a VRRP or GRE header.
            let payload = Payload {
                proto: protocol,
                bytes: vec![0x21, 1, 100, 1, 0, 1, 0, 0],
            };
            let label = format!(
                "protocol {} ({protocol}) from {who} {src}",
                protocols::name(protocol)
            );
            let frame = ethernet(&[], &ip(src, dst, payload));
            c.probe(
                Class::ListedProtocol,
                label,
                src,
                Meaning::Protocol(protocol),
                frame,
            );
        }
    }
}
