//! The reference model: what the XDP program must decide for a frame, in plain Rust.
//!
//! It follows docs/semantics.md to the letter and shares no code with the kernel program, so
//! that the differential test (same frames through both) catches a mistake on either side.
//! Limits (steps 5, 6 and 12) are not modelled: the policy refuses them for now.

mod parse;
#[cfg(test)]
mod test_frames;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use mirror_xdp_common::{FlowKey, Reason};

use crate::policy::{Action, Mode, Policy, Proto};

pub use parse::{IpPacket, L4, Malformed, Parsed, flow_key, parse, tcp_flag};

/// What the enforcer state adds to the policy: flows this host opened that are still fresh.
#[derive(Clone, Debug, Default)]
pub struct ModelState {
    pub flows: HashSet<FlowKey>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub reason: Reason,
    /// The verdict says drop (in monitor mode: would drop).
    pub dropped: bool,
    /// The packet passes (always true in monitor mode).
    pub passes: bool,
    /// The (proto, dst port) of the rule that decided it (steps 11 and 13), for per-port counters.
    pub rule_port: Option<(Proto, u16)>,
}

/// Judges one received frame.
pub fn classify(frame: &[u8], policy: &Policy, state: &ModelState) -> Judgement {
    let verdict = match parse(frame) {
        Err(Malformed(_)) => Verdict::drop(Reason::Malformed),
        Ok(Parsed::NonIp { .. }) => Verdict::pass(Reason::NonIp),
        Ok(Parsed::Ip(packet)) => decide(&packet, policy, state),
    };
    Judgement {
        reason: verdict.reason,
        dropped: verdict.dropped,
        // Monitor mode counts the would-be drop but lets every packet through.
        passes: !verdict.dropped || policy.settings.mode == Mode::Monitor,
        rule_port: verdict.rule_port,
    }
}

/// A verdict before the mode is applied.
struct Verdict {
    reason: Reason,
    dropped: bool,
    rule_port: Option<(Proto, u16)>,
}

impl Verdict {
    fn pass(reason: Reason) -> Verdict {
        Verdict {
            reason,
            dropped: false,
            rule_port: None,
        }
    }

    fn drop(reason: Reason) -> Verdict {
        Verdict {
            reason,
            dropped: true,
            rule_port: None,
        }
    }

    /// A verdict left to a setting.
    fn by(action: Action, reason: Reason) -> Verdict {
        Verdict {
            reason,
            dropped: action == Action::Drop,
            rule_port: None,
        }
    }
}

/// Steps 3 to 15 for a packet that parsed.
fn decide(packet: &IpPacket, policy: &Policy, state: &ModelState) -> Verdict {
    let settings = &policy.settings;
    if within(&policy.allow, packet.src) {
        return Verdict::pass(Reason::Trusted);
    }
    if within(&policy.deny, packet.src) {
        return Verdict::drop(Reason::Denied);
    }
    let (proto, dst_port) = match packet.l4 {
        L4::Fragment => return Verdict::by(settings.fragments, Reason::Fragment),
        L4::Icmp { icmp_type, .. } if icmp_essential(packet.src, icmp_type) => {
            return Verdict::pass(Reason::Icmp);
        }
        L4::Icmp { .. } => return Verdict::by(settings.icmp, Reason::Icmp),
        L4::Other { .. } => return Verdict::by(settings.other_protocols, Reason::Protocol),
        L4::Tcp { dst_port, .. } => (Proto::Tcp, dst_port),
        L4::Udp { dst_port, .. } => (Proto::Udp, dst_port),
    };
    if settings.return_traffic && flow_key(packet).is_some_and(|key| state.flows.contains(&key)) {
        return Verdict::pass(Reason::Return);
    }
    let Some(rule) = policy.rule_for(proto, dst_port) else {
        return match settings.default {
            Action::Drop => Verdict::drop(Reason::PortClosed),
            Action::Pass => Verdict::pass(Reason::Default),
        };
    };
    let admitted = rule
        .from
        .as_ref()
        .is_none_or(|from| within(from, packet.src));
    let reason = if admitted {
        Reason::Allowed
    } else {
        Reason::SourceNotAllowed
    };
    Verdict {
        reason,
        dropped: !admitted,
        rule_port: Some((proto, dst_port)),
    }
}

/// Whether `addr` is in one of the prefixes. An address only matches prefixes of its own
/// family: an IPv4-mapped IPv6 source is an IPv6 source.
fn within(prefixes: &[IpNet], addr: IpAddr) -> bool {
    prefixes.iter().any(|net| net.contains(&addr))
}

/// Step 7: error and reply messages that must get through whatever `settings.icmp` says.
fn icmp_essential(src: IpAddr, icmp_type: u8) -> bool {
    match src {
        // echo reply, destination unreachable (frag-needed included), time exceeded
        IpAddr::V4(_) => matches!(icmp_type, 0 | 3 | 11),
        // destination unreachable, packet too big, time exceeded, echo reply,
        // router/neighbour discovery and redirect (133-137)
        IpAddr::V6(_) => matches!(icmp_type, 1 | 2 | 3 | 129 | 133..=137),
    }
}
