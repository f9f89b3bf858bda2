//! The egress program: remembers the connections this host opens, so that their replies
//! pass as `return` traffic (docs/semantics.md, "Return traffic"), and with `[egress]
//! default = "drop"` drops those no egress rule lists (docs/semantics.md, "Egress").

use aya_ebpf::{macros::classifier, programs::TcContext};
use mirror_xdp_common::{
    Config, FlowKey, PROTO_SLOT_TCP, PROTO_SLOT_UDP, Reason, config_flag, drop_event_flag,
    egress_index, flows::flow_port_index, port_flag, port_index, tcp_flag,
};

use crate::{
    cells::{FlowCell, SharedU64},
    events,
    maps::{CONFIG, EGRESS_PORTS, EGRESS_STATS, FLOW_PORTS, FLOWS, PORTS},
    parse::{Frame, L4, Packet, Parsed, parse},
    verdict::to_entry,
};

/// Lets the next TCX program (or the stack) have the packet.
const TCX_NEXT: i32 = -1;
/// Drops the packet (`TC_ACT_SHOT`, TCX's `TCX_DROP`).
const TC_DROP: i32 = 2;

#[classifier]
pub fn mirror_egress(ctx: TcContext) -> i32 {
    // A GSO packet of this host's own is one skb of up to 64 KiB, mostly in fragments.
    let frame = Frame::skb(ctx.data(), ctx.data_end(), ctx.len() as usize);
    let Some(config) = CONFIG.get(0) else {
        return TCX_NEXT;
    };
    let flags = config.flags;
    if flags & (config_flag::RETURN_TRAFFIC | config_flag::EGRESS_DROP) == 0 {
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
        if opens && flags & config_flag::EGRESS_DROP != 0 && !egress_listed(&pkt) {
            deny(&pkt, config, ctx.len() as u64);
            if flags & config_flag::MONITOR == 0 {
                return TC_DROP;
            }
        }
        if opens && flags & config_flag::RETURN_TRAFFIC != 0 {
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

/// An egress rule lists the packet's destination port, for every destination or (`to`)
/// for this one.
#[inline(always)]
fn egress_listed(pkt: &Packet) -> bool {
    let slot = if pkt.l4 == L4::Tcp {
        PROTO_SLOT_TCP
    } else {
        PROTO_SLOT_UDP
    };
    let index = port_index(slot, u16::from_be_bytes(pkt.dport));
    let Some(entry) = EGRESS_PORTS.get(index) else {
        return false;
    };
    if entry.flags & port_flag::HAS_TO != 0
        && to_entry(pkt, egress_index(index)).flags & port_flag::LISTED != 0
    {
        return true;
    }
    entry.flags & port_flag::LISTED != 0
}

/// Counts the packet under `egress_denied` and samples it for the drop log, with the
/// destination it was going to.
#[inline(always)]
fn deny(pkt: &Packet, config: &Config, bytes: u64) {
    if let Some(counter) = EGRESS_STATS.get_ptr_mut(0) {
        // SAFETY: a pointer from a lookup of this per-CPU map, valid for the program run;
        // only this CPU's program run writes the slot, so plain adds are exact.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += bytes;
        }
    }
    if events::sampled(config) {
        let mut flags = drop_event_flag::EGRESS;
        if config.flags & config_flag::MONITOR != 0 {
            flags |= drop_event_flag::WOULD_DROP;
        }
        let reason = Reason::EgressDenied as u8;
        events::emit(
            &pkt.dst,
            events::meta(pkt.v6, pkt.proto, pkt.dport, reason, flags),
        );
    }
}

/// A rule lists the UDP port, for every address or (`to`) for some.
#[inline(always)]
fn udp_port_listed(sport: [u8; 2]) -> bool {
    let index = port_index(PROTO_SLOT_UDP, u16::from_be_bytes(sport));
    PORTS
        .get(index)
        .is_some_and(|e| e.flags & (port_flag::LISTED | port_flag::HAS_TO) != 0)
}
