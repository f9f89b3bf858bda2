//! The IPv4 tiers flattened for the kernel: tiers 8 to 24 become a two-level array with a
//! byte per /24 block (two array reads instead of up to three hash lookups; see
//! `mirror_xdp_common::sources::BLOCK_DIRECTORY_WORDS_V4`), tier 32 stays a hash of hosts.
//! And the IPv6 lists' bitmap, a bit per hashed /32 and /48 near a listed prefix
//! (`mirror_xdp_common::sources::BLOCK_HALF_BITS_V6`), that spares most IPv6 packets the
//! hash.

use ipnet::Ipv6Net;
#[cfg(test)]
use mirror_xdp_common::sources::{chunk_position, directory_position, flat_position};
use mirror_xdp_common::{
    SourceEntry, SourceKeyV4,
    sources::{
        BLOCK_CHUNK_WORDS_V4, BLOCK_CHUNKED, BLOCK_DEEPER, BLOCK_DIRECTORY_WORDS_V4,
        BLOCK_FLAT_WORDS_V4, BLOCK_HALF_BITS_V6, slash32_bit, slash48_bit,
    },
};

use super::Words;

/// What the kernel's IPv4 source tables hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcesV4 {
    /// The block array: directory and chunks, or flat.
    pub blocks: Words,
    pub flat: bool,
    /// Tier-32 entries (flags of every containing prefix folded in).
    pub hosts: Vec<(SourceKeyV4, SourceEntry)>,
}

/// Flattens tier entries (sorted by tier, as `tiers_v4` returns them).
pub fn flatten_v4(entries: Vec<(SourceKeyV4, SourceEntry)>) -> SourcesV4 {
    if entries.is_empty() {
        return SourcesV4::default();
    }
    // A byte per /24 block: 16 MiB while compiling. Shorter tiers come first, so a block
    // first takes its /8's or /16's flags and then its own entry's, which include them.
    let mut dense = vec![0u8; 1 << 24];
    let mut hosts = Vec::new();
    for (key, entry) in entries {
        let block = (u32::from_be_bytes(key.addr) >> 8) as usize;
        match key.tier {
            32 => hosts.push((key, entry)),
            24 => {
                let deeper = if entry.next != 0 { BLOCK_DEEPER } else { 0 };
                dense[block] = entry.flags | deeper;
            }
            tier => {
                let count = 1usize << (24 - tier);
                dense[block..block + count].fill(entry.flags);
            }
        }
    }
    let (blocks, flat) = match two_level(&dense) {
        Some(blocks) => (blocks, false),
        None => (flat(&dense), true),
    };
    SourcesV4 {
        blocks,
        flat,
        hosts,
    }
}

/// Chunks from which the flat array serves better: half its size, and one array read.
const FLAT_FROM_CHUNKS: usize = 1 << 15;

fn pack(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .enumerate()
        .fold(0u64, |acc, (i, &b)| acc | (u64::from(b) << (i * 8)))
}

/// A byte per /24 block, eight to a word.
fn flat(dense: &[u8]) -> Words {
    let nonzero = dense
        .chunks_exact(8)
        .map(pack)
        .enumerate()
        .filter(|(_, word)| *word != 0)
        .map(|(index, word)| (index as u32, word))
        .collect();
    Words {
        len: BLOCK_FLAT_WORDS_V4,
        nonzero,
    }
}

/// The directory entry of every /16, and a chunk for each /16 whose blocks differ; none if
/// there would be [`FLAT_FROM_CHUNKS`] chunks or more.
fn two_level(dense: &[u8]) -> Option<Words> {
    let mut directory = vec![0u32; 1 << 16];
    let mut chunks = Vec::new();
    for (slash16, blocks) in dense.chunks_exact(256).enumerate() {
        if blocks.iter().all(|&b| b == blocks[0]) {
            directory[slash16] = u32::from(blocks[0]);
        } else {
            if chunks.len() / 256 >= FLAT_FROM_CHUNKS {
                return None;
            }
            directory[slash16] = BLOCK_CHUNKED | (chunks.len() / 256) as u32;
            chunks.extend_from_slice(blocks);
        }
    }
    let directory_words = directory
        .chunks_exact(2)
        .map(|pair| u64::from(pair[0]) | u64::from(pair[1]) << 32);
    let chunk_words = chunks.chunks_exact(8).map(pack);
    let nonzero = directory_words
        .chain(chunk_words)
        .enumerate()
        .filter(|(_, word)| *word != 0)
        .map(|(index, word)| (index as u32, word))
        .collect();
    let chunk_count = (chunks.len() / 256) as u32;
    Some(Words {
        len: BLOCK_DIRECTORY_WORDS_V4 + chunk_count * BLOCK_CHUNK_WORDS_V4,
        nonzero,
    })
}

/// An IPv6 prefix shorter than this sets every bit (a bit per /32 inside would be more
/// than 65,536): such a list sends every IPv6 packet to the hash.
const SHORTEST_MARKED_V6: u8 = 16;

/// Bits a half of the bitmap gets per /32 or /48 marked in it: with this many, about one
/// bit in 64 is set, so a hashed source in no list almost never finds its bit set.
const BITS_PER_MARK_V6: u64 = 64;

/// The IPv6 list bitmap (none without IPv6 prefixes) and the log2 of its halves' bits:
/// for a prefix of /40 or shorter the bits of the /32s it covers or lies in, for a longer
/// one those of the /48s it covers or lies in (at most 256). Each half is sized to what it
/// marks.
pub fn bitmap_v6(prefixes: &[(Ipv6Net, u8)]) -> (Words, u8) {
    if prefixes.is_empty() {
        return (Words::default(), 0);
    }
    let marks = |net: &Ipv6Net| {
        let len = net.prefix_len();
        // A /33 to /40 marks its whole /32 (a superset: the sources beside it only cost
        // the walk) rather than up to 32,768 /48s.
        let unit = if len <= 40 { 32 } else { 48 };
        (unit, 1u64 << (unit - len.min(unit)))
    };
    let everything = prefixes
        .iter()
        .any(|(net, _)| net.prefix_len() < SHORTEST_MARKED_V6);
    let (min, max) = (*BLOCK_HALF_BITS_V6.start(), *BLOCK_HALF_BITS_V6.end());
    let half_bits = if everything {
        min
    } else {
        let marked: u64 = prefixes.iter().map(|(net, _)| marks(net).1).sum();
        let wanted = (marked * BITS_PER_MARK_V6)
            .next_power_of_two()
            .trailing_zeros();
        (wanted as u8).clamp(min, max)
    };
    let len = 2u32 << half_bits >> 6;
    let mut words = vec![0u64; len as usize];
    if everything {
        words.fill(u64::MAX);
    } else {
        for (net, _) in prefixes {
            let (unit, count) = marks(net);
            let first = (u128::from(net.network()) >> (128 - u32::from(unit))) as u64;
            for block in first..first + count {
                let (word, bit) = if unit == 32 {
                    slash32_bit(block, half_bits.into())
                } else {
                    slash48_bit(block, half_bits.into())
                };
                words[word as usize] |= 1 << bit;
            }
        }
    }
    let nonzero = words
        .into_iter()
        .enumerate()
        .filter(|(_, bits)| *bits != 0)
        .map(|(word, bits)| (word as u32, bits))
        .collect();
    (Words { len, nonzero }, half_bits)
}

/// The flags the kernel reads for `addr` (host order) from flattened tables: the oracle
/// of the tests below, written the way the kernel program walks them.
#[cfg(test)]
fn lookup(tables: &SourcesV4, addr: u32) -> u8 {
    let read = |index: u32| {
        assert!(index < tables.blocks.len, "word {index} outside the array");
        tables
            .blocks
            .nonzero
            .iter()
            .find(|(w, _)| *w == index)
            .map_or(0, |(_, v)| *v)
    };
    let (word, shift) = if tables.flat {
        flat_position(addr)
    } else {
        directory_position(addr)
    };
    let entry = (read(word) >> shift) as u32;
    let block = if tables.flat || entry & BLOCK_CHUNKED == 0 {
        entry as u8
    } else {
        let (word, shift) = chunk_position(entry & !BLOCK_CHUNKED, addr);
        (read(word) >> shift) as u8
    };
    if block & BLOCK_DEEPER == 0 {
        return block;
    }
    tables
        .hosts
        .iter()
        .find(|(k, _)| k.addr == addr.to_be_bytes())
        .map_or(block & !BLOCK_DEEPER, |(_, e)| e.flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::sources::tiers_v4;
    use ipnet::Ipv4Net;
    use mirror_xdp_common::source_flag::{DENIED, TRUSTED};
    use std::net::Ipv4Addr;

    fn tables(list: &[(&str, u8)]) -> SourcesV4 {
        let prefixes: Vec<(Ipv4Net, u8)> = list
            .iter()
            .map(|(n, f)| (n.parse::<Ipv4Net>().unwrap().trunc(), *f))
            .collect();
        flatten_v4(tiers_v4(&prefixes))
    }

    fn at(tables: &SourcesV4, addr: &str) -> u8 {
        lookup(tables, u32::from(addr.parse::<Ipv4Addr>().unwrap()))
    }

    #[test]
    fn every_tier_reads_through_the_flat_tables() {
        let t = tables(&[
            ("10.0.0.0/8", DENIED),
            ("10.1.0.0/16", TRUSTED),
            ("10.1.2.0/24", DENIED),
            ("10.1.2.128/25", TRUSTED),
            ("192.0.2.7/32", DENIED),
        ]);
        assert_eq!(at(&t, "10.200.0.1"), DENIED);
        assert_eq!(at(&t, "10.1.9.9"), DENIED | TRUSTED);
        assert_eq!(at(&t, "10.1.2.3"), DENIED | TRUSTED);
        assert_eq!(at(&t, "10.1.2.200"), DENIED | TRUSTED);
        assert_eq!(at(&t, "192.0.2.7"), DENIED);
        assert_eq!(at(&t, "192.0.2.8"), 0);
        assert_eq!(at(&t, "11.0.0.1"), 0);
        // The /8 is 256 uniform /16s, 128 directory words; 10.1/16 and 192.0/16 differ
        // inside: a chunk each.
        assert_eq!(
            t.blocks.len,
            BLOCK_DIRECTORY_WORDS_V4 + 2 * BLOCK_CHUNK_WORDS_V4
        );
        // The /25 is 128 host entries, the /32 one.
        assert_eq!(t.hosts.len(), 129);
    }

    #[test]
    fn a_list_that_touches_most_slash_16s_gets_the_flat_array() {
        let nets: Vec<String> = (0..40_000u32)
            .map(|i| format!("{}/24", Ipv4Addr::from(i << 16 | 0x100)))
            .collect();
        let list: Vec<(&str, u8)> = nets.iter().map(|n| (n.as_str(), DENIED)).collect();
        let t = tables(&list);
        assert!(t.flat);
        assert_eq!(t.blocks.len, BLOCK_FLAT_WORDS_V4);
        assert_eq!(at(&t, "0.7.1.9"), DENIED);
        assert_eq!(at(&t, "0.7.2.9"), 0);
        assert_eq!(at(&t, "156.63.1.0"), DENIED);
        assert_eq!(at(&t, "156.64.1.0"), 0);
        // Fewer chunks: two levels.
        let t = tables(&list[..1000]);
        assert!(!t.flat);
        assert_eq!(at(&t, "0.7.1.9"), DENIED);
    }

    #[test]
    fn the_whole_space_fills_every_word() {
        let t = tables(&[("0.0.0.0/0", DENIED)]);
        assert_eq!(t.blocks.len, BLOCK_DIRECTORY_WORDS_V4);
        assert_eq!(t.blocks.nonzero.len(), BLOCK_DIRECTORY_WORDS_V4 as usize);
        assert_eq!(at(&t, "203.0.113.1"), DENIED);
    }

    #[test]
    fn nothing_listed_is_nothing_written() {
        assert_eq!(tables(&[]), SourcesV4::default());
    }

    #[test]
    fn the_v6_bitmap_marks_the_blocks_of_every_prefix_as_the_program_finds_them() {
        let v6 = |s: &str| (s.parse::<Ipv6Net>().unwrap().trunc(), DENIED);
        assert_eq!(bitmap_v6(&[]), (Words::default(), 0));
        let (words, half_bits) = bitmap_v6(&[
            v6("2001:db8:bad::/48"),
            v6("2a00::/31"),
            v6("2a02:1::5/128"),
            v6("2a03::/47"),
            v6("2a04:0:f000::/36"),
        ]);
        let set = |addr: &str| {
            let addr: std::net::Ipv6Addr = addr.parse().unwrap();
            mirror_xdp_common::sources::block_bits_v6(&addr.octets(), half_bits.into())
                .iter()
                .any(|(word, bit)| {
                    words
                        .nonzero
                        .iter()
                        .any(|(w, bits)| w == word && bits >> bit & 1 != 0)
                })
        };
        let inside = [
            "2001:db8:bad::1",
            "2a00::1",
            "2a00:1:ffff::1",
            "2a02:1::5",
            "2a03:0:1::",
            "2a04:0:f123::1",
        ];
        for addr in inside {
            assert!(set(addr), "{addr}");
        }
        // Two /32s, a /48 each for the /48 and the /128, two for the /47, the /32 of the
        // /36: seven bits (barring a hash collision, which these do not have).
        let bits: u32 = words.nonzero.iter().map(|(_, b)| b.count_ones()).sum();
        assert_eq!(bits, 7);
        // Sized to the seven marks: 64 bits a mark, rounded up, and at least 2^12 a half.
        assert_eq!(half_bits, 12);
        assert_eq!(words.len, 2 * (1 << 12) / 64);
        // Another /48 of a /32 that holds a listed /48: clear, the client skips the hash.
        assert!(!set("2001:db8:1::1"));
        assert!(!set("2001:db9::1"));
        let (all, _) = bitmap_v6(&[v6("2000::/15")]);
        assert_eq!(all.nonzero.len(), all.len as usize);
        // A /16 marks 65,536 /32s: 2^22 bits for that half.
        let (wide, half_bits) = bitmap_v6(&[v6("2a00::/16")]);
        assert_eq!(half_bits, 22);
        assert_eq!(wide.len, 2 << 22 >> 6);
    }
}
