//! The verdict order (README, "What happens to a packet"; docs/semantics.md), one step
//! after another.

use aya_ebpf::maps::lpm_trie::Key;
use mirror_xdp_common::{
    Config, FlowKey, FromKeyV4, FromKeyV6, PROTO_SLOT_TCP, PROTO_SLOT_UDP, PortEntry, Reason,
    ToKeyV4, ToKeyV6, config_flag,
    flows::{FLOW_IDLE_NS_TCP, FLOW_IDLE_NS_UDP, FLOW_PORT_SLACK_NS},
    ipproto, port_flag, port_index, protocol_index, source_flag, tcp_flag,
};

use crate::{
    cells::{LimiterCell, SharedU64},
    clock, limits,
    maps::{FLOW_PORTS, FLOWS, FROM_V4, FROM_V6, PORTS, TO_V4, TO_V6},
    parse::{L4, Packet},
    sources::source_flags,
    syncookie,
};

/// A decision: why, whether it drops, and the ports-array index of the rule that decided
/// (a port's, or past the port slots a protocol's).
pub struct Verdict {
    pub reason: Reason,
    pub drop: bool,
    pub port_slot: Option<u32>,
}

impl Verdict {
    #[inline(always)]
    pub const fn new(reason: Reason, drop: bool) -> Self {
        Verdict {
            reason,
            drop,
            port_slot: None,
        }
    }

    /// A reason that passes or drops as a `settings` switch says.
    #[inline(always)]
    const fn setting(reason: Reason, flags: u32, pass_flag: u32) -> Self {
        Verdict::new(reason, flags & pass_flag == 0)
    }
}

/// ICMP types that always pass: errors path MTU discovery and diagnostics need, echo replies.
#[inline(always)]
fn icmp_essential(v6: bool, icmp_type: u8) -> bool {
    if v6 {
        matches!(icmp_type, 1 | 2 | 3 | 129 | 133..=137)
    } else {
        matches!(icmp_type, 0 | 3 | 11)
    }
}

/// Steps 3 to 15 for a well-formed IP packet. The clock is read only where a step needs
/// the time: most packets never do.
#[inline(always)]
pub fn judge(pkt: &Packet, config: &Config) -> Verdict {
    let flags = config.flags;
    let source = source_flags(pkt, config);
    if source & source_flag::TRUSTED != 0 {
        return Verdict::new(Reason::Trusted, false);
    }
    if source & source_flag::DENIED != 0 {
        return Verdict::new(Reason::Denied, true);
    }

    // Steps 5 and 6: the per-source state, if any per-source limit is on, and the time read
    // for it (step 12 reuses it).
    let mut limiter = None;
    if flags & (config_flag::LIMIT_PPS | config_flag::LIMIT_SYN) != 0
        && let Some(state) = limits::limiter(pkt, config)
    {
        let now = clock::now(config);
        if now < state.banned_until_ns.load() {
            return Verdict::new(Reason::Banned, true);
        }
        if flags & config_flag::LIMIT_PPS != 0 && limits::over_pps(state, config, now) {
            return Verdict::new(Reason::RateLimited, true);
        }
        limiter = Some((state, now));
    }

    let slot = match pkt.l4 {
        L4::Icmp => {
            if icmp_essential(pkt.v6, pkt.icmp_type) {
                return Verdict::new(Reason::Icmp, false);
            }
            return Verdict::setting(Reason::Icmp, flags, config_flag::ICMP_PASS);
        }
        L4::Fragment => {
            return Verdict::setting(Reason::Fragment, flags, config_flag::FRAGMENTS_PASS);
        }
        L4::Other => return protocol_verdict(pkt, flags),
        L4::Tcp => PROTO_SLOT_TCP,
        L4::Udp => PROTO_SLOT_UDP,
    };
    let index = port_index(slot, u16::from_be_bytes(pkt.dport));
    if flags & config_flag::RETURN_TRAFFIC != 0 && is_return(pkt, config, index) {
        return Verdict::new(Reason::Return, false);
    }
    let entry = match slot_entry(pkt, index) {
        Some(entry) => entry,
        None => {
            return Verdict::setting(Reason::PortClosed, flags, config_flag::DEFAULT_PASS)
                .default_named();
        }
    };
    let mut verdict = if entry.flags & port_flag::HAS_FROM != 0 && !from_allows(pkt, &entry) {
        Verdict::new(Reason::SourceNotAllowed, true)
    } else if pkt.l4 == L4::Tcp
        && pkt.tcp_flags & (tcp_flag::SYN | tcp_flag::ACK) == tcp_flag::SYN
        && flags & (config_flag::LIMIT_SYN | config_flag::LIMIT_GLOBAL_SYN) != 0
    {
        let now = match &limiter {
            Some((_, now)) => *now,
            None => clock::now(config),
        };
        syn_verdict(pkt, limiter.map(|(state, _)| state), config, now)
    } else {
        Verdict::new(Reason::Allowed, false)
    };
    verdict.port_slot = Some(index);
    verdict
}

/// Step 15: a `[[protocols]]` rule's, else `settings.other_protocols`. Not inlined: it
/// keeps the `from` lookup of the port path apart from this rare one.
#[inline(never)]
fn protocol_verdict(pkt: &Packet, flags: u32) -> Verdict {
    let index = protocol_index(pkt.proto);
    let Some(entry) = slot_entry(pkt, index) else {
        return Verdict::setting(Reason::Protocol, flags, config_flag::OTHER_PASS);
    };
    let mut verdict = if entry.flags & port_flag::HAS_FROM != 0 && !from_allows(pkt, &entry) {
        Verdict::new(Reason::SourceNotAllowed, true)
    } else {
        Verdict::new(Reason::Allowed, false)
    };
    verdict.port_slot = Some(index);
    verdict
}

/// Step 12: the per-source SYN rate first (it bans), then this CPU's share of the global
/// budget. With `syn_cookies`, a SYN over the global budget is answered with a cookie
/// instead (if its headers allow), except the keepalive SYN that goes to the kernel. Not
/// inlined: the main program's stack plus the limiter's must stay within 512 bytes.
#[inline(never)]
fn syn_verdict(pkt: &Packet, limiter: Option<&LimiterCell>, config: &Config, now: u64) -> Verdict {
    if config.flags & config_flag::LIMIT_SYN != 0
        && let Some(state) = limiter
        && limits::over_source_syn(state, config, now)
    {
        return Verdict::new(Reason::SynFlood, true);
    }
    let cookies = config.flags & config_flag::SYN_COOKIES != 0;
    if !limits::over_global_syn(config, now) {
        if cookies {
            limits::syn_keepalive(pkt, now, true);
        }
        return Verdict::new(Reason::Allowed, false);
    }
    if !cookies {
        return Verdict::new(Reason::SynFlood, true);
    }
    if limits::syn_keepalive(pkt, now, false) {
        return Verdict::new(Reason::Allowed, false);
    }
    if syncookie::answerable(pkt) {
        Verdict::new(Reason::SynCookie, false)
    } else {
        Verdict::new(Reason::SynFlood, true)
    }
}

impl Verdict {
    /// `settings.default = "pass"` passes with reason `default`, not `port_closed`.
    #[inline(always)]
    fn default_named(mut self) -> Self {
        if !self.drop {
            self.reason = Reason::Default;
        }
        self
    }
}

/// The listed entry of a ports-array slot for this packet's destination: from the TO tries
/// where rules with `to` list the slot, else the slot's own; `None`: no rule applies.
#[inline(always)]
fn slot_entry(pkt: &Packet, index: u32) -> Option<PortEntry> {
    let mut entry = *PORTS.get(index)?;
    if entry.flags & port_flag::HAS_TO != 0 {
        let to = to_entry(pkt, index);
        if to.flags != 0 {
            entry = to;
        }
    }
    (entry.flags & port_flag::LISTED != 0).then_some(entry)
}

/// The TO tries' entry for (slot, destination); flags 0 where they hold none. Out of line:
/// only slots that rules with `to` list pay for it, and its key stays off the main
/// program's stack. A plain entry, not an `Option`: LLVM builds the `None` of one from a
/// register the verifier sees as uninitialised.
#[inline(never)]
pub fn to_entry(pkt: &Packet, index: u32) -> PortEntry {
    let slot = index.to_be_bytes();
    let found = if pkt.v6 {
        let key = ToKeyV6 {
            from_id: slot,
            addr: pkt.dst,
        };
        TO_V6.get(Key::new(32 + 128, key))
    } else {
        let key = ToKeyV4 {
            from_id: slot,
            addr: [pkt.dst[0], pkt.dst[1], pkt.dst[2], pkt.dst[3]],
        };
        TO_V4.get(Key::new(32 + 32, key))
    };
    match found {
        Some(entry) => *entry,
        None => PortEntry::default(),
    }
}

/// Is the source inside the rule's `from` set? Inlined: a call costs about 6 ns here.
#[inline(always)]
fn from_allows(pkt: &Packet, entry: &PortEntry) -> bool {
    let from_id = (entry.from_id as u32).to_be_bytes();
    if pkt.v6 {
        let key = FromKeyV6 {
            from_id,
            addr: pkt.src,
        };
        FROM_V6.get(Key::new(32 + 128, key)).is_some()
    } else {
        let key = FromKeyV4 {
            from_id,
            addr: [pkt.src[0], pkt.src[1], pkt.src[2], pkt.src[3]],
        };
        FROM_V4.get(Key::new(32 + 32, key)).is_some()
    }
}

/// Step 10: a reply to a connection this host opened and that is still fresh. The port's
/// time in the flow-ports array rules out most packets without touching the flow table.
#[inline(always)]
fn is_return(pkt: &Packet, config: &Config, index: u32) -> bool {
    let Some(port_seen) = FLOW_PORTS.get(index) else {
        return false;
    };
    let seen = port_seen.load();
    if seen == 0 {
        return false;
    }
    // The coarse clock lags the fine one, never leads it: it can only keep a lookup.
    let now = clock::coarse(config);
    if now > seen && now - seen >= flow_idle_ns(pkt.proto) + FLOW_PORT_SLACK_NS {
        return false;
    }
    fresh_flow(pkt, now, port_seen)
}

/// The flow-table lookup. A hit refreshes the flow, so an active connection never idles
/// out, and the port's time, at most once a second. On the coarse clock: a flow may
/// outlive its idle time by a clock tick (a few ms), and the packet costs one clock read.
/// Out of line although a call costs about 6 ns here: inlined, its key takes the main
/// program's stack and the combined stack past 512 bytes (6.1's verifier refuses it).
#[inline(never)]
fn fresh_flow(pkt: &Packet, now: u64, port_seen: &SharedU64) -> bool {
    let key = FlowKey::new(
        (pkt.dst, pkt.dport),
        (pkt.src, pkt.sport),
        pkt.proto,
        pkt.v6,
    );
    let Some(state) = FLOWS.get_ptr(key) else {
        return false;
    };
    // SAFETY: a pointer from a map lookup stays valid for the program run (the LRU map's
    // elements are preallocated and recycled, never freed, while the program holds the map);
    // the reference does not outlive this call. The word is a `SharedU64`: other CPUs may
    // write it meanwhile, an evicted and reused element included.
    let last_seen = unsafe { &(*state).last_seen_ns };
    let last = last_seen.load();
    if now > last && now - last >= flow_idle_ns(pkt.proto) {
        return false;
    }
    // Racing CPUs each store a recent time: any of them will do.
    last_seen.store(now);
    refresh_port(port_seen, now);
    true
}

#[inline(always)]
fn flow_idle_ns(proto: u8) -> u64 {
    if proto == ipproto::TCP {
        FLOW_IDLE_NS_TCP
    } else {
        FLOW_IDLE_NS_UDP
    }
}

/// Moves a port's time forward to `now` if it is more than a second behind. Racing CPUs
/// each store a recent time: any of them will do.
#[inline(always)]
pub fn refresh_port(port_seen: &SharedU64, now: u64) {
    if now > port_seen.load() + 1_000_000_000 {
        port_seen.store(now);
    }
}
