//! The source lists: static (policy) lists as tiered exact-match hashes, live (CLI) entries
//! as small longest-prefix tries.
//!
//! A static prefix of length L is stored, expanded, at the next tier: IPv4 tiers are every
//! 8 bits, IPv6 tiers every 4 ([`TIER_STRIDE_V6`]), so a prefix is an entry per block of
//! the tier's length inside it. Each entry holds the flags of every listed prefix that
//! contains its block, and names the tier to probe next (0: nothing longer lies inside). A
//! lookup starts at the first tier and follows `next` until a miss or a 0: a few hash
//! lookups however long the list, where a kernel LPM trie slows down as it grows.
//!
//! IPv6 tiers are path-compressed: `next` skips every tier where nothing under the entry
//! changes the flags, and the walk starts at the shortest tier that holds anything
//! ([`Config::first_tier_v6`](crate::Config)). A list of /32 to /128 prefixes costs a
//! packet from outside them one lookup, at tier 32, instead of a walk down from tier 4.

/// Prefix lengths of the tiers. For IPv4, user space flattens tiers 8 to 24 into a
/// two-level array with a byte per /24 block (see [`BLOCK_DIRECTORY_WORDS_V4`]); only tier
/// 32 stays a hash.
pub const TIERS_V4: [u32; 4] = [8, 16, 24, 32];

/// The IPv4 block array (one `u64` array map) starts with a directory: a `u32` per /16, two
/// to a word (an array map pads every value to 8 bytes). An entry without
/// [`BLOCK_CHUNKED`] is the byte of every /24 block of its /16 (most /16s: nothing listed,
/// or all of it). With it, its low bits number a chunk after the directory:
/// [`BLOCK_CHUNK_WORDS_V4`] words, a byte per /24 block of the /16. Two array reads, and
/// memory for the /16s whose blocks differ only (256 KiB plus 256 bytes a chunk, where a
/// byte per /24 for all of them would be 16 MiB).
pub const BLOCK_DIRECTORY_WORDS_V4: u32 = 1 << 15;

/// Words of the flat IPv4 block array ([`crate::config_flag::BLOCKS_FLAT_V4`]): a byte per
/// /24 block, 16 MiB. For a list whose chunks would take half of that or more (a list of
/// 100,000 random prefixes touches most /16s), one array read beats the directory's two.
pub const BLOCK_FLAT_WORDS_V4: u32 = 1 << 21;

/// Word index and bit shift of the byte of the /24 block holding `addr` (host order) in the
/// flat block array.
#[inline(always)]
pub fn flat_position(addr: u32) -> (u32, u32) {
    let block = addr >> 8;
    (block >> 3, (block & 7) * 8)
}

/// Words of a chunk: 256 one-byte /24 blocks, eight to a word.
pub const BLOCK_CHUNK_WORDS_V4: u32 = 32;

/// In a directory entry: the /16's blocks differ, and the other bits number its chunk.
pub const BLOCK_CHUNKED: u32 = 1 << 31;

/// In a /24 block's byte: set when /32 entries lie inside the block (look in the hash);
/// the low bits are the block's `source_flag` bits.
pub const BLOCK_DEEPER: u8 = 0x80;

/// Word index and bit shift of the directory entry of the /16 holding `addr` (host order).
#[inline(always)]
pub fn directory_position(addr: u32) -> (u32, u32) {
    let slash16 = addr >> 16;
    (slash16 >> 1, (slash16 & 1) * 32)
}

/// Word index and bit shift of the byte of the /24 block holding `addr` (host order) in
/// chunk `chunk`.
#[inline(always)]
pub fn chunk_position(chunk: u32, addr: u32) -> (u32, u32) {
    let block = (addr >> 8) & 0xFF;
    (
        BLOCK_DIRECTORY_WORDS_V4
            .wrapping_add(chunk.wrapping_mul(BLOCK_CHUNK_WORDS_V4))
            .wrapping_add(block >> 3),
        (block & 7) * 8,
    )
}

/// The IPv6 list bitmap (when there is an IPv6 list) has two halves of `2^half_bits` bits
/// each ([`Config::blocks_v6_half_bits`](crate::Config), sized to the list): a bit per
/// hashed /32 that a listed prefix of /40 or shorter covers or lies in, and a bit per hashed
/// /48 that a longer prefix covers or lies in. An IPv6 packet whose two bits are clear is in no
/// listed prefix: two array reads instead of a hash lookup (about 30 ns). Two
/// granularities, so that neither a listed /32 (65,536 /48s) nor a listed /48 inside a busy
/// /32 (every client of that /32) makes the bitmap useless.
pub const BLOCK_HALF_BITS_V6: core::ops::RangeInclusive<u8> = 12..=23;

/// Word index and bit, in the IPv6 list bitmap of halves of `2^half_bits` bits, of the /32
/// and of the /48 holding `addr`.
#[inline(always)]
pub fn block_bits_v6(addr: &[u8; 16], half_bits: u32) -> [(u32, u32); 2] {
    let top = u64::from_be_bytes([addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], 0, 0]);
    [
        slash32_bit(top >> 32, half_bits),
        slash48_bit(top >> 16, half_bits),
    ]
}

/// Fibonacci hashing of `value` to `bits` bits (1 to 63).
#[inline(always)]
fn fib_hash(value: u64, bits: u32) -> u64 {
    value.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)
}

/// The bit of a /32 given as its 32 bits, in the first half.
#[inline(always)]
pub fn slash32_bit(slash32: u64, half_bits: u32) -> (u32, u32) {
    let index = fib_hash(slash32, half_bits) as u32;
    (index >> 6, index & 63)
}

/// The bit of a /48 given as its 48 bits, in the second half.
#[inline(always)]
pub fn slash48_bit(slash48: u64, half_bits: u32) -> (u32, u32) {
    let index = fib_hash(slash48, half_bits) as u32;
    ((1u32 << half_bits >> 6) + (index >> 6), index & 63)
}

/// Words of the live IPv4 block bitmap: a bit per /24 block, set when a live entry (allow
/// or deny) covers the block or lies inside it; 64 blocks a word, 2 MiB in all. An IPv4
/// packet whose block bit is clear skips the live tries: one array read instead of two
/// trie lookups (tens of ns each) for the sources no live entry is near.
pub const LIVE_BLOCK_WORDS_V4: u32 = 1 << 18;

/// Word index and bit of the /24 block holding `addr` (host order) in the live bitmap.
#[inline(always)]
pub fn live_block_bit(addr: u32) -> (u32, u32) {
    let block = addr >> 8;
    (block >> 6, block & 63)
}

/// The IPv6 counterpart: a bit per /48, hashed to [`LIVE_BLOCK_WORDS_V4`] * 64 bits (a /48
/// is what a site gets; live entries are mostly /48 to /128). Set for the /48s a live
/// entry covers or lies in; a hash collision only costs a packet the trie lookups.
pub const LIVE_BLOCK_WORDS_V6: u32 = 1 << 18;

/// Word index and bit of the /48 holding `addr` in the live IPv6 bitmap.
#[inline(always)]
pub fn live_block_bit_v6(addr: &[u8; 16]) -> (u32, u32) {
    let top = u64::from_be_bytes([addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], 0, 0]);
    live_slash48_bit(top >> 16)
}

/// Word index and bit of a /48 given as its 48 bits (Fibonacci hashing to 24 bits).
#[inline(always)]
pub fn live_slash48_bit(slash48: u64) -> (u32, u32) {
    let index = fib_hash(slash48, 24) as u32;
    (index >> 6, index & 63)
}

/// IPv6 tiers are every 4 bits (4 to 128): a prefix of any length is expanded into at
/// most 8 blocks of its tier.
pub const TIER_STRIDE_V6: u32 = 4;

/// The most steps the program's IPv6 walk takes (a step per nesting level of the list;
/// user space falls back to 8-bit tiers, 16 of them, for a list nested deeper). More would
/// take the verifier over its instruction limit.
pub const TIER_STEPS_V6: usize = 16;

/// Key of the SOURCES_V4 hash: a tier and the address masked to it (network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKeyV4 {
    pub tier: u32,
    pub addr: [u8; 4],
}

/// Key of the SOURCES_V6 hash, like [`SourceKeyV4`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKeyV6 {
    pub tier: u32,
    pub addr: [u8; 16],
}

/// Value of the SOURCES hashes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceEntry {
    /// `source_flag` bits of every listed prefix containing this block.
    pub flags: u8,
    /// The tier to probe next for an address inside this block; 0: nothing longer is
    /// listed inside it, these flags are final.
    pub next: u8,
    pub _pad: [u8; 2],
}

pub mod source_flag {
    pub const TRUSTED: u8 = 1 << 0;
    pub const DENIED: u8 = 1 << 1;
}

/// Value of the live tries (LPM, keyed by the prefix in network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveEntry {
    /// `CLOCK_MONOTONIC` ns after which the entry no longer applies; `u64::MAX`: never.
    /// For deny entries user space stores the latest expiry of the entry and every live
    /// deny prefix containing it, so the longest match alone decides.
    pub expires_ns: u64,
    /// Packets that matched this entry, counted by the kernel with an atomic add: exact
    /// however many CPUs hit the entry at once.
    pub hits: u64,
}

/// The address masked to `len` bits (network byte order).
#[inline(always)]
pub fn mask_v4(addr: [u8; 4], len: u32) -> [u8; 4] {
    let bits = u32::from_be_bytes(addr);
    let masked = if len == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - len.min(32)))
    };
    masked.to_be_bytes()
}

/// The address masked to `len` bits (network byte order). Shifts of two words, not a loop
/// over bytes: the walk runs this up to 16 times, and a branch per byte made the verifier
/// explore each.
#[inline(always)]
pub fn mask_v6_bytes(addr: [u8; 16], len: u32) -> [u8; 16] {
    let word = |i: usize| {
        u64::from_be_bytes([
            addr[i],
            addr[i + 1],
            addr[i + 2],
            addr[i + 3],
            addr[i + 4],
            addr[i + 5],
            addr[i + 6],
            addr[i + 7],
        ])
    };
    let mask = |keep: u32| {
        if keep == 0 {
            0
        } else {
            u64::MAX << (64 - keep.min(64))
        }
    };
    let high = (word(0) & mask(len.min(64))).to_be_bytes();
    let low = (word(8) & mask(len.saturating_sub(64))).to_be_bytes();
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&high);
    out[8..].copy_from_slice(&low);
    out
}
