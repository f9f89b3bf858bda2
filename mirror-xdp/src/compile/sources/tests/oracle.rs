//! What the tier tests check against: a deterministic random source, random prefix sets
//! and probe addresses, the kernel's walk over the entries, and the construction spelled
//! out with sets and brute force.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use mirror_xdp_common::source_flag::{DENIED, TRUSTED};
use mirror_xdp_common::sources::{TIER_STEPS_V6, TIERS_V4, mask_v4, mask_v6_bytes};
use mirror_xdp_common::{SourceEntry, SourceKeyV4, SourceKeyV6};

use super::super::{compressed_v6, tiers_v4, tiers_v6};

/// splitmix64: deterministic, so a failure can be replayed; no dependency needed.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(super) fn u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}

pub(super) fn v4(s: &str) -> Ipv4Net {
    s.parse::<Ipv4Net>().unwrap().trunc()
}

pub(super) fn v6(s: &str) -> Ipv6Net {
    s.parse::<Ipv6Net>().unwrap().trunc()
}

/// The kernel's walk over a SOURCES hash: from `first`, following `next` up to a miss or
/// an entry with nothing longer inside. The flags, and how many lookups it took.
pub(super) fn walk(first: u32, lookup: impl Fn(u32) -> Option<SourceEntry>) -> (u8, usize) {
    let (mut flags, mut lookups, mut tier) = (0, 0, first);
    while tier != 0 {
        lookups += 1;
        let Some(e) = lookup(tier) else { break };
        assert!(e.next == 0 || u32::from(e.next) > tier, "next goes deeper");
        flags = e.flags;
        tier = u32::from(e.next);
    }
    (flags, lookups)
}

pub(super) fn walk_v4(map: &HashMap<SourceKeyV4, SourceEntry>, addr: Ipv4Addr) -> u8 {
    walk(TIERS_V4[0], |tier| {
        let addr = mask_v4(addr.octets(), tier);
        map.get(&SourceKeyV4 { tier, addr }).copied()
    })
    .0
}

pub(super) fn walk_v6(
    map: &HashMap<SourceKeyV6, SourceEntry>,
    first: u8,
    addr: Ipv6Addr,
) -> (u8, usize) {
    walk(u32::from(first), |tier| {
        let addr = mask_v6_bytes(addr.octets(), tier);
        map.get(&SourceKeyV6 { tier, addr }).copied()
    })
}

pub(super) fn expect_v4(prefixes: &[(Ipv4Net, u8)], addr: Ipv4Addr) -> u8 {
    prefixes
        .iter()
        .filter(|(n, _)| n.contains(&addr))
        .fold(0, |acc, (_, f)| acc | f)
}

pub(super) fn expect_v6(prefixes: &[(Ipv6Net, u8)], addr: Ipv6Addr) -> u8 {
    prefixes
        .iter()
        .filter(|(n, _)| n.contains(&addr))
        .fold(0, |acc, (_, f)| acc | f)
}

/// The construction spelled out with sets and brute force, for exact comparison: the
/// blocks of every prefix at its tier plus all their ancestors; flags are the OR over
/// the prefixes containing the block, `deeper` whether a longer entry lies inside.
pub(super) fn reference(prefixes: &[(u128, u32, u8)], bits: u32) -> Vec<(u32, u128, SourceEntry)> {
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
                .filter(|&&(a, len, _)| len <= tier && mask(a << shift, len) == mask(block, len))
                .fold(0, |acc, &(_, _, f)| acc | f);
            let entry = SourceEntry {
                flags,
                next: if parents.contains(&(tier, block)) {
                    tier as u8 + 8
                } else {
                    0
                },
                _pad: [0; 2],
            };
            (tier, block >> shift, entry)
        })
        .collect()
}

pub(super) fn reference_v4(prefixes: &[(Ipv4Net, u8)]) -> Vec<(SourceKeyV4, SourceEntry)> {
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

pub(super) fn random_flags(rng: &mut Rng) -> u8 {
    [TRUSTED, DENIED, TRUSTED | DENIED][rng.below(3) as usize]
}

/// Prefixes clustered around a few bases so that they nest and overlap a lot.
pub(super) fn random_v4_set(rng: &mut Rng) -> Vec<(Ipv4Net, u8)> {
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

pub(super) fn random_v6_set(rng: &mut Rng) -> Vec<(Ipv6Net, u8)> {
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
pub(super) fn probes_v4(rng: &mut Rng, prefixes: &[(Ipv4Net, u8)]) -> Vec<Ipv4Addr> {
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

pub(super) fn probes_v6(rng: &mut Rng, prefixes: &[(Ipv6Net, u8)]) -> Vec<Ipv6Addr> {
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
/// with `next` set to the tier below, and `next` only where a longer entry lies inside.
pub(super) fn check_structure<K: Ord + Copy>(
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
            assert_eq!(u32::from(parent.next), tier, "parent points here");
            has_child.insert(up);
        }
    }
    for (key, e) in &map {
        assert_eq!(
            e.next != 0,
            has_child.contains(key),
            "next only over children"
        );
        assert_eq!(e._pad, [0; 2]);
    }
}

pub(super) fn key4(k: &SourceKeyV4) -> (u32, u128) {
    (k.tier, u128::from(u32::from_be_bytes(k.addr)))
}

pub(super) fn check_v4(
    rng: &mut Rng,
    prefixes: &[(Ipv4Net, u8)],
) -> Vec<(SourceKeyV4, SourceEntry)> {
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

/// The compressed IPv6 entries: sorted, unique and masked; every walk ends with the flags
/// of all containing prefixes; and no entry is there for nothing: each changes the flags
/// its walk had (a listed prefix) or leads deeper (a marker).
pub(super) fn check_v6(
    rng: &mut Rng,
    prefixes: &[(Ipv6Net, u8)],
) -> (Vec<(SourceKeyV6, SourceEntry)>, u8) {
    let (entries, first) = tiers_v6(prefixes);
    assert!(
        entries.windows(2).all(|w| w[0].0 < w[1].0),
        "sorted and unique"
    );
    assert_eq!(entries.is_empty(), first == 0);
    // 4-bit tiers unless a walk would take more steps than the program does.
    let stride = if compressed_v6(prefixes, 4).2 <= TIER_STEPS_V6 {
        4
    } else {
        8
    };
    let map: HashMap<_, _> = entries.iter().copied().collect();
    let mut most_steps = 0;
    for (key, e) in &entries {
        assert!(key.tier % stride == 0 && (4..=128).contains(&key.tier));
        let addr = Ipv6Addr::from(key.addr);
        assert_eq!(key.addr, mask_v6_bytes(key.addr, key.tier), "masked");
        // The flags the walk arrives with: those of the prefixes stored at shorter tiers.
        let tier_of = |n: &Ipv6Net| u32::from(n.prefix_len()).max(1).div_ceil(stride) * stride;
        let before = prefixes
            .iter()
            .filter(|(n, _)| tier_of(n) < key.tier && n.contains(&addr))
            .fold(0, |acc, (_, f)| acc | f);
        assert!(e.flags != before || e.next != 0, "{key:?} {e:?} is needed");
        assert_eq!(e._pad, [0; 2]);
    }
    for addr in probes_v6(rng, prefixes) {
        let (flags, steps) = walk_v6(&map, first, addr);
        most_steps = most_steps.max(steps);
        assert_eq!(flags, expect_v6(prefixes, addr), "{addr} in {prefixes:?}");
    }
    assert!(
        most_steps <= TIER_STEPS_V6,
        "{most_steps} lookups: more than the program's"
    );
    (entries, first)
}

pub(super) fn entry(flags: u8, next: u8) -> SourceEntry {
    SourceEntry {
        flags,
        next,
        _pad: [0; 2],
    }
}

pub(super) fn k6(tier: u32, addr: &str) -> SourceKeyV6 {
    SourceKeyV6 {
        tier,
        addr: addr.parse::<Ipv6Addr>().unwrap().octets(),
    }
}

pub(super) fn k4(tier: u32, addr: &str) -> SourceKeyV4 {
    SourceKeyV4 {
        tier,
        addr: addr.parse::<Ipv4Addr>().unwrap().octets(),
    }
}
