//! Per-source limiter state: one entry per source prefix in an LRU hash.

/// Key of the LIMITS map: the source masked to `prefix_v4`/`prefix_v6` (network byte order;
/// IPv4 in the first 4 bytes), and the family.
// Aligned so that the programs copy its addresses in words, not bytes.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LimiterKey {
    pub addr: [u8; 16],
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 3],
}

/// GCRA state of one source (see [`crate::Config`]); times are `CLOCK_MONOTONIC` ns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimiterState {
    pub pps_tat_ns: u64,
    pub syn_tat_ns: u64,
    /// The source is banned until then.
    pub banned_until_ns: u64,
}

/// The limiter key address of a source: masked to `prefix_v4` (IPv4, first 4 bytes) or
/// `prefix_v6` bits, so a prefix of sources shares one bucket.
#[inline(always)]
pub fn limiter_addr(src: [u8; 16], v6: bool, prefix_v4: u8, prefix_v6: u8) -> [u8; 16] {
    let (len, bytes) = if v6 {
        (prefix_v6 as u32, 16)
    } else {
        (prefix_v4 as u32, 4)
    };
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        if i < bytes {
            let bit = i as u32 * 8;
            let mask: u8 = if len >= bit + 8 {
                0xFF
            } else if len <= bit {
                0
            } else {
                0xFFu8 << (8 - (len - bit))
            };
            out[i] = src[i] & mask;
        }
        i += 1;
    }
    out
}

/// With `syn_cookies`, the kernel validates a cookie ACK only if its listener itself issued a
/// cookie in the last two minutes (`tcp_synq_no_recent_overflow`); with `tcp_syncookies=2`
/// every SYN it sees counts. So one SYN per (family, port) goes to the kernel at least this
/// often, budget or not: a quarter of the kernel's window, to spare for a lost SYN.
pub const SYN_KEEPALIVE_NS: u64 = 30_000_000_000;

/// Index of a (family, TCP port) in the SYN keepalive array: IPv4 first, then IPv6.
#[inline(always)]
pub fn syn_keepalive_index(v6: bool, port: u16) -> u32 {
    ((v6 as u32) << 16) | port as u32
}
