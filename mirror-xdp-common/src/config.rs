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
    /// With `SYN_COOKIES`: the TCP options a cookie SYN-ACK may carry (`cookie_option::*`),
    /// those the host's sysctls let the kernel restore from the client's ACK.
    pub cookie_options: u8,
    /// The window scale the kernel gives a connection it makes from a cookie, which the
    /// cookie SYN-ACK must announce (see `cookie_option::WINDOW_SCALE`).
    pub cookie_wscale: u8,
    pub _pad: [u8; 6],
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
    /// `[egress] default = "drop"`: the egress program drops the connections this host
    /// opens unless an egress rule lists them.
    pub const EGRESS_DROP: u32 = 1 << 15;
    /// Set once the maps hold a whole policy; until then the program passes everything.
    pub const LOADED: u32 = 1 << 31;
}

/// The TCP options a SYN cookie SYN-ACK may carry besides the MSS. The kernel's timestamp
/// cookies: the SYN-ACK's timestamp holds, in its low 6 bits, the client's window scale
/// (0xF: none), SACK-permitted and ECN, which the kernel reads back from the ACK's echo.
/// Each needs its sysctl on when the ACK arrives, or the kernel refuses the cookie.
pub mod cookie_option {
    /// `net.ipv4.tcp_timestamps = 2` (timestamps without a per-connection offset, which
    /// a cookie cannot know): answer a SYN with timestamps with a timestamp cookie.
    pub const TIMESTAMPS: u8 = 1 << 0;
    /// `net.ipv4.tcp_window_scaling` is on.
    pub const WINDOW_SCALE: u8 = 1 << 1;
    /// `net.ipv4.tcp_sack` is on.
    pub const SACK: u8 = 1 << 2;
    /// `net.ipv4.tcp_ecn` is not 0.
    pub const ECN: u8 = 1 << 3;
}

/// The timestamp cookie's low bits (the kernel's `TSBITS`, `TS_OPT_*`).
pub mod timestamp_cookie {
    pub const BITS: u32 = 6;
    pub const WSCALE_MASK: u32 = 0xF;
    pub const SACK: u32 = 1 << 4;
    pub const ECN: u32 = 1 << 5;
    /// The largest window scale TCP allows (RFC 7323); the kernel clamps a larger one.
    pub const MAX_WSCALE: u8 = 14;
}
