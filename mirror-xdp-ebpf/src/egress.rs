//! The egress program: remembers the connections this host opens, so that their replies
//! pass as `return` traffic (docs/semantics.md, "Return traffic").

use aya_ebpf::{macros::classifier, programs::TcContext};
use mirror_xdp_common::{
    FlowKey, PROTO_SLOT_UDP, config_flag, flows::flow_port_index, port_flag, port_index, tcp_flag,
};

use crate::{
    cells::{FlowCell, SharedU64},
    maps::{CONFIG, FLOW_PORTS, FLOWS, PORTS},
    parse::{Frame, L4, Parsed, parse},
};

/// Lets the next TCX program (or the stack) have the packet: this program only watches.
const TCX_NEXT: i32 = -1;

#[classifier]
pub fn mirror_egress(ctx: TcContext) -> i32 {
    // A GSO packet of this host's own is one skb of up to 64 KiB, mostly in fragments.
    let frame = Frame::skb(ctx.data(), ctx.data_end(), ctx.len() as usize);
    let Some(config) = CONFIG.get(0) else {
        return TCX_NEXT;
    };
    if config.flags & config_flag::RETURN_TRAFFIC == 0 {
        return TCX_NEXT;
    }
    if let Parsed::Ip(pkt) = parse(&frame) {
        let opens = match pkt.l4 {
            // SYN without ACK: this host opens a TCP connection.
            L4::Tcp => pkt.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN,
            // A datagram from a port no rule lists: not a reply from a service of ours.
            L4::Udp => !udp_port_listed(pkt.sport),
            _ => false,
        };
        if opens {
            let key = FlowKey::new(
                (pkt.src, pkt.sport),
                (pkt.dst, pkt.dport),
                pkt.proto,
                pkt.v6,
            );
            let now = crate::clock::now(config);
            // A full LRU evicts the oldest flow; nothing to do on error.
            let state = FlowCell {
                last_seen_ns: SharedU64::new(now),
            };
            let _ = FLOWS.insert(key, state, 0);
            let index = flow_port_index(pkt.proto, pkt.sport);
            if let Some(port_seen) = FLOW_PORTS.get(index) {
                crate::verdict::refresh_port(port_seen, now);
            }
        }
    }
    TCX_NEXT
}

/// A rule lists the UDP port, for every address or (`to`) for some.
#[inline(always)]
fn udp_port_listed(sport: [u8; 2]) -> bool {
    let index = port_index(PROTO_SLOT_UDP, u16::from_be_bytes(sport));
    PORTS
        .get(index)
        .is_some_and(|e| e.flags & (port_flag::LISTED | port_flag::HAS_TO) != 0)
}
