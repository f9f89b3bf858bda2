//! What the egress program must do with a packet this host sends: docs/semantics.md,
//! "Egress" and "Return traffic", as code.

use mirror_xdp_common::FlowKey;

use super::parse::{IpPacket, L4, Parsed, flow_key, parse, tcp_flag};
use crate::policy::{Action, Mode, Policy, Proto};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EgressJudgement {
    /// Counted as `egress_denied` (in monitor mode too, where it is sent all the same).
    pub denied: bool,
    /// The packet is sent.
    pub passes: bool,
    /// The flow it records for return traffic: the key its replies will be looked up by.
    pub records: Option<FlowKey>,
}

/// Judges one frame this host sends.
pub fn classify_egress(frame: &[u8], policy: &Policy) -> EgressJudgement {
    let sent = EgressJudgement {
        denied: false,
        passes: true,
        records: None,
    };
    let Ok(Parsed::Ip(packet)) = parse(frame) else {
        return sent;
    };
    let (proto, dst_port) = match packet.l4 {
        // SYN without ACK: this host opens a TCP connection.
        L4::Tcp {
            dst_port, flags, ..
        } if flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN => (Proto::Tcp, dst_port),
        // A datagram from a port no rule lists (for any destination): not a service's reply.
        L4::Udp { src_port, dst_port } if !udp_port_listed(policy, src_port) => {
            (Proto::Udp, dst_port)
        }
        _ => return sent,
    };
    let denied =
        policy.egress.default == Action::Drop && !policy.egress.allows(proto, dst_port, packet.dst);
    let monitor = policy.settings.mode == Mode::Monitor;
    if denied && !monitor {
        return EgressJudgement {
            denied,
            passes: false,
            records: None,
        };
    }
    EgressJudgement {
        denied,
        passes: true,
        records: policy
            .settings
            .return_traffic
            .then(|| flow_key(&reply_to(&packet)))
            .flatten(),
    }
}

fn udp_port_listed(policy: &Policy, port: u16) -> bool {
    policy
        .rules
        .iter()
        .any(|r| r.proto == Proto::Udp && r.ports.iter().any(|p| p.contains(port)))
}

/// The packet a reply to `packet` would be: addresses and ports swapped.
fn reply_to(packet: &IpPacket) -> IpPacket {
    let l4 = match packet.l4 {
        L4::Tcp {
            src_port,
            dst_port,
            flags,
        } => L4::Tcp {
            src_port: dst_port,
            dst_port: src_port,
            flags,
        },
        L4::Udp { src_port, dst_port } => L4::Udp {
            src_port: dst_port,
            dst_port: src_port,
        },
        other => other,
    };
    IpPacket {
        src: packet.dst,
        dst: packet.src,
        l4,
        ..*packet
    }
}
