//! Static source lists (`sources.allow`, `sources.deny`) compiled into the tiered hash
//! entries described in `mirror_xdp_common::sources`.
//!
//! The entries of one tier are the blocks of the prefixes stored there (a prefix of length
//! L goes, expanded, to the shortest tier >= L) together with the blocks that contain an
//! entry of the next tier (`deeper`). Both are built without hashing, from sorted vectors:
//!
//! 1. Expand every prefix into its blocks and bucket them by tier (one flag each).
//! 2. From the longest tier to the shortest: sort the bucket and merge it with the parents
//!    of the tier below, both sorted, so a block listed by several prefixes or also a
//!    parent becomes one entry; a parent gets `deeper`.
//! 3. From the shortest tier to the longest: OR into each entry the flags of its parent.
//!    The prefixes containing a block of tier t are those stored at tier t that contain it
//!    (step 2) and those of length <= t - 8, which are exactly the ones containing its
//!    parent, whose flags are complete by induction.
//!
//! Entries come out sorted by key (tier, then address), and the cost is a sort of the
//! expanded blocks plus linear passes.

use ipnet::{Ipv4Net, Ipv6Net};
use mirror_xdp_common::{SourceEntry, SourceKeyV4, SourceKeyV6};

/// The SOURCES_V4 entries for prefixes tagged with `source_flag` bits.
pub fn tiers_v4(prefixes: &[(Ipv4Net, u8)]) -> Vec<(SourceKeyV4, SourceEntry)> {
    let input = prefixes
        .iter()
        .map(|(net, flags)| (u32::from(net.network()), net.prefix_len(), *flags));
    let levels = build_levels::<u32>(input);
    emit(levels, |tier, addr| SourceKeyV4 {
        tier,
        addr: addr.to_be_bytes(),
    })
}

/// The SOURCES_V6 entries for prefixes tagged with `source_flag` bits.
pub fn tiers_v6(prefixes: &[(Ipv6Net, u8)]) -> Vec<(SourceKeyV6, SourceEntry)> {
    let input = prefixes
        .iter()
        .map(|(net, flags)| (u128::from(net.network()), net.prefix_len(), *flags));
    let levels = build_levels::<u128>(input);
    emit(levels, |tier, addr| SourceKeyV6 {
        tier,
        addr: addr.to_be_bytes(),
    })
}

/// An address as an integer, most significant bit first (so integer order is key order).
trait Word: Copy + Ord {
    const BITS: u32;
    /// The address with all but the first `len` bits cleared (`len` <= BITS).
    fn mask(self, len: u32) -> Self;
    /// The `index`-th block of length `tier` from `self` on.
    fn block(self, index: u32, tier: u32) -> Self;
}

impl Word for u32 {
    const BITS: u32 = 32;
    #[inline(always)]
    fn mask(self, len: u32) -> Self {
        // Rust refuses a shift by the full width, hence the explicit /0 case.
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - len))
        }
    }
    #[inline(always)]
    fn block(self, index: u32, tier: u32) -> Self {
        self + (index << (32 - tier))
    }
}

impl Word for u128 {
    const BITS: u32 = 128;
    #[inline(always)]
    fn mask(self, len: u32) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - len))
        }
    }
    #[inline(always)]
    fn block(self, index: u32, tier: u32) -> Self {
        self + (u128::from(index) << (128 - tier))
    }
}

/// One entry of a tier before it becomes a key and a value.
#[derive(Clone, Copy, Debug)]
struct Node<W> {
    addr: W,
    flags: u8,
    deeper: bool,
}

/// Prefix length of the tier at `index` (tiers are every 8 bits).
#[inline(always)]
fn tier_len(index: usize) -> u32 {
    (index as u32 + 1) * 8
}

/// Tier index, tier length and prefix length (clamped) of a prefix length.
#[inline(always)]
fn place<W: Word>(len: u8) -> (usize, u32, u32) {
    let len = u32::from(len).min(W::BITS);
    let index = (len.max(1) as usize).div_ceil(8) - 1;
    (index, tier_len(index), len)
}

/// The entries of every tier, shortest tier first, each sorted by address.
fn build_levels<W: Word>(prefixes: impl Iterator<Item = (W, u8, u8)> + Clone) -> Vec<Vec<Node<W>>> {
    let tiers = (W::BITS / 8) as usize;

    // 1. Expanded blocks by tier, counted first: the buckets hold millions of blocks and
    // growing them by doubling would copy each several times. A /0 goes to the first tier.
    let mut sizes = vec![0usize; tiers];
    for (_, len, _) in prefixes.clone() {
        let (index, tier, len) = place::<W>(len);
        sizes[index] += 1 << (tier - len);
    }
    let mut buckets: Vec<Vec<(W, u8)>> = sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
    for (addr, len, flags) in prefixes {
        let (index, tier, len) = place::<W>(len);
        let net = addr.mask(len);
        let bucket = &mut buckets[index];
        for i in 0..1u32 << (tier - len) {
            bucket.push((net.block(i, tier), flags));
        }
    }

    // 2. Block sets and `deeper`, longest tier first.
    let mut levels: Vec<Vec<Node<W>>> = (0..tiers).map(|_| Vec::new()).collect();
    for index in (0..tiers).rev() {
        let tier = tier_len(index);
        let mut blocks = std::mem::take(&mut buckets[index]);
        blocks.sort_unstable_by_key(|&(addr, _)| addr);
        let children: &[Node<W>] = levels.get(index + 1).map_or(&[], |v| v.as_slice());
        let mut out = Vec::with_capacity(blocks.len() + children.len());
        let (mut b, mut c) = (0, 0);
        loop {
            let addr = match (blocks.get(b), children.get(c)) {
                (None, None) => break,
                (Some(&(x, _)), None) => x,
                (None, Some(n)) => n.addr.mask(tier),
                (Some(&(x, _)), Some(n)) => x.min(n.addr.mask(tier)),
            };
            let mut flags = 0;
            while let Some(&(x, f)) = blocks.get(b) {
                if x != addr {
                    break;
                }
                flags |= f;
                b += 1;
            }
            let first_child = c;
            while c < children.len() && children[c].addr.mask(tier) == addr {
                c += 1;
            }
            out.push(Node {
                addr,
                flags,
                deeper: c > first_child,
            });
        }
        levels[index] = out;
    }

    // 3. Flags of the containing prefixes of shorter tiers, via the parent entry.
    for index in 1..tiers {
        let parent_tier = tier_len(index - 1);
        let (shorter, longer) = levels.split_at_mut(index);
        let parents = &shorter[index - 1];
        let mut p = 0;
        for node in longer[0].iter_mut() {
            let up = node.addr.mask(parent_tier);
            // Every entry has its parent (step 2), and both lists are sorted.
            while parents[p].addr < up {
                p += 1;
            }
            debug_assert!(parents[p].addr == up);
            node.flags |= parents[p].flags;
        }
    }
    levels
}

/// Keys and values of all tiers, sorted by key.
fn emit<W: Word, K>(levels: Vec<Vec<Node<W>>>, key: impl Fn(u32, W) -> K) -> Vec<(K, SourceEntry)> {
    let mut out = Vec::with_capacity(levels.iter().map(Vec::len).sum());
    for (index, level) in levels.into_iter().enumerate() {
        let tier = tier_len(index);
        out.extend(level.into_iter().map(|n| {
            (
                key(tier, n.addr),
                SourceEntry {
                    flags: n.flags,
                    deeper: u8::from(n.deeper),
                    _pad: [0; 2],
                },
            )
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_xdp_common::source_flag::{DENIED, TRUSTED};
    use mirror_xdp_common::sources::{TIERS_V4, TIERS_V6, mask_v4, mask_v6_bytes};
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Instant;

    /// splitmix64: deterministic, so a failure can be replayed; no dependency needed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn u128(&mut self) -> u128 {
            (u128::from(self.next()) << 64) | u128::from(self.next())
        }
    }

    fn v4(s: &str) -> Ipv4Net {
        s.parse::<Ipv4Net>().unwrap().trunc()
    }

    fn v6(s: &str) -> Ipv6Net {
        s.parse::<Ipv6Net>().unwrap().trunc()
    }

    /// The kernel's walk over a SOURCES hash: tiers from short to long, up to the first miss
    /// or an entry with nothing deeper.
    fn walk(tiers: &[u32], lookup: impl Fn(u32) -> Option<SourceEntry>) -> u8 {
        let mut flags = 0;
        for &tier in tiers {
            let Some(e) = lookup(tier) else { break };
            flags = e.flags;
            if e.deeper == 0 {
                break;
            }
        }
        flags
    }

    fn walk_v4(map: &HashMap<SourceKeyV4, SourceEntry>, addr: Ipv4Addr) -> u8 {
        walk(&TIERS_V4, |tier| {
            let addr = mask_v4(addr.octets(), tier);
            map.get(&SourceKeyV4 { tier, addr }).copied()
        })
    }

    fn walk_v6(map: &HashMap<SourceKeyV6, SourceEntry>, addr: Ipv6Addr) -> u8 {
        walk(&TIERS_V6, |tier| {
            let addr = mask_v6_bytes(addr.octets(), tier);
            map.get(&SourceKeyV6 { tier, addr }).copied()
        })
    }

    fn expect_v4(prefixes: &[(Ipv4Net, u8)], addr: Ipv4Addr) -> u8 {
        prefixes
            .iter()
            .filter(|(n, _)| n.contains(&addr))
            .fold(0, |acc, (_, f)| acc | f)
    }

    fn expect_v6(prefixes: &[(Ipv6Net, u8)], addr: Ipv6Addr) -> u8 {
        prefixes
            .iter()
            .filter(|(n, _)| n.contains(&addr))
            .fold(0, |acc, (_, f)| acc | f)
    }

    /// The construction spelled out with sets and brute force, for exact comparison: the
    /// blocks of every prefix at its tier plus all their ancestors; flags are the OR over
    /// the prefixes containing the block, `deeper` whether a longer entry lies inside.
    fn reference(prefixes: &[(u128, u32, u8)], bits: u32) -> Vec<(u32, u128, SourceEntry)> {
        let mask = |a: u128, len: u32| -> u128 {
            if len == 0 {
                0
            } else {
                a & (u128::MAX << (128 - len))
            }
        };
        // Addresses left-aligned in a u128 so one function serves both families.
        let shift = 128 - bits;
        let mut blocks: BTreeSet<(u32, u128)> = BTreeSet::new();
        for &(addr, len, _) in prefixes {
            let tier = len.max(1).div_ceil(8) * 8;
            let net = mask(addr << shift, len);
            for i in 0..1u128 << (tier - len) {
                let block = net + (i << (128 - tier));
                for t in (8..=tier).step_by(8) {
                    blocks.insert((t, mask(block, t)));
                }
            }
        }
        let parents: BTreeSet<(u32, u128)> = blocks
            .iter()
            .filter(|(t, _)| *t > 8)
            .map(|&(t, a)| (t - 8, mask(a, t - 8)))
            .collect();
        blocks
            .iter()
            .map(|&(tier, block)| {
                let flags = prefixes
                    .iter()
                    .filter(|&&(a, len, _)| {
                        len <= tier && mask(a << shift, len) == mask(block, len)
                    })
                    .fold(0, |acc, &(_, _, f)| acc | f);
                let entry = SourceEntry {
                    flags,
                    deeper: u8::from(parents.contains(&(tier, block))),
                    _pad: [0; 2],
                };
                (tier, block >> shift, entry)
            })
            .collect()
    }

    fn reference_v4(prefixes: &[(Ipv4Net, u8)]) -> Vec<(SourceKeyV4, SourceEntry)> {
        let wide: Vec<_> = prefixes
            .iter()
            .map(|(n, f)| {
                (
                    u128::from(u32::from(n.network())),
                    u32::from(n.prefix_len()),
                    *f,
                )
            })
            .collect();
        reference(&wide, 32)
            .into_iter()
            .map(|(tier, a, e)| {
                let addr = (a as u32).to_be_bytes();
                (SourceKeyV4 { tier, addr }, e)
            })
            .collect()
    }

    fn reference_v6(prefixes: &[(Ipv6Net, u8)]) -> Vec<(SourceKeyV6, SourceEntry)> {
        let wide: Vec<_> = prefixes
            .iter()
            .map(|(n, f)| (u128::from(n.network()), u32::from(n.prefix_len()), *f))
            .collect();
        reference(&wide, 128)
            .into_iter()
            .map(|(tier, a, e)| {
                (
                    SourceKeyV6 {
                        tier,
                        addr: a.to_be_bytes(),
                    },
                    e,
                )
            })
            .collect()
    }

    fn random_flags(rng: &mut Rng) -> u8 {
        [TRUSTED, DENIED, TRUSTED | DENIED][rng.below(3) as usize]
    }

    /// Prefixes clustered around a few bases so that they nest and overlap a lot.
    fn random_v4_set(rng: &mut Rng) -> Vec<(Ipv4Net, u8)> {
        let bases: Vec<u32> = (0..1 + rng.below(4)).map(|_| rng.next() as u32).collect();
        let count = 1 + rng.below(40);
        (0..count)
            .map(|_| {
                let base = bases[rng.below(bases.len() as u64) as usize];
                let noise = (rng.next() as u32) >> rng.below(33).min(31);
                let len = if rng.below(100) == 0 {
                    rng.below(9) as u8
                } else {
                    8 + rng.below(25) as u8
                };
                let net = Ipv4Net::new(Ipv4Addr::from(base ^ noise), len).unwrap();
                (net.trunc(), random_flags(rng))
            })
            .collect()
    }

    fn random_v6_set(rng: &mut Rng) -> Vec<(Ipv6Net, u8)> {
        let bases: Vec<u128> = (0..1 + rng.below(4)).map(|_| rng.u128()).collect();
        let count = 1 + rng.below(30);
        (0..count)
            .map(|_| {
                let base = bases[rng.below(bases.len() as u64) as usize];
                let noise = rng.u128() >> rng.below(129).min(127);
                let len = if rng.below(100) == 0 {
                    rng.below(9) as u8
                } else {
                    8 + rng.below(121) as u8
                };
                let net = Ipv6Net::new(Ipv6Addr::from(base ^ noise), len).unwrap();
                (net.trunc(), random_flags(rng))
            })
            .collect()
    }

    /// Addresses at and just beside the edges of every prefix, inside them, and near them.
    fn probes_v4(rng: &mut Rng, prefixes: &[(Ipv4Net, u8)]) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        for (net, _) in prefixes {
            let lo = u32::from(net.network());
            let hi = u32::from(net.broadcast());
            let size = u64::from(hi - lo) + 1;
            for a in [
                lo,
                hi,
                lo.wrapping_sub(1),
                hi.wrapping_add(1),
                lo + rng.below(size) as u32,
                lo ^ (rng.next() as u32 >> rng.below(32)),
            ] {
                out.push(Ipv4Addr::from(a));
            }
        }
        out.extend((0..20).map(|_| Ipv4Addr::from(rng.next() as u32)));
        out
    }

    fn probes_v6(rng: &mut Rng, prefixes: &[(Ipv6Net, u8)]) -> Vec<Ipv6Addr> {
        let mut out = Vec::new();
        for (net, _) in prefixes {
            let lo = u128::from(net.network());
            let hi = u128::from(net.broadcast());
            let inside = lo + (rng.u128() & (hi - lo));
            for a in [
                lo,
                hi,
                lo.wrapping_sub(1),
                hi.wrapping_add(1),
                inside,
                lo ^ (rng.u128() >> rng.below(128)),
            ] {
                out.push(Ipv6Addr::from(a));
            }
        }
        out.extend((0..20).map(|_| Ipv6Addr::from(rng.u128())));
        out
    }

    /// Keys sorted and unique, addresses masked to their tier, every entry's parent present
    /// with `deeper`, and `deeper` only where a longer entry lies inside.
    fn check_structure<K: Ord + Copy>(
        entries: &[(K, SourceEntry)],
        tier_addr: impl Fn(&K) -> (u32, u128),
        bits: u32,
    ) {
        assert!(
            entries.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted and unique"
        );
        let map: BTreeMap<(u32, u128), SourceEntry> =
            entries.iter().map(|(k, e)| (tier_addr(k), *e)).collect();
        let mut has_child = BTreeSet::new();
        for &(tier, addr) in map.keys() {
            assert!(tier % 8 == 0 && (8..=bits).contains(&tier));
            let host = bits - tier;
            assert!(host == 0 || addr & ((1u128 << host) - 1) == 0, "masked");
            if tier > 8 {
                let up = (tier - 8, addr & !((1u128 << (host + 8)) - 1));
                let parent = map.get(&up).expect("parent exists");
                assert_eq!(parent.deeper, 1, "parent has deeper");
                has_child.insert(up);
            }
        }
        for (key, e) in &map {
            assert_eq!(
                e.deeper == 1,
                has_child.contains(key),
                "deeper only over children"
            );
            assert_eq!(e._pad, [0; 2]);
        }
    }

    fn key4(k: &SourceKeyV4) -> (u32, u128) {
        (k.tier, u128::from(u32::from_be_bytes(k.addr)))
    }

    fn key6(k: &SourceKeyV6) -> (u32, u128) {
        (k.tier, u128::from_be_bytes(k.addr))
    }

    fn check_v4(rng: &mut Rng, prefixes: &[(Ipv4Net, u8)]) -> Vec<(SourceKeyV4, SourceEntry)> {
        let entries = tiers_v4(prefixes);
        check_structure(&entries, key4, 32);
        let map: HashMap<_, _> = entries.iter().copied().collect();
        for addr in probes_v4(rng, prefixes) {
            assert_eq!(
                walk_v4(&map, addr),
                expect_v4(prefixes, addr),
                "{addr} in {prefixes:?}"
            );
        }
        entries
    }

    fn check_v6(rng: &mut Rng, prefixes: &[(Ipv6Net, u8)]) -> Vec<(SourceKeyV6, SourceEntry)> {
        let entries = tiers_v6(prefixes);
        check_structure(&entries, key6, 128);
        let map: HashMap<_, _> = entries.iter().copied().collect();
        for addr in probes_v6(rng, prefixes) {
            assert_eq!(
                walk_v6(&map, addr),
                expect_v6(prefixes, addr),
                "{addr} in {prefixes:?}"
            );
        }
        entries
    }

    fn entry(flags: u8, deeper: u8) -> SourceEntry {
        SourceEntry {
            flags,
            deeper,
            _pad: [0; 2],
        }
    }

    fn k4(tier: u32, addr: &str) -> SourceKeyV4 {
        SourceKeyV4 {
            tier,
            addr: addr.parse::<Ipv4Addr>().unwrap().octets(),
        }
    }

    #[test]
    fn random_v4_sets_walk_to_the_flags_of_all_containing_prefixes() {
        let mut rng = Rng(0x5eed_0004);
        for _ in 0..2000 {
            let prefixes = random_v4_set(&mut rng);
            let entries = check_v4(&mut rng, &prefixes);
            assert_eq!(entries, reference_v4(&prefixes), "{prefixes:?}");
        }
    }

    #[test]
    fn random_v6_sets_walk_to_the_flags_of_all_containing_prefixes() {
        let mut rng = Rng(0x5eed_0006);
        for _ in 0..1000 {
            let prefixes = random_v6_set(&mut rng);
            let entries = check_v6(&mut rng, &prefixes);
            assert_eq!(entries, reference_v6(&prefixes), "{prefixes:?}");
        }
    }

    #[test]
    fn empty_lists_give_no_entries() {
        assert!(tiers_v4(&[]).is_empty());
        assert!(tiers_v6(&[]).is_empty());
    }

    #[test]
    fn a_v4_slash_0_fills_the_first_tier() {
        let mut rng = Rng(1);
        let prefixes = [(v4("0.0.0.0/0"), DENIED), (v4("192.0.2.7/32"), TRUSTED)];
        let entries = check_v4(&mut rng, &prefixes);
        // 256 /8 blocks, and the chain down to the /32 below one of them.
        assert_eq!(entries.len(), 256 + 3);
        assert!(entries[..256].iter().all(|(k, _)| k.tier == 8));
        let map: HashMap<_, _> = entries.into_iter().collect();
        assert_eq!(map[&k4(8, "10.0.0.0")], entry(DENIED, 0));
        assert_eq!(map[&k4(8, "192.0.0.0")], entry(DENIED, 1));
        assert_eq!(map[&k4(16, "192.0.0.0")], entry(DENIED, 1));
        assert_eq!(map[&k4(24, "192.0.2.0")], entry(DENIED, 1));
        assert_eq!(map[&k4(32, "192.0.2.7")], entry(DENIED | TRUSTED, 0));
        assert_eq!(walk_v4(&map, "192.0.2.8".parse().unwrap()), DENIED);
    }

    #[test]
    fn a_v6_slash_0_fills_the_first_tier() {
        let mut rng = Rng(2);
        let prefixes = [(v6("::/0"), TRUSTED), (v6("2001:db8::1/128"), DENIED)];
        let entries = check_v6(&mut rng, &prefixes);
        assert_eq!(entries.len(), 256 + 15);
    }

    #[test]
    fn a_slash_32_alone_is_a_chain_of_four() {
        let mut rng = Rng(3);
        let entries = check_v4(&mut rng, &[(v4("198.51.100.9/32"), DENIED)]);
        assert_eq!(
            entries,
            vec![
                (k4(8, "198.0.0.0"), entry(0, 1)),
                (k4(16, "198.51.0.0"), entry(0, 1)),
                (k4(24, "198.51.100.0"), entry(0, 1)),
                (k4(32, "198.51.100.9"), entry(DENIED, 0)),
            ]
        );
    }

    #[test]
    fn a_slash_128_alone_is_a_chain_of_sixteen() {
        let mut rng = Rng(4);
        let entries = check_v6(&mut rng, &[(v6("2001:db8::5/128"), TRUSTED)]);
        assert_eq!(entries.len(), 16);
        for (i, (key, e)) in entries.iter().enumerate() {
            assert_eq!(key.tier, TIERS_V6[i]);
            let last = i == 15;
            assert_eq!(*e, entry(if last { TRUSTED } else { 0 }, u8::from(!last)));
        }
    }

    #[test]
    fn an_allow_inside_a_deny_gets_both_and_the_rest_only_deny() {
        let mut rng = Rng(5);
        let prefixes = [
            (v4("198.51.0.0/16"), DENIED),
            (v4("198.51.100.0/24"), TRUSTED),
            (v4("198.51.100.128/25"), DENIED),
        ];
        let entries = check_v4(&mut rng, &prefixes);
        let map: HashMap<_, _> = entries.into_iter().collect();
        let walk = |s: &str| walk_v4(&map, s.parse().unwrap());
        assert_eq!(walk("198.51.1.1"), DENIED);
        assert_eq!(walk("198.51.100.1"), DENIED | TRUSTED);
        assert_eq!(walk("198.51.100.200"), DENIED | TRUSTED);
        assert_eq!(walk("198.52.0.1"), 0);
        assert_eq!(map[&k4(16, "198.51.0.0")], entry(DENIED, 1));
        assert_eq!(map[&k4(24, "198.51.100.0")], entry(DENIED | TRUSTED, 1));
        assert_eq!(map[&k4(32, "198.51.100.200")], entry(DENIED | TRUSTED, 0));
        assert!(!map.contains_key(&k4(32, "198.51.100.1")));
    }

    #[test]
    fn an_allow_v6_inside_a_deny_gets_both() {
        let mut rng = Rng(6);
        let prefixes = [
            (v6("2001:db8::/32"), DENIED),
            (v6("2001:db8:1::/48"), TRUSTED),
            (v6("2001:db8:1:2::/63"), DENIED),
        ];
        let entries = check_v6(&mut rng, &prefixes);
        let map: HashMap<_, _> = entries.into_iter().collect();
        let walk = |s: &str| walk_v6(&map, s.parse().unwrap());
        assert_eq!(walk("2001:db8:2::1"), DENIED);
        assert_eq!(walk("2001:db8:1::1"), DENIED | TRUSTED);
        assert_eq!(walk("2001:db8:1:3::1"), DENIED | TRUSTED);
        assert_eq!(walk("2001:db9::1"), 0);
    }

    #[test]
    fn duplicates_merge_into_one_entry() {
        let mut rng = Rng(7);
        let prefixes = [
            (v4("203.0.113.0/24"), DENIED),
            (v4("203.0.113.0/24"), DENIED),
            (v4("203.0.113.0/24"), TRUSTED),
        ];
        let entries = check_v4(&mut rng, &prefixes);
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[2],
            (k4(24, "203.0.113.0"), entry(DENIED | TRUSTED, 0))
        );
    }

    #[test]
    fn a_slash_7_is_two_slash_8_blocks() {
        let mut rng = Rng(8);
        let entries = check_v4(&mut rng, &[(v4("10.0.0.0/7"), DENIED)]);
        assert_eq!(
            entries,
            vec![
                (k4(8, "10.0.0.0"), entry(DENIED, 0)),
                (k4(8, "11.0.0.0"), entry(DENIED, 0)),
            ]
        );
    }

    #[test]
    fn a_slash_9_is_128_slash_16_blocks_under_a_flagless_slash_8() {
        let mut rng = Rng(9);
        let entries = check_v4(&mut rng, &[(v4("10.128.0.0/9"), TRUSTED)]);
        assert_eq!(entries.len(), 129);
        assert_eq!(entries[0], (k4(8, "10.0.0.0"), entry(0, 1)));
        assert_eq!(entries[1], (k4(16, "10.128.0.0"), entry(TRUSTED, 0)));
        assert_eq!(entries[128], (k4(16, "10.255.0.0"), entry(TRUSTED, 0)));
    }

    #[test]
    fn a_slash_25_under_a_slash_24() {
        let mut rng = Rng(10);
        let prefixes = [(v4("192.0.2.0/24"), DENIED), (v4("192.0.2.0/25"), TRUSTED)];
        let entries = check_v4(&mut rng, &prefixes);
        assert_eq!(entries.len(), 3 + 128);
        let map: HashMap<_, _> = entries.into_iter().collect();
        assert_eq!(map[&k4(24, "192.0.2.0")], entry(DENIED, 1));
        assert_eq!(map[&k4(32, "192.0.2.127")], entry(DENIED | TRUSTED, 0));
        assert!(!map.contains_key(&k4(32, "192.0.2.128")));
        assert_eq!(walk_v4(&map, "192.0.2.200".parse().unwrap()), DENIED);
    }

    #[test]
    fn prefixes_of_one_tier_nested_in_each_other() {
        // A /17 and a /20 inside it both expand to /24 blocks: the /20's blocks carry both.
        let mut rng = Rng(11);
        let prefixes = [
            (v4("10.1.0.0/17"), DENIED),
            (v4("10.1.16.0/20"), TRUSTED),
            (v4("10.1.17.0/24"), DENIED),
        ];
        let entries = check_v4(&mut rng, &prefixes);
        assert_eq!(entries.len(), 2 + 128);
        let map: HashMap<_, _> = entries.into_iter().collect();
        assert_eq!(map[&k4(24, "10.1.15.0")], entry(DENIED, 0));
        assert_eq!(map[&k4(24, "10.1.16.0")], entry(DENIED | TRUSTED, 0));
        assert_eq!(map[&k4(24, "10.1.17.0")], entry(DENIED | TRUSTED, 0));
    }

    /// 1,000,000 IPv4 prefixes like a large deny list: half /32, a third /24, the rest
    /// /16../23. Run with `cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run in release"]
    fn timing_1m_v4() {
        let mut rng = Rng(42);
        let prefixes: Vec<(Ipv4Net, u8)> = (0..1_000_000)
            .map(|_| {
                let roll = rng.below(6);
                let len = match roll {
                    0..=2 => 32,
                    3 | 4 => 24,
                    _ => 16 + rng.below(8) as u8,
                };
                let net = Ipv4Net::new(Ipv4Addr::from(rng.next() as u32), len).unwrap();
                (
                    net.trunc(),
                    if rng.below(10) == 0 { TRUSTED } else { DENIED },
                )
            })
            .collect();
        let start = Instant::now();
        let entries = tiers_v4(&prefixes);
        let took = start.elapsed();
        println!(
            "tiers_v4: 1,000,000 prefixes -> {} entries in {took:?}",
            entries.len()
        );
        let map: HashMap<_, _> = entries.into_iter().collect();
        for (net, _) in prefixes.iter().take(200) {
            let addr = net.network();
            assert_eq!(walk_v4(&map, addr), expect_v4(&prefixes, addr));
        }
    }

    /// 100,000 IPv6 prefixes: half /32../64, half /128.
    #[test]
    #[ignore = "timing; run in release"]
    fn timing_100k_v6() {
        let mut rng = Rng(43);
        let prefixes: Vec<(Ipv6Net, u8)> = (0..100_000)
            .map(|_| {
                let len = if rng.below(2) == 0 {
                    128
                } else {
                    32 + rng.below(33) as u8
                };
                let net = Ipv6Net::new(Ipv6Addr::from(rng.u128()), len).unwrap();
                (
                    net.trunc(),
                    if rng.below(10) == 0 { TRUSTED } else { DENIED },
                )
            })
            .collect();
        let start = Instant::now();
        let entries = tiers_v6(&prefixes);
        let took = start.elapsed();
        println!(
            "tiers_v6: 100,000 prefixes -> {} entries in {took:?}",
            entries.len()
        );
        let map: HashMap<_, _> = entries.into_iter().collect();
        for (net, _) in prefixes.iter().take(200) {
            let addr = net.network();
            assert_eq!(walk_v6(&map, addr), expect_v6(&prefixes, addr));
        }
    }
}
