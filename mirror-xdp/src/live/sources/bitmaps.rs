//! The live entries' block bitmaps (`mirror_xdp_common::sources::LIVE_BLOCK_WORDS_V4`): a
//! bit per IPv4 /24 block and per hashed IPv6 /48 that a live entry covers or lies in, so
//! that the program looks in the live tries only for sources near an entry.

use std::os::fd::AsFd;

use aya::maps::IterableMap;
use ipnet::IpNet;
use mirror_xdp_common::{
    map_name,
    sources::{LIVE_BLOCK_WORDS_V4, LIVE_BLOCK_WORDS_V6, live_block_bit, live_slash48_bit},
};

use super::LiveError;
use crate::kernel::{
    batch,
    maps::{Maps, MapsError},
};

/// The live block bitmaps (see `sources::LIVE_BLOCK_WORDS_V4`), whole: IPv4 a bit per /24,
/// IPv6 a bit per hashed /48.
pub(super) struct Bitmaps {
    pub(super) words: [Vec<u64>; 2],
}

/// An IPv6 entry shorter than this marks every bit (a bit per /48 inside would be more
/// than 65,536 bits): such an entry sends every IPv6 packet to the tries.
const SHORTEST_MARKED_V6: u8 = 32;

impl Bitmaps {
    /// The bits of every block a prefix covers or lies in.
    pub(super) fn of<'a>(nets: impl Iterator<Item = &'a IpNet>) -> Bitmaps {
        let mut words = [
            vec![0u64; LIVE_BLOCK_WORDS_V4 as usize],
            vec![0u64; LIVE_BLOCK_WORDS_V6 as usize],
        ];
        for net in nets {
            match net {
                IpNet::V4(net) => {
                    let first = u32::from(net.network()) >> 8;
                    let count = 1u32 << 24u8.saturating_sub(net.prefix_len());
                    for block in first..first + count {
                        let (word, bit) = live_block_bit(block << 8);
                        words[0][word as usize] |= 1 << bit;
                    }
                }
                IpNet::V6(net) if net.prefix_len() < SHORTEST_MARKED_V6 => words[1].fill(u64::MAX),
                IpNet::V6(net) => {
                    let first = (u128::from(net.network()) >> 80) as u64;
                    let count = 1u64 << 48u8.saturating_sub(net.prefix_len());
                    for slash48 in first..first + count {
                        let (word, bit) = live_slash48_bit(slash48);
                        words[1][word as usize] |= 1 << bit;
                    }
                }
            }
        }
        Bitmaps { words }
    }

    pub(super) fn union(&self, other: &Bitmaps) -> Bitmaps {
        let merge = |a: &[u64], b: &[u64]| a.iter().zip(b).map(|(x, y)| x | y).collect();
        Bitmaps {
            words: [
                merge(&self.words[0], &other.words[0]),
                merge(&self.words[1], &other.words[1]),
            ],
        }
    }

    /// Writes the words `pick` chooses, given (family index, word index, bits).
    pub(super) fn write(
        &self,
        maps: &Maps,
        pick: impl Fn(usize, usize, u64) -> bool,
    ) -> Result<(), LiveError> {
        let targets = [
            (&maps.live_blocks_v4, map_name::LIVE_BLOCKS_V4),
            (&maps.live_blocks_v6, map_name::LIVE_BLOCKS_V6),
        ];
        for (family, (map, name)) in targets.into_iter().enumerate() {
            let words: Vec<(u32, u64)> = self.words[family]
                .iter()
                .enumerate()
                .filter(|&(word, bits)| pick(family, word, *bits))
                .map(|(word, bits)| (word as u32, *bits))
                .collect();
            batch::update_batch(map.map().fd().as_fd(), &words)
                .map_err(|source| LiveError::Maps(MapsError::Batch { name, source }))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use mirror_xdp_common::sources::live_block_bit_v6;

    use super::*;

    /// The bitmap's set bits, as (word, bits) pairs.
    fn set(words: &[u64]) -> Vec<(usize, u64)> {
        words
            .iter()
            .enumerate()
            .filter(|(_, bits)| **bits != 0)
            .map(|(word, bits)| (word, *bits))
            .collect()
    }

    fn bitmaps(nets: &[&str]) -> Bitmaps {
        let nets: Vec<IpNet> = nets.iter().map(|s| s.parse().unwrap()).collect();
        Bitmaps::of(nets.iter())
    }

    #[test]
    fn bitmaps_cover_every_block_a_prefix_touches_and_nothing_else() {
        let b = bitmaps(&["0.0.1.7/32", "0.0.64.0/22", "0.1.0.0/16"]);
        // Block 1 (the /32), blocks 64-67 (the /22: word 1), blocks 256-511 (the /16: words
        // 4-7 whole).
        assert_eq!(
            set(&b.words[0]),
            vec![(0, 1 << 1), (1, 0b1111), (4, !0), (5, !0), (6, !0), (7, !0)]
        );
        assert!(set(&b.words[1]).is_empty());
        assert!(bitmaps(&["0.0.0.0/0"]).words[0].iter().all(|w| *w == !0));
        // A /25 marks its one block, mid-word.
        let (word, bit) = live_block_bit(u32::from(std::net::Ipv4Addr::new(10, 0, 5, 0)));
        assert_eq!(
            set(&bitmaps(&["10.0.5.128/25"]).words[0]),
            vec![(word as usize, 1 << bit)]
        );
        // IPv6: a /128 and a /64 mark their /48's bit, a /47 the bits of its two /48s, as the
        // program computes them from an address inside.
        let b = bitmaps(&["2001:db8:1:2::5/128", "2001:db8:7::/47"]);
        let bit_of = |s: &str| {
            let addr: std::net::Ipv6Addr = s.parse().unwrap();
            live_block_bit_v6(&addr.octets())
        };
        let mut want = BTreeSet::new();
        for addr in ["2001:db8:1:ffff::1", "2001:db8:7::9", "2001:db8:6:1::"] {
            let (word, bit) = bit_of(addr);
            want.insert((word as usize, bit));
        }
        let mut got = BTreeSet::new();
        for (word, bits) in set(&b.words[1]) {
            for bit in 0..64 {
                if bits >> bit & 1 != 0 {
                    got.insert((word, bit));
                }
            }
        }
        assert_eq!(got, want);
        assert!(
            bitmaps(&["2001:db8::/31"]).words[1]
                .iter()
                .all(|w| *w == !0)
        );
    }
}
