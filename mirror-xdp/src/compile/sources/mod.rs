//! Static source lists (`sources.allow`, `sources.deny`) compiled into the tiered hash
//! entries described in `mirror_xdp_common::sources`: every tier for IPv4 (whose short
//! tiers become the block array), path-compressed for IPv6.
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
use mirror_xdp_common::{
    SourceEntry, SourceKeyV4, SourceKeyV6,
    sources::{TIER_STEPS_V6, TIER_STRIDE_V6},
};

/// The SOURCES_V4 entries for prefixes tagged with `source_flag` bits.
pub fn tiers_v4(prefixes: &[(Ipv4Net, u8)]) -> Vec<(SourceKeyV4, SourceEntry)> {
    let input = prefixes
        .iter()
        .map(|(net, flags)| (u32::from(net.network()), net.prefix_len(), *flags));
    let levels = build_levels::<u32>(input, 8);
    emit(levels, |tier, addr| SourceKeyV4 {
        tier,
        addr: addr.to_be_bytes(),
    })
}

/// The SOURCES_V6 entries for prefixes tagged with `source_flag` bits, path-compressed (see
/// [`compress`]), and the tier the walk starts at (0 when there are none).
///
/// Tiers are every 4 bits ([`TIER_STRIDE_V6`]): a prefix of any length is expanded into at
/// most 8 blocks (with 8-bit tiers a /33 was 128 /40s, and a million IPv6 prefixes of
/// random lengths 5 million entries). A walk takes a step per nesting level; in the rare
/// list nested deeper than the program's [`TIER_STEPS_V6`] steps, the tiers are every 8
/// bits instead, where a walk never takes more.
pub fn tiers_v6(prefixes: &[(Ipv6Net, u8)]) -> (Vec<(SourceKeyV6, SourceEntry)>, u8) {
    let (entries, first, steps) = compressed_v6(prefixes, TIER_STRIDE_V6);
    if steps <= TIER_STEPS_V6 {
        return (entries, first);
    }
    let (entries, first, _) = compressed_v6(prefixes, 8);
    (entries, first)
}

/// The entries and first tier with tiers every `stride` bits, and the most steps a walk
/// takes.
fn compressed_v6(
    prefixes: &[(Ipv6Net, u8)],
    stride: u32,
) -> (Vec<(SourceKeyV6, SourceEntry)>, u8, usize) {
    let input = prefixes
        .iter()
        .map(|(net, flags)| (u128::from(net.network()), net.prefix_len(), *flags));
    let levels = build_levels::<u128>(input, stride);
    let mut out = Vec::new();
    let (first, steps) = compress(&significant(&levels, stride), 0, &mut out);
    let mut entries: Vec<(SourceKeyV6, SourceEntry)> = out
        .into_iter()
        .map(|(tier, addr, flags, next)| {
            let key = SourceKeyV6 {
                tier,
                addr: addr.to_be_bytes(),
            };
            (
                key,
                SourceEntry {
                    flags,
                    next,
                    _pad: [0; 2],
                },
            )
        })
        .collect();
    entries.sort_unstable_by_key(|(key, _)| *key);
    (entries, first, steps)
}

/// The entries whose flags differ from their parent's (a first-tier entry's parent has none):
/// the only ones a lookup must reach. Sorted by address, then tier, which puts every
/// entry's descendants right after it.
fn significant<W: Word>(levels: &[Vec<Node<W>>], stride: u32) -> Vec<(W, u32, u8)> {
    let mut out = Vec::new();
    for (index, level) in levels.iter().enumerate() {
        let tier = tier_len(index, stride);
        let parents = index.checked_sub(1).map(|i| &levels[i]);
        let mut p = 0;
        for node in level {
            let parent_flags = match parents {
                Some(parents) => {
                    let up = node.addr.mask(tier - stride);
                    // Both sorted, every entry's parent present (`build_levels`).
                    while parents[p].addr < up {
                        p += 1;
                    }
                    parents[p].flags
                }
                None => 0,
            };
            if node.flags != parent_flags {
                out.push((node.addr, tier, node.flags));
            }
        }
    }
    out.sort_unstable_by_key(|&(addr, tier, _)| (addr, tier));
    out
}

/// Path compression of the tiers under an entry whose flags are `flags`: `nodes` are the
/// significant entries below it (in [`significant`]'s order). Their shortest tier is where
/// the walk goes next (returned; 0 if there are none); there each group of them under one
/// block gets an entry, the significant one itself or a marker carrying `flags`, and the
/// groups are compressed in turn. A miss at that tier means no listed prefix below changes
/// the flags for the address, so the walk ends with the flags it has. Also returns the
/// most steps a walk from here takes (0: none).
fn compress<W: Word>(
    nodes: &[(W, u32, u8)],
    flags: u8,
    out: &mut Vec<(u32, W, u8, u8)>,
) -> (u8, usize) {
    let Some(next) = nodes.iter().map(|&(_, tier, _)| tier).min() else {
        return (0, 0);
    };
    let mut steps = 0;
    let mut start = 0;
    while start < nodes.len() {
        let block = nodes[start].0.mask(next);
        let end = start
            + nodes[start..]
                .iter()
                .take_while(|(addr, _, _)| addr.mask(next) == block)
                .count();
        let group = &nodes[start..end];
        // The block's own entry, if significant, sorts first in its group.
        let (own, below) = match group[0] {
            (addr, tier, own) if addr == block && tier == next => (own, &group[1..]),
            _ => (flags, group),
        };
        let at = out.len();
        out.push((next, block, own, 0));
        let (deeper, below_steps) = compress(below, own, out);
        out[at].3 = deeper;
        steps = steps.max(1 + below_steps);
        start = end;
    }
    (next as u8, steps)
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

/// Prefix length of the tier at `index` with tiers every `stride` bits.
#[inline(always)]
fn tier_len(index: usize, stride: u32) -> u32 {
    (index as u32 + 1) * stride
}

/// Tier index, tier length and prefix length (clamped) of a prefix length.
#[inline(always)]
fn place<W: Word>(len: u8, stride: u32) -> (usize, u32, u32) {
    let len = u32::from(len).min(W::BITS);
    let index = len.max(1).div_ceil(stride) as usize - 1;
    (index, tier_len(index, stride), len)
}

/// The entries of every tier, shortest tier first, each sorted by address.
fn build_levels<W: Word>(
    prefixes: impl Iterator<Item = (W, u8, u8)> + Clone,
    stride: u32,
) -> Vec<Vec<Node<W>>> {
    let tiers = (W::BITS / stride) as usize;

    // 1. Expanded blocks by tier, counted first: the buckets hold millions of blocks and
    // growing them by doubling would copy each several times. A /0 goes to the first tier.
    let mut sizes = vec![0usize; tiers];
    for (_, len, _) in prefixes.clone() {
        let (index, tier, len) = place::<W>(len, stride);
        sizes[index] += 1 << (tier - len);
    }
    let mut buckets: Vec<Vec<(W, u8)>> = sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
    for (addr, len, flags) in prefixes {
        let (index, tier, len) = place::<W>(len, stride);
        let net = addr.mask(len);
        let bucket = &mut buckets[index];
        for i in 0..1u32 << (tier - len) {
            bucket.push((net.block(i, tier), flags));
        }
    }

    // 2. Block sets and `deeper`, longest tier first.
    let mut levels: Vec<Vec<Node<W>>> = (0..tiers).map(|_| Vec::new()).collect();
    for index in (0..tiers).rev() {
        let tier = tier_len(index, stride);
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
        let parent_tier = tier_len(index - 1, stride);
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

/// Keys and values of all IPv4 tiers (every 8 bits), sorted by key.
fn emit<W: Word, K>(levels: Vec<Vec<Node<W>>>, key: impl Fn(u32, W) -> K) -> Vec<(K, SourceEntry)> {
    let mut out = Vec::with_capacity(levels.iter().map(Vec::len).sum());
    for (index, level) in levels.into_iter().enumerate() {
        let tier = tier_len(index, 8);
        out.extend(level.into_iter().map(|n| {
            (
                key(tier, n.addr),
                SourceEntry {
                    flags: n.flags,
                    next: if n.deeper { (tier + 8) as u8 } else { 0 },
                    _pad: [0; 2],
                },
            )
        }));
    }
    out
}

#[cfg(test)]
mod tests;
