//! Steps 3 and 4: is the source trusted or denied? Static lists through the tiered hashes,
//! live (CLI) entries through their tries, live deny entries only until they expire.

use aya_ebpf::maps::lpm_trie::Key;
use mirror_xdp_common::{
    Config, SourceEntry, SourceKeyV4, SourceKeyV6, config_flag, source_flag,
    sources::{
        BLOCK_CHUNKED, BLOCK_DEEPER, TIER_STEPS_V6, block_bits_v6, chunk_position,
        directory_position, flat_position, live_block_bit, live_block_bit_v6, mask_v4,
        mask_v6_bytes,
    },
};

use crate::{
    maps::{
        BLOCKS_V4, BLOCKS_V6, LIVE_ALLOW_V4, LIVE_ALLOW_V6, LIVE_BLOCKS_V4, LIVE_BLOCKS_V6,
        LIVE_DENY_V4, LIVE_DENY_V6, SOURCES_V4, SOURCES_V6,
    },
    parse::Packet,
};

/// The `source_flag` bits that apply to the packet's source.
#[inline(always)]
pub fn source_flags(pkt: &Packet, config: &Config) -> u8 {
    let mut flags = if pkt.v6 {
        if config.flags & config_flag::HAS_SOURCES_V6 != 0 {
            static_v6(&pkt.src, config)
        } else {
            0
        }
    } else if config.flags & config_flag::HAS_SOURCES_V4 != 0 {
        static_v4(v4(pkt.src), config)
    } else {
        0
    };
    const LIVE: u32 = config_flag::HAS_LIVE_ALLOW | config_flag::HAS_LIVE_DENY;
    if config.flags & LIVE == 0 || !near_live(pkt) {
        return flags;
    }
    if config.flags & config_flag::HAS_LIVE_ALLOW != 0 && live_allowed(pkt) {
        flags |= source_flag::TRUSTED;
    }
    if flags & source_flag::TRUSTED == 0
        && config.flags & config_flag::HAS_LIVE_DENY != 0
        && live_denied(pkt, config)
    {
        flags |= source_flag::DENIED;
    }
    flags
}

#[inline(always)]
fn v4(src: [u8; 16]) -> [u8; 4] {
    [src[0], src[1], src[2], src[3]]
}

/// The /24 block's byte, from the flat block array or through the two-level one (the
/// /16's directory entry, and its chunk if the /16's blocks differ), and the /32 hash entry
/// when the block says there are host entries inside it: at most two array reads and one
/// hash lookup.
#[inline(always)]
fn static_v4(addr: [u8; 4], config: &Config) -> u8 {
    let host = u32::from_be_bytes(addr);
    let flat = config.flags & config_flag::BLOCKS_FLAT_V4 != 0;
    let (word, shift) = if flat {
        flat_position(host)
    } else {
        directory_position(host)
    };
    let Some(word) = BLOCKS_V4.get(word) else {
        return 0;
    };
    let entry = (*word >> shift) as u32;
    let block = if flat || entry & BLOCK_CHUNKED == 0 {
        entry as u8
    } else {
        let (word, shift) = chunk_position(entry & !BLOCK_CHUNKED, host);
        match BLOCKS_V4.get(word) {
            Some(word) => (*word >> shift) as u8,
            None => return 0,
        }
    };
    if block & BLOCK_DEEPER == 0 {
        return block;
    }
    match tier_v4(addr, 32) {
        Some(entry) => entry.flags,
        None => block & !BLOCK_DEEPER,
    }
}

/// No flags if the address's /32 and /48 bits are clear (most sources); else follows the
/// path-compressed tiers from the first: the last hit's flags, stopping at a miss or where
/// nothing longer is listed. Each step goes to a longer tier, so there are at most as many
/// as tiers.
#[inline(always)]
fn static_v6(addr: &[u8; 16], config: &Config) -> u8 {
    let listed_near = |(word, bit): (u32, u32)| match BLOCKS_V6.get(word) {
        Some(word) => *word >> bit & 1 != 0,
        None => false,
    };
    let [slash32, slash48] = block_bits_v6(addr, config.blocks_v6_half_bits as u32);
    if !listed_near(slash32) && !listed_near(slash48) {
        return 0;
    }
    let mut flags = 0;
    let mut tier = config.first_tier_v6 as u32;
    for _ in 0..TIER_STEPS_V6 {
        if tier == 0 {
            break;
        }
        match tier_v6(addr, tier) {
            None => break,
            Some(entry) => {
                flags = entry.flags;
                tier = entry.next as u32;
            }
        }
    }
    flags
}

// Inlined: its one call would cost the packet about 6 ns here (docs/benchmarks.md).
#[inline(always)]
fn tier_v4(addr: [u8; 4], tier: u32) -> Option<SourceEntry> {
    let key = SourceKeyV4 {
        tier,
        addr: mask_v4(addr, tier),
    };
    // SAFETY: the value is copied out at once; only user space writes these entries, and
    // it fills a new generation's table before the program that reads it is attached.
    unsafe { SOURCES_V4.get(key) }.copied()
}

// Out of line: one small stack frame reused by every tier, not one slot per unrolled step.
#[inline(never)]
fn tier_v6(addr: &[u8; 16], tier: u32) -> Option<SourceEntry> {
    let key = SourceKeyV6 {
        tier,
        addr: mask_v6_bytes(*addr, tier),
    };
    // SAFETY: as in `tier_v4`.
    unsafe { SOURCES_V6.get(key) }.copied()
}

/// Is the source's /24 block (IPv4) or /48 (IPv6) near a live entry? No for most sources.
/// One function per map: a lookup call that serves two maps leaves the verifier a map
/// pointer it cannot inline the lookup for. Both inlined: out of line, the call cost every
/// packet about 13 ns while live entries exist.
#[inline(always)]
fn near_live(pkt: &Packet) -> bool {
    if pkt.v6 {
        near_live_v6(&pkt.src)
    } else {
        near_live_v4(v4(pkt.src))
    }
}

#[inline(always)]
fn near_live_v4(addr: [u8; 4]) -> bool {
    let (word, bit) = live_block_bit(u32::from_be_bytes(addr));
    match LIVE_BLOCKS_V4.get(word) {
        Some(word) => word.load() >> bit & 1 != 0,
        None => false,
    }
}

#[inline(always)]
fn near_live_v6(addr: &[u8; 16]) -> bool {
    let (word, bit) = live_block_bit_v6(addr);
    match LIVE_BLOCKS_V6.get(word) {
        Some(word) => word.load() >> bit & 1 != 0,
        None => false,
    }
}

// Inlined, as `live_denied`: a call costs about 6 ns here (docs/benchmarks.md).
#[inline(always)]
fn live_allowed(pkt: &Packet) -> bool {
    let entry = if pkt.v6 {
        LIVE_ALLOW_V6.get(Key::new(128, pkt.src))
    } else {
        LIVE_ALLOW_V4.get(Key::new(32, v4(pkt.src)))
    };
    match entry {
        Some(entry) => {
            entry.count_hit();
            true
        }
        None => false,
    }
}

/// The clock is read only on a match: most packets match no live entry.
#[inline(always)]
fn live_denied(pkt: &Packet, config: &Config) -> bool {
    let entry = if pkt.v6 {
        LIVE_DENY_V6.get(Key::new(128, pkt.src))
    } else {
        LIVE_DENY_V4.get(Key::new(32, v4(pkt.src)))
    };
    match entry {
        Some(entry) if crate::clock::now(config) < entry.expires_ns() => {
            entry.count_hit();
            true
        }
        _ => false,
    }
}
