//! Types shared by the kernel programs (`mirror-xdp-ebpf`) and user space (`mirror-xdp`).
//!
//! Everything here is `#[repr(C)]` with explicit padding, so that a map key or value has the
//! same bytes on both sides. Multi-byte fields say their byte order in their doc comment.
#![cfg_attr(not(test), no_std)]

pub mod config;
pub mod counters;
pub mod events;
pub mod flows;
pub mod limits;
pub mod ports;
pub mod reason;
pub mod sources;
pub mod trace;
pub mod wire;

pub use config::{Config, config_flag, cookie_option, timestamp_cookie};
pub use counters::{Counter, PortCounter, stats_index};
pub use events::{DropBucket, DropEvent, drop_event_flag};
pub use flows::{FlowKey, FlowState};
pub use limits::{LimiterKey, LimiterState};
pub use ports::{
    FromKeyV4, FromKeyV6, PROTO_SLOT_EGRESS, PROTO_SLOT_OTHER, PROTO_SLOT_TCP, PROTO_SLOT_UDP,
    PortEntry, ToKeyV4, ToKeyV6, egress_index, port_flag, port_index, protocol_index,
};
pub use reason::Reason;
pub use sources::{LiveEntry, SourceEntry, SourceKeyV4, SourceKeyV6, source_flag};
pub use trace::{TraceBucket, TraceEvent, TraceFilter, trace_flag};
pub use wire::{MAX_IPV6_EXT_HEADERS, ipproto, tcp_flag, tcp_option};

/// Map names (the kernel keeps 15 characters). The `_vN` suffix is the layout version: a
/// change of a key or value layout gets a new name, so an old pin is never misread.
pub mod map_name {
    pub const CONFIG: &str = "mx_config_v3";
    /// TCP and UDP ports, then the other IP protocols (`capacity::RULE_SLOTS`).
    pub const PORTS: &str = "mx_ports_v2";
    pub const SOURCES_V4: &str = "mx_src4_v3";
    pub const BLOCKS_V4: &str = "mx_blk4_v2";
    pub const SOURCES_V6: &str = "mx_src6_v5";
    /// A bit per hashed IPv6 /32 and /48 near a listed prefix (`sources::BLOCK_HALF_BITS_V6`).
    pub const BLOCKS_V6: &str = "mx_blk6_v2";
    pub const LIVE_ALLOW_V4: &str = "mx_lallow4_v1";
    pub const LIVE_ALLOW_V6: &str = "mx_lallow6_v1";
    pub const LIVE_DENY_V4: &str = "mx_ldeny4_v1";
    pub const LIVE_DENY_V6: &str = "mx_ldeny6_v1";
    /// A bit per IPv4 /24 block near a live entry (see `sources::LIVE_BLOCK_WORDS_V4`).
    pub const LIVE_BLOCKS_V4: &str = "mx_lblk4_v1";
    /// A bit per hashed IPv6 /48 near a live entry (`sources::LIVE_BLOCK_WORDS_V6`).
    pub const LIVE_BLOCKS_V6: &str = "mx_lblk6_v1";
    pub const FROM_V4: &str = "mx_from4_v1";
    pub const FROM_V6: &str = "mx_from6_v1";
    /// Rules with `to`: (ports-array index, destination prefix) to the slot's entry there.
    pub const TO_V4: &str = "mx_to4_v1";
    pub const TO_V6: &str = "mx_to6_v1";
    /// `[[egress.ports]]`: per (protocol, destination port), indexed like the ports array.
    pub const EGRESS_PORTS: &str = "mx_eports_v1";
    /// Per CPU: the packets the egress program dropped (`egress_denied`).
    pub const EGRESS_STATS: &str = "mx_egstats_v1";
    pub const FLOWS: &str = "mx_flows_v1";
    /// Per (protocol, local port): when a flow on it was last seen (see `flows`).
    pub const FLOW_PORTS: &str = "mx_fports_v1";
    pub const LIMITS: &str = "mx_limits_v1";
    /// Per CPU: limiter entries created (a new source); less the entries present, the
    /// sources the full table evicted.
    pub const LIMITER_NEW: &str = "mx_limnew_v1";
    pub const GLOBAL_SYN: &str = "mx_gsyn_v1";
    pub const STATS: &str = "mx_stats_v1";
    pub const PORT_STATS: &str = "mx_pstats_v1";
    /// Per IP protocol listed by `[[protocols]]`: packets passed and dropped by its rule.
    pub const PROTOCOL_STATS: &str = "mx_prstats_v1";
    pub const SYN_KEEPALIVE: &str = "mx_synka_v1";
    /// Sampled drop events (ring buffer) and the per-CPU bucket that rate-limits them.
    pub const DROPS: &str = "mx_drops_v1";
    pub const DROP_BUCKET: &str = "mx_dropsb_v2";
    /// `mirror-xdp trace`: its filter, its records (ring buffer) and its per-CPU bucket.
    pub const TRACE_FILTER: &str = "mx_tracef_v1";
    pub const TRACE: &str = "mx_trace_v1";
    pub const TRACE_BUCKET: &str = "mx_traceb_v1";
    /// The maps that hold one policy: each reload fills a new set (a generation) and swaps
    /// the program that reads them. The others (counters, flows, limiter state, live
    /// entries) are shared by every generation.
    pub const PER_GENERATION: [&str; 11] = [
        CONFIG,
        PORTS,
        SOURCES_V4,
        BLOCKS_V4,
        SOURCES_V6,
        BLOCKS_V6,
        FROM_V4,
        FROM_V6,
        TO_V4,
        TO_V6,
        EGRESS_PORTS,
    ];
    /// Every map, for pinning and cleanup.
    pub const ALL: [&str; 32] = [
        CONFIG,
        PORTS,
        SOURCES_V4,
        BLOCKS_V4,
        SOURCES_V6,
        BLOCKS_V6,
        LIVE_ALLOW_V4,
        LIVE_ALLOW_V6,
        LIVE_DENY_V4,
        LIVE_DENY_V6,
        LIVE_BLOCKS_V4,
        LIVE_BLOCKS_V6,
        FROM_V4,
        FROM_V6,
        TO_V4,
        TO_V6,
        EGRESS_PORTS,
        FLOWS,
        FLOW_PORTS,
        LIMITS,
        LIMITER_NEW,
        GLOBAL_SYN,
        STATS,
        PORT_STATS,
        PROTOCOL_STATS,
        EGRESS_STATS,
        SYN_KEEPALIVE,
        DROPS,
        DROP_BUCKET,
        TRACE_FILTER,
        TRACE,
        TRACE_BUCKET,
    ];
}

/// Program names as the kernel objects call them.
pub mod program_name {
    pub const XDP: &str = "mirror_xdp";
    pub const EGRESS: &str = "mirror_egress";
}

/// Map sizes. The source tables and the limiter table can be resized at load time.
pub mod capacity {
    /// Two protocols (TCP, UDP) times 65536 ports.
    pub const PORTS: u32 = 2 * 65536;
    /// The ports array: the port slots, then one per IP protocol (`protocol_index`).
    pub const RULE_SLOTS: u32 = PORTS + PROTOCOLS;
    /// IP protocol numbers.
    pub const PROTOCOLS: u32 = 256;
    /// Tier entries of the static source lists, per address family: the compiled default
    /// only; every load sizes the (preallocated) tables to the lists.
    pub const SOURCES_V4: u32 = 4 << 20;
    pub const SOURCES_V6: u32 = 1 << 20;
    /// Live (CLI) source entries, per family and kind.
    pub const LIVE: u32 = 1 << 17;
    /// `from` prefixes of all port rules together, per address family.
    pub const FROM_V4: u32 = 1 << 18;
    pub const FROM_V6: u32 = 1 << 16;
    /// Entries of the destination tries: one per (port or protocol, `to` prefix) of the
    /// rules with `to`, per address family.
    pub const TO_V4: u32 = 1 << 18;
    pub const TO_V6: u32 = 1 << 18;
    /// Connections this host opened, remembered for return traffic (LRU).
    pub const FLOWS: u32 = 1 << 16;
    /// Sources tracked by the per-source limits (LRU), unless `attach --limiter-entries`
    /// says otherwise: about 7 MiB. A source that keeps sending keeps its entry; it is
    /// forgotten only when this many other sources come between two of its packets.
    pub const LIMITS: u32 = 1 << 16;
    /// Counter slots: one per (reason, dropped) pair of the reasons the XDP program gives
    /// (`egress_denied`, the egress program's, has a map of its own).
    pub const STATS: u32 = 2 * crate::reason::XDP_COUNT as u32;
    /// The egress rules' array: TCP and UDP ports, when `[egress]` drops; else user space
    /// makes it one entry.
    pub const EGRESS_PORTS: u32 = 2 * 65536;
    /// When a SYN last went to the kernel, per (address family, TCP port): separate IPv4
    /// and IPv6 listeners each need their own (see `syn_keepalive_index`).
    pub const SYN_KEEPALIVE: u32 = 2 * 65536;
}

/// The sizes of every map key and value, pinned: a size change is a layout change, which
/// needs a new `_vN` map name (see [`map_name`]) before the size here is updated. The test
/// `mirror-xdp/tests/object_maps.rs` checks the compiled object against these types.
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<Config>() == 80);
    assert!(size_of::<PortEntry>() == 4);
    assert!(size_of::<FromKeyV4>() == 8);
    assert!(size_of::<FromKeyV6>() == 20);
    assert!(size_of::<SourceKeyV4>() == 8);
    assert!(size_of::<SourceKeyV6>() == 20);
    assert!(size_of::<SourceEntry>() == 4);
    assert!(size_of::<LiveEntry>() == 16);
    assert!(size_of::<FlowKey>() == 40);
    assert!(size_of::<FlowState>() == 8);
    assert!(size_of::<LimiterKey>() == 20);
    assert!(size_of::<LimiterState>() == 24);
    assert!(size_of::<Counter>() == 16);
    assert!(size_of::<PortCounter>() == 16);
    assert!(size_of::<DropEvent>() == 32);
    assert!(size_of::<DropBucket>() == 16);
    assert!(size_of::<TraceFilter>() == 64);
    assert!(size_of::<TraceEvent>() == 56);
    assert!(size_of::<TraceBucket>() == 16);
};

/// User space reads and writes the map keys and values as plain bytes.
#[cfg(feature = "user")]
mod pod {
    use super::*;

    macro_rules! pod {
        ($($t:ty),* $(,)?) => {$(
            // SAFETY: each type given is a `#[repr(C)]` struct of integers and byte arrays
            // with explicit padding fields: no padding bytes, and every bit pattern is valid.
            unsafe impl aya::Pod for $t {}
        )*};
    }

    pod!(
        Config,
        PortEntry,
        FromKeyV4,
        FromKeyV6,
        SourceKeyV4,
        SourceKeyV6,
        SourceEntry,
        LiveEntry,
        FlowKey,
        FlowState,
        LimiterKey,
        LimiterState,
        Counter,
        PortCounter,
        DropEvent,
        TraceFilter,
        TraceEvent,
        TraceBucket,
    );
}
