//! The reference model: what the XDP program must decide for a frame, in plain Rust.
//!
//! It follows docs/semantics.md to the letter and shares no code with the kernel program, so
//! that the differential test (same frames through both) catches a mistake on either side.
//! The limits (steps 5, 6 and 12) are modelled with a clock the caller sets.
//! [`classify_egress`] does the same for the egress program.

mod egress;
mod parse;
mod syncookie;
#[cfg(test)]
pub(crate) mod test_frames;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use mirror_xdp_common::{
    Config, FlowKey, LimiterKey, LimiterState, Reason, config_flag,
    limits::{SYN_KEEPALIVE_NS, limiter_addr},
};

use crate::policy::{Action, Mode, Policy, Proto};

pub use egress::{EgressJudgement, classify_egress};
pub use parse::{IpPacket, L4, Malformed, Parsed, flow_key, parse, parse_buffers, tcp_flag};
pub use syncookie::{cookie_mss, cookie_timestamp, syn_ack, window};

/// What the enforcer state adds to the policy: the clock, flows this host opened that are
/// still fresh, live source entries, and the limiters' buckets (which judging updates).
#[derive(Clone, Debug, Default)]
pub struct ModelState {
    /// The kernel's clock (`CLOCK_MONOTONIC` ns) at the packet.
    pub now_ns: u64,
    pub flows: HashSet<FlowKey>,
    /// Live trusted prefixes (`source allow`).
    pub live_allow: Vec<IpNet>,
    /// Live denied prefixes with the clock time they expire at (`u64::MAX`: never).
    pub live_deny: Vec<(IpNet, u64)>,
    /// The compiled settings: limit parameters and flags (see `compile`).
    pub config: Config,
    pub limiters: HashMap<LimiterKey, LimiterState>,
    /// The global SYN bucket (the test runs pin themselves to one CPU).
    pub global_syn_tat_ns: u64,
    /// With `syn_cookies`: when a SYN last went to the kernel, per (IPv6?, port).
    pub syn_keepalive: HashMap<(bool, u16), u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub reason: Reason,
    /// The verdict says drop (in monitor mode: would drop).
    pub dropped: bool,
    /// The packet passes (always true in monitor mode).
    pub passes: bool,
    /// The packet goes back out as a SYN cookie SYN-ACK (XDP_TX): neither passes nor drops.
    pub tx: bool,
    /// The (proto, dst port) of the rule that decided it (steps 11 and 13), for per-port counters.
    pub rule_port: Option<(Proto, u16)>,
    /// The IP protocol whose `[[protocols]]` rule decided it (step 15), for its counters.
    pub rule_protocol: Option<u8>,
    /// The bytes the reason's counter counts (docs/semantics.md, "Multi-buffer frames").
    pub bytes: usize,
}

/// Judges one received frame.
pub fn classify(frame: &[u8], policy: &Policy, state: &mut ModelState) -> Judgement {
    classify_buffers(frame, frame.len(), policy, state)
}

/// Judges a multi-buffer frame whose first `first_buffer` bytes lie in its first buffer.
pub fn classify_buffers(
    frame: &[u8],
    first_buffer: usize,
    policy: &Policy,
    state: &mut ModelState,
) -> Judgement {
    let parsed = parse_buffers(frame, first_buffer);
    // A packet that ends inside its first buffer counts that buffer: the enforcer reads
    // the whole length only when it needs it.
    let bytes = match &parsed {
        Ok(Parsed::Ip(packet)) if packet.ip_end <= first_buffer => first_buffer,
        _ => frame.len(),
    };
    let verdict = match parsed {
        Err(Malformed(_)) => Verdict::drop(Reason::Malformed),
        Ok(Parsed::NonIp { .. }) => Verdict::pass(Reason::NonIp),
        Ok(Parsed::Ip(packet)) => decide(&packet, policy, state),
    };
    let monitor = policy.settings.mode == Mode::Monitor;
    // Monitor mode passes a SYN that would get a cookie, counted as `syn_cookie`.
    let tx = verdict.reason == Reason::SynCookie && !monitor;
    Judgement {
        reason: verdict.reason,
        dropped: verdict.dropped,
        // Monitor mode counts the would-be drop but lets every packet through.
        passes: !tx && (!verdict.dropped || monitor),
        tx,
        rule_port: verdict.rule_port,
        rule_protocol: verdict.rule_protocol,
        bytes,
    }
}

/// A verdict before the mode is applied.
struct Verdict {
    reason: Reason,
    dropped: bool,
    rule_port: Option<(Proto, u16)>,
    rule_protocol: Option<u8>,
}

impl Verdict {
    /// A verdict no rule made.
    fn new(reason: Reason, dropped: bool) -> Verdict {
        Verdict {
            reason,
            dropped,
            rule_port: None,
            rule_protocol: None,
        }
    }

    fn pass(reason: Reason) -> Verdict {
        Verdict::new(reason, false)
    }

    fn drop(reason: Reason) -> Verdict {
        Verdict::new(reason, true)
    }

    /// A verdict left to a setting.
    fn by(action: Action, reason: Reason) -> Verdict {
        Verdict::new(reason, action == Action::Drop)
    }
}

/// Steps 3 to 15 for a packet that parsed.
fn decide(packet: &IpPacket, policy: &Policy, state: &mut ModelState) -> Verdict {
    let settings = &policy.settings;
    let now = state.now_ns;
    if within(&policy.allow, packet.src) || within(&state.live_allow, packet.src) {
        return Verdict::pass(Reason::Trusted);
    }
    let live_denied = state
        .live_deny
        .iter()
        .any(|(net, expires)| net.contains(&packet.src) && now < *expires);
    if within(&policy.deny, packet.src) || live_denied {
        return Verdict::drop(Reason::Denied);
    }
    let config = state.config;
    let per_source = config.flags & (config_flag::LIMIT_PPS | config_flag::LIMIT_SYN) != 0;
    let key = limiter_key(packet.src, &config);
    if per_source {
        let bucket = state.limiters.entry(key).or_default();
        if now < bucket.banned_until_ns {
            return Verdict::drop(Reason::Banned);
        }
        if config.flags & config_flag::LIMIT_PPS != 0
            && !conforms(
                &mut bucket.pps_tat_ns,
                now,
                config.pps_interval_ns,
                config.pps_tolerance_ns,
            )
        {
            ban(bucket, &config, now);
            return Verdict::drop(Reason::RateLimited);
        }
    }
    let (proto, dst_port, flags) = match packet.l4 {
        L4::Fragment => return Verdict::by(settings.fragments, Reason::Fragment),
        L4::Icmp { icmp_type, .. } if icmp_essential(packet.src, icmp_type) => {
            return Verdict::pass(Reason::Icmp);
        }
        L4::Icmp { .. } => return Verdict::by(settings.icmp, Reason::Icmp),
        L4::Other { proto } => return protocol_step(packet, proto, policy),
        L4::Tcp {
            dst_port, flags, ..
        } => (Proto::Tcp, dst_port, flags),
        L4::Udp { dst_port, .. } => (Proto::Udp, dst_port, 0),
    };
    if settings.return_traffic && flow_key(packet).is_some_and(|key| state.flows.contains(&key)) {
        return Verdict::pass(Reason::Return);
    }
    let Some(rule) = policy.rule_for(proto, dst_port, packet.dst) else {
        return match settings.default {
            Action::Drop => Verdict::drop(Reason::PortClosed),
            Action::Pass => Verdict::pass(Reason::Default),
        };
    };
    let admitted = rule
        .from
        .as_ref()
        .is_none_or(|from| within(from, packet.src));
    let syn = proto == Proto::Tcp && flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN;
    let reason = if !admitted {
        Reason::SourceNotAllowed
    } else if syn {
        syn_step(packet, dst_port, state, key, per_source)
    } else {
        Reason::Allowed
    };
    Verdict {
        rule_port: Some((proto, dst_port)),
        ..Verdict::new(
            reason,
            !matches!(reason, Reason::Allowed | Reason::SynCookie),
        )
    }
}

/// Step 15: the `[[protocols]]` rule that lists the protocol for the packet's destination,
/// else `settings.other_protocols`.
fn protocol_step(packet: &IpPacket, protocol: u8, policy: &Policy) -> Verdict {
    let Some(rule) = policy.protocol_rule(protocol, packet.dst) else {
        return Verdict::by(policy.settings.other_protocols, Reason::Protocol);
    };
    let admitted = rule
        .from
        .as_ref()
        .is_none_or(|from| within(from, packet.src));
    let mut verdict = match admitted {
        true => Verdict::pass(Reason::Allowed),
        false => Verdict::drop(Reason::SourceNotAllowed),
    };
    verdict.rule_protocol = Some(protocol);
    verdict
}

/// Step 12: the source's SYN bucket (a miss bans it), then the global one. With
/// `syn_cookies` a SYN over the global budget gets a cookie, unless no SYN went to the kernel
/// for this (family, port) in `SYN_KEEPALIVE_NS` (then it passes), or its IP header has
/// options or extension headers (then it is dropped as usual).
fn syn_step(
    packet: &IpPacket,
    port: u16,
    state: &mut ModelState,
    key: LimiterKey,
    per_source: bool,
) -> Reason {
    let config = state.config;
    let now = state.now_ns;
    if per_source && config.flags & config_flag::LIMIT_SYN != 0 {
        let bucket = state.limiters.entry(key).or_default();
        if !conforms(
            &mut bucket.syn_tat_ns,
            now,
            config.syn_interval_ns,
            config.syn_tolerance_ns,
        ) {
            ban(bucket, &config, now);
            return Reason::SynFlood;
        }
    }
    let over = config.flags & config_flag::LIMIT_GLOBAL_SYN != 0
        && !conforms(
            &mut state.global_syn_tat_ns,
            now,
            config.global_syn_interval_ns,
            config.global_syn_tolerance_ns,
        );
    let cookies = config.flags & config_flag::SYN_COOKIES != 0;
    let family_port = (packet.src.is_ipv6(), port);
    if !over {
        if cookies {
            state.syn_keepalive.insert(family_port, now);
        }
        return Reason::Allowed;
    }
    if !cookies {
        return Reason::SynFlood;
    }
    let last = state.syn_keepalive.get(&family_port).copied().unwrap_or(0);
    if now.saturating_sub(last) >= SYN_KEEPALIVE_NS {
        state.syn_keepalive.insert(family_port, now);
        return Reason::Allowed;
    }
    let plain = if packet.src.is_ipv6() { 40 } else { 20 };
    if packet.ip_header_len == plain {
        Reason::SynCookie
    } else {
        Reason::SynFlood
    }
}

/// GCRA: a packet conforms while the bucket's theoretical arrival time is at most
/// `tolerance` ahead of now; a conforming packet moves it on by `interval`.
fn conforms(tat: &mut u64, now: u64, interval: u64, tolerance: u64) -> bool {
    let start = (*tat).max(now);
    if start - now > tolerance {
        return false;
    }
    *tat = start + interval;
    true
}

fn ban(bucket: &mut LimiterState, config: &Config, now: u64) {
    if config.ban_ns > 0 {
        bucket.banned_until_ns = now + config.ban_ns;
    }
}

/// The limiter table's key of a source: its prefix (`source_prefix_v4`/`_v6`) and family.
pub fn limiter_key(src: IpAddr, config: &Config) -> LimiterKey {
    let (bytes, v6) = match src {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (b, false)
        }
        IpAddr::V6(a) => (a.octets(), true),
    };
    LimiterKey {
        addr: limiter_addr(bytes, v6, config.prefix_v4, config.prefix_v6),
        family: if v6 { 6 } else { 4 },
        _pad: [0; 3],
    }
}

/// Whether `addr` is in one of the prefixes. An address only matches prefixes of its own
/// family: an IPv4-mapped IPv6 source is an IPv6 source.
fn within(prefixes: &[IpNet], addr: IpAddr) -> bool {
    prefixes.iter().any(|net| net.contains(&addr))
}

/// Step 7: error and reply messages that must get through whatever `settings.icmp` says.
pub fn icmp_essential(src: IpAddr, icmp_type: u8) -> bool {
    match src {
        // echo reply, destination unreachable (frag-needed included), time exceeded
        IpAddr::V4(_) => matches!(icmp_type, 0 | 3 | 11),
        // destination unreachable, packet too big, time exceeded, echo reply,
        // router/neighbour discovery and redirect (133-137)
        IpAddr::V6(_) => matches!(icmp_type, 1 | 2 | 3 | 129 | 133..=137),
    }
}
