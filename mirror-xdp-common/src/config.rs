//! The whole-program settings: one entry in the config array.

/// Settings and precomputed limit parameters. Limits use GCRA (a token bucket kept as one
/// "theoretical arrival time"): a packet conforms when `max(tat, now) - now <= tolerance`,
/// and then moves `tat` on by `interval`. `interval = 1e9 / rate`,
/// `tolerance = (burst - 1) * interval`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `config_flag::*` bits.
    pub flags: u32,
    /// Per-source limits count per prefix of this length (IPv4 and IPv6).
    pub prefix_v4: u8,
    pub prefix_v6: u8,
    /// The IPv6 source walk's first tier (0: no static IPv6 lists); see `sources`.
    pub first_tier_v6: u8,
    /// The IPv6 list bitmap's halves have `2^blocks_v6_half_bits` bits (see `sources`).
    pub blocks_v6_half_bits: u8,
    /// When non-zero the programs read the time here instead of `bpf_ktime_get_ns`:
    /// deterministic tests through BPF_PROG_TEST_RUN. Always 0 in production.
    pub clock_override_ns: u64,
    pub pps_interval_ns: u64,
    pub pps_tolerance_ns: u64,
    pub syn_interval_ns: u64,
    pub syn_tolerance_ns: u64,
    /// The global SYN budget, split evenly over the CPUs (each has its own bucket).
    pub global_syn_interval_ns: u64,
    pub global_syn_tolerance_ns: u64,
    /// How long a source that went over a per-source limit stays banned; 0: no bans.
    pub ban_ns: u64,
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
    /// `limits.per_source_pps` is on.
    pub const LIMIT_PPS: u32 = 1 << 6;
    /// `limits.per_source_syn_rate` is on.
    pub const LIMIT_SYN: u32 = 1 << 7;
    /// `limits.global_syn_rate` is on.
    pub const LIMIT_GLOBAL_SYN: u32 = 1 << 8;
    /// The static source tables hold entries (skip the lookups when they are empty).
    pub const HAS_SOURCES_V4: u32 = 1 << 9;
    pub const HAS_SOURCES_V6: u32 = 1 << 10;
    /// The live source tables hold entries.
    pub const HAS_LIVE_ALLOW: u32 = 1 << 11;
    pub const HAS_LIVE_DENY: u32 = 1 << 12;
    /// `limits.syn_cookies = true`: SYNs over the global budget get a SYN cookie SYN-ACK
    /// (XDP_TX) instead of a drop.
    pub const SYN_COOKIES: u32 = 1 << 13;
    /// The IPv4 block array is flat, a byte per /24 (a list that touches most /16s), not
    /// a directory and chunks (see `sources::BLOCK_DIRECTORY_WORDS_V4`).
    pub const BLOCKS_FLAT_V4: u32 = 1 << 14;
    /// Set once the maps hold a whole policy; until then the program passes everything.
    pub const LOADED: u32 = 1 << 31;
}
