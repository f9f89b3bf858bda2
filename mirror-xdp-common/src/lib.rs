//! Types shared by the kernel programs (`mirror-xdp-ebpf`) and user space (`mirror-xdp`).
//!
//! Everything here is `#[repr(C)]` with explicit padding, so that a map key or value has the
//! same bytes on both sides. Multi-byte fields say their byte order in their doc comment.
#![no_std]

pub mod reason;

pub use reason::Reason;

/// Map names (the kernel keeps 15 characters). The `_v1` suffix is the layout version: a
/// change of a key or value layout gets a new name, so an old pin is never misread.
pub mod map_name {
    pub const CONFIG: &str = "mx_config_v1";
    pub const PORTS: &str = "mx_ports_v1";
    pub const SOURCES_V4: &str = "mx_src4_v1";
    pub const SOURCES_V6: &str = "mx_src6_v1";
    pub const FROM_V4: &str = "mx_from4_v1";
    pub const FROM_V6: &str = "mx_from6_v1";
    pub const FLOWS: &str = "mx_flows_v1";
    pub const STATS: &str = "mx_stats_v1";
    pub const PORT_STATS: &str = "mx_pstats_v1";
    /// Every map, for pinning and cleanup.
    pub const ALL: [&str; 9] = [
        CONFIG, PORTS, SOURCES_V4, SOURCES_V6, FROM_V4, FROM_V6, FLOWS, STATS, PORT_STATS,
    ];
}

/// Program names as the kernel objects call them.
pub mod program_name {
    pub const XDP: &str = "mirror_xdp";
    pub const EGRESS: &str = "mirror_egress";
}

/// Map sizes.
pub mod capacity {
    /// Two protocols (TCP, UDP) times 65536 ports.
    pub const PORTS: u32 = 2 * 65536;
    /// Source prefixes (allow and deny together), per address family.
    pub const SOURCES_V4: u32 = 1 << 20;
    pub const SOURCES_V6: u32 = 1 << 18;
    /// `from` prefixes of all port rules together, per address family.
    pub const FROM_V4: u32 = 1 << 18;
    pub const FROM_V6: u32 = 1 << 16;
    /// Connections this host opened, remembered for return traffic (LRU).
    pub const FLOWS: u32 = 1 << 16;
    /// Counter slots: one per (reason, dropped) pair.
    pub const STATS: u32 = 2 * crate::reason::COUNT as u32;
}

/// Index into the ports array: `proto_slot << 16 | port`.
pub const PROTO_SLOT_TCP: u32 = 0;
pub const PROTO_SLOT_UDP: u32 = 1;

#[inline(always)]
pub fn port_index(proto_slot: u32, port: u16) -> u32 {
    (proto_slot << 16) | port as u32
}

/// IP protocol numbers the programs care about.
pub mod ipproto {
    pub const HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const DSTOPTS: u8 = 60;
}

/// How many IPv6 extension headers the parser follows before it calls a packet malformed.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

/// A return-traffic flow idles out after this long without a packet (nanoseconds).
pub const FLOW_IDLE_NS_TCP: u64 = 3600 * 1_000_000_000;
pub const FLOW_IDLE_NS_UDP: u64 = 120 * 1_000_000_000;

/// The whole-program settings, one entry in the config array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `config_flag::*` bits.
    pub flags: u32,
}

pub mod config_flag {
    /// `settings.mode = "monitor"`: judge and count, pass everything.
    pub const MONITOR: u32 = 1 << 0;
    /// `settings.default = "pass"`.
    pub const DEFAULT_PASS: u32 = 1 << 1;
    /// `settings.icmp = "pass"`.
    pub const ICMP_PASS: u32 = 1 << 2;
    /// `settings.fragments = "pass"`.
    pub const FRAGMENTS_PASS: u32 = 1 << 3;
    /// `settings.other_protocols = "pass"`.
    pub const OTHER_PASS: u32 = 1 << 4;
    /// `settings.return_traffic = true`.
    pub const RETURN_TRAFFIC: u32 = 1 << 5;
    /// Set once the maps hold a whole policy; until then the program passes everything.
    pub const LOADED: u32 = 1 << 31;
}

/// One (protocol, port) slot of the ports array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortEntry {
    /// `port_flag::*` bits; 0 means no rule lists this port.
    pub flags: u16,
    /// With `port_flag::HAS_FROM`: the id of the rule's `from` set in the FROM tries.
    pub from_id: u16,
}

pub mod port_flag {
    /// A rule lists this port.
    pub const LISTED: u16 = 1 << 0;
    /// The rule has a `from` list: the source must match `from_id` in the FROM tries.
    pub const HAS_FROM: u16 = 1 << 1;
}

/// Value of the SOURCES tries: what the longest matching prefix (and every shorter prefix
/// that contains it, folded in by user space) says about a source.
pub mod source_flag {
    pub const TRUSTED: u32 = 1 << 0;
    pub const DENIED: u32 = 1 << 1;
}

/// LPM key of the FROM_V4 trie: `from_id` then the address, both network byte order.
/// The prefix length counts the 32 bits of `from_id` too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FromKeyV4 {
    /// Big-endian `from_id`.
    pub from_id: [u8; 4],
    pub addr: [u8; 4],
}

/// LPM key data of the FROM_V6 trie, like [`FromKeyV4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FromKeyV6 {
    pub from_id: [u8; 4],
    pub addr: [u8; 16],
}

/// A connection seen from this host: the key of the FLOWS map.
///
/// Addresses in network byte order; an IPv4 address fills the first 4 bytes, the rest zero.
/// Ports in network byte order as they stand in the packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: [u8; 2],
    pub remote_port: [u8; 2],
    /// `ipproto::TCP` or `ipproto::UDP`.
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 2],
}

impl FlowKey {
    /// The key of a flow between `local` and `remote` (addresses and ports as in the packet).
    #[inline(always)]
    pub fn new(
        local: ([u8; 16], [u8; 2]),
        remote: ([u8; 16], [u8; 2]),
        proto: u8,
        v6: bool,
    ) -> FlowKey {
        FlowKey {
            local_addr: local.0,
            remote_addr: remote.0,
            local_port: local.1,
            remote_port: remote.1,
            proto,
            family: if v6 { 6 } else { 4 },
            _pad: [0; 2],
        }
    }
}

/// Value of the FLOWS map: when the flow last saw a packet (`bpf_ktime_get_ns`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    pub last_seen_ns: u64,
}

/// A per-CPU counter slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Per-(protocol, port) counters, indexed like the ports array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounter {
    pub pass_packets: u64,
    pub drop_packets: u64,
}

/// Index of a counter slot in the STATS array.
#[inline(always)]
pub fn stats_index(reason: Reason, dropped: bool) -> u32 {
    (reason as u32) * 2 + dropped as u32
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: plain `#[repr(C)]` structs of integers and byte arrays with explicit padding.
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for PortEntry {}
    unsafe impl aya::Pod for FromKeyV4 {}
    unsafe impl aya::Pod for FromKeyV6 {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowState {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for PortCounter {}
}
