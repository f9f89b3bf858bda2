//! The BPF maps, shared by the XDP and egress programs. Names and layouts come from
//! `mirror-xdp-common`; user space pins them after loading. Values that several CPUs write
//! at once are atomics (see `cells`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray},
};
use mirror_xdp_common::{
    Config, Counter, FlowKey, FromKeyV4, FromKeyV6, LimiterKey, PortCounter, PortEntry,
    SourceEntry, SourceKeyV4, SourceKeyV6, ToKeyV4, ToKeyV6, capacity,
};

use crate::cells::{FlowCell, LimiterCell, LiveCell, SharedU64};

#[map(name = "mx_config_v3")]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

#[map(name = "mx_ports_v2")]
pub static PORTS: Array<PortEntry> = Array::with_max_entries(capacity::RULE_SLOTS, 0);

/// Preallocated (user space sizes it to the lists at load time): an update takes an entry
/// from a free list instead of allocating one, which makes filling a reload's tables
/// several times faster.
#[map(name = "mx_src4_v3")]
pub static SOURCES_V4: HashMap<SourceKeyV4, SourceEntry> =
    HashMap::with_max_entries(capacity::SOURCES_V4, 0);

/// The IPv4 lists flattened to a byte per /24 block: a directory of /16s, then a chunk per
/// /16 whose blocks differ (user space sizes it to the lists at load time).
#[map(name = "mx_blk4_v2")]
pub static BLOCKS_V4: Array<u64> =
    Array::with_max_entries(mirror_xdp_common::sources::BLOCK_DIRECTORY_WORDS_V4, 0);

#[map(name = "mx_src6_v5")]
pub static SOURCES_V6: HashMap<SourceKeyV6, SourceEntry> =
    HashMap::with_max_entries(capacity::SOURCES_V6, 0);

/// A bit per hashed IPv6 /32 and /48 that a listed prefix covers or lies in (user space
/// sizes it to the lists at load time).
#[map(name = "mx_blk6_v2")]
pub static BLOCKS_V6: Array<u64> = Array::with_max_entries(1, 0);

#[map(name = "mx_lallow4_v1")]
pub static LIVE_ALLOW_V4: LpmTrie<[u8; 4], LiveCell> = LpmTrie::with_max_entries(capacity::LIVE, 0);

#[map(name = "mx_lallow6_v1")]
pub static LIVE_ALLOW_V6: LpmTrie<[u8; 16], LiveCell> =
    LpmTrie::with_max_entries(capacity::LIVE, 0);

#[map(name = "mx_ldeny4_v1")]
pub static LIVE_DENY_V4: LpmTrie<[u8; 4], LiveCell> = LpmTrie::with_max_entries(capacity::LIVE, 0);

#[map(name = "mx_ldeny6_v1")]
pub static LIVE_DENY_V6: LpmTrie<[u8; 16], LiveCell> = LpmTrie::with_max_entries(capacity::LIVE, 0);

/// A bit per IPv4 /24 block that a live entry covers or lies in. User space rewrites
/// words while the program reads them.
#[map(name = "mx_lblk4_v1")]
pub static LIVE_BLOCKS_V4: Array<SharedU64> =
    Array::with_max_entries(mirror_xdp_common::sources::LIVE_BLOCK_WORDS_V4, 0);

/// A bit per hashed IPv6 /48 that a live entry covers or lies in.
#[map(name = "mx_lblk6_v1")]
pub static LIVE_BLOCKS_V6: Array<SharedU64> =
    Array::with_max_entries(mirror_xdp_common::sources::LIVE_BLOCK_WORDS_V6, 0);

#[map(name = "mx_from4_v1")]
pub static FROM_V4: LpmTrie<FromKeyV4, u32> = LpmTrie::with_max_entries(capacity::FROM_V4, 0);

#[map(name = "mx_from6_v1")]
pub static FROM_V6: LpmTrie<FromKeyV6, u32> = LpmTrie::with_max_entries(capacity::FROM_V6, 0);

/// Rules with `to`: keyed by (ports-array index, destination), their slot's entry there.
#[map(name = "mx_to4_v1")]
pub static TO_V4: LpmTrie<ToKeyV4, PortEntry> = LpmTrie::with_max_entries(capacity::TO_V4, 0);

#[map(name = "mx_to6_v1")]
pub static TO_V6: LpmTrie<ToKeyV6, PortEntry> = LpmTrie::with_max_entries(capacity::TO_V6, 0);

/// `[[egress.ports]]`: the slot's entry per (protocol, destination port); sized to one
/// entry by user space when `[egress]` does not drop.
#[map(name = "mx_eports_v1")]
pub static EGRESS_PORTS: Array<PortEntry> = Array::with_max_entries(capacity::EGRESS_PORTS, 0);

/// Packets and bytes the egress program dropped (in monitor mode: would have), per CPU.
#[map(name = "mx_egstats_v1")]
pub static EGRESS_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "mx_flows_v1")]
pub static FLOWS: LruHashMap<FlowKey, FlowCell> = LruHashMap::with_max_entries(capacity::FLOWS, 0);

/// Per (protocol, local port): a recent flow's time, so most packets skip the flow table.
#[map(name = "mx_fports_v1")]
pub static FLOW_PORTS: Array<SharedU64> = Array::with_max_entries(capacity::PORTS, 0);

#[map(name = "mx_limits_v1")]
pub static LIMITS: LruHashMap<LimiterKey, LimiterCell> =
    LruHashMap::with_max_entries(capacity::LIMITS, 0);

/// Limiter entries created, per CPU (evictions = created - present). Per-CPU maps are
/// written without atomics: only their CPU's program run touches a slot.
#[map(name = "mx_limnew_v1")]
pub static LIMITER_NEW: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The global SYN budget: one GCRA state per CPU.
#[map(name = "mx_gsyn_v1")]
pub static GLOBAL_SYN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map(name = "mx_stats_v1")]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(capacity::STATS, 0);

#[map(name = "mx_pstats_v1")]
pub static PORT_STATS: PerCpuArray<PortCounter> = PerCpuArray::with_max_entries(capacity::PORTS, 0);

/// Per IP protocol, like `PORT_STATS` for the `[[protocols]]` rules.
#[map(name = "mx_prstats_v1")]
pub static PROTOCOL_STATS: PerCpuArray<PortCounter> =
    PerCpuArray::with_max_entries(capacity::PROTOCOLS, 0);

/// When a SYN last went to the kernel, per (family, TCP port): the SYN cookie keepalive.
#[map(name = "mx_synka_v1")]
pub static SYN_KEEPALIVE: Array<SharedU64> = Array::with_max_entries(capacity::SYN_KEEPALIVE, 0);
