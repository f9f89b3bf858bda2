//! The IPv4 tiers flattened for the kernel: tiers 8 to 24 become a dense byte per /24 block
//! (an array read instead of up to three hash lookups), tier 32 stays a hash of hosts. And
//! the IPv6 lists' bitmap, a bit per hashed /32 and /48 near a listed prefix
//! (`mirror_xdp_common::sources::BLOCK_WORDS_V6`), that spares most IPv6 packets the hash.

use ipnet::Ipv6Net;
#[cfg(test)]
use mirror_xdp_common::sources::block_position;
use mirror_xdp_common::{
    SourceEntry, SourceKeyV4,
    sources::{BLOCK_DEEPER, BLOCK_WORDS_V6, slash32_bit, slash48_bit},
};

/// What the kernel's IPv4 source tables hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourcesV4 {
    /// Non-zero words of the block array: (word index, eight block bytes).
    pub blocks: Vec<(u32, u64)>,
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
    let blocks = dense
        .chunks_exact(8)
        .enumerate()
        .filter(|(_, bytes)| bytes.iter().any(|&b| b != 0))
        .map(|(word, bytes)| {
            let value = bytes
                .iter()
                .enumerate()
                .fold(0u64, |acc, (i, &b)| acc | (u64::from(b) << (i * 8)));
            (word as u32, value)
        })
        .collect();
    SourcesV4 { blocks, hosts }
}

/// An IPv6 prefix shorter than this sets every bit (a bit per /32 inside would be more
/// than 65,536): such a list sends every IPv6 packet to the hash.
const SHORTEST_MARKED_V6: u8 = 16;

/// The non-zero words of the IPv6 list bitmap (empty without IPv6 prefixes): for a prefix
/// of /32 or shorter the bits of the /32s it covers, for a longer one those of the /48s it
/// covers or lies in.
pub fn bitmap_v6(prefixes: &[(Ipv6Net, u8)]) -> Vec<(u32, u64)> {
    if prefixes.is_empty() {
        return Vec::new();
    }
    let mut words = vec![0u64; BLOCK_WORDS_V6 as usize];
    for (net, _) in prefixes {
        let len = net.prefix_len();
        if len < SHORTEST_MARKED_V6 {
            words.fill(u64::MAX);
            break;
        }
        let unit = if len <= 32 { 32 } else { 48 };
        let first = (u128::from(net.network()) >> (128 - u32::from(unit))) as u64;
        let count = 1u64 << (unit - len.min(unit));
        for block in first..first + count {
            let (word, bit) = if unit == 32 {
                slash32_bit(block)
            } else {
                slash48_bit(block)
            };
            words[word as usize] |= 1 << bit;
        }
    }
    words
        .into_iter()
        .enumerate()
        .filter(|(_, bits)| *bits != 0)
        .map(|(word, bits)| (word as u32, bits))
        .collect()
}

/// The flags the kernel reads for `addr` (host order) from flattened tables: the oracle
/// of the tests below, written the way the kernel program walks them.
#[cfg(test)]
fn lookup(tables: &SourcesV4, addr: u32) -> u8 {
    let (word, shift) = block_position(addr);
    let value = tables
        .blocks
        .iter()
        .find(|(w, _)| *w == word)
        .map_or(0, |(_, v)| *v);
    let block = (value >> shift) as u8;
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
        // /8 is 65,536 blocks: 8,192 words, all non-zero.
        assert!(t.blocks.len() >= 8192);
        // The /25 is 128 host entries, the /32 one.
        assert_eq!(t.hosts.len(), 129);
    }

    #[test]
    fn the_whole_space_fills_every_word() {
        let t = tables(&[("0.0.0.0/0", DENIED)]);
        assert_eq!(t.blocks.len(), 1 << 21);
        assert_eq!(at(&t, "203.0.113.1"), DENIED);
    }

    #[test]
    fn nothing_listed_is_nothing_written() {
        assert_eq!(tables(&[]), SourcesV4::default());
    }

    #[test]
    fn the_v6_bitmap_marks_the_blocks_of_every_prefix_as_the_program_finds_them() {
        let v6 = |s: &str| (s.parse::<Ipv6Net>().unwrap().trunc(), DENIED);
        assert!(bitmap_v6(&[]).is_empty());
        let words = bitmap_v6(&[
            v6("2001:db8:bad::/48"),
            v6("2a00::/31"),
            v6("2a02:1::5/128"),
            v6("2a03::/47"),
        ]);
        let set = |addr: &str| {
            let addr: std::net::Ipv6Addr = addr.parse().unwrap();
            mirror_xdp_common::sources::block_bits_v6(&addr.octets())
                .iter()
                .any(|(word, bit)| {
                    words
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
        ];
        for addr in inside {
            assert!(set(addr), "{addr}");
        }
        // Two /32s, then a /48 each for the /48 and the /128, two for the /47: six bits
        // (barring a hash collision, which these do not have).
        let bits: u32 = words.iter().map(|(_, b)| b.count_ones()).sum();
        assert_eq!(bits, 6);
        // Another /48 of a /32 that holds a listed /48: clear, the client skips the hash.
        assert!(!set("2001:db8:1::1"));
        assert!(!set("2001:db9::1"));
        let all = bitmap_v6(&[v6("2000::/15")]);
        assert_eq!(all.len(), BLOCK_WORDS_V6 as usize);
    }
}
