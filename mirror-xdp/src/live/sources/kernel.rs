//! Bringing the kernel's live tries, their block bitmaps and their config flags in line
//! with a [`LiveSet`], and reading the tries' hit counts.

use std::collections::HashMap;
use std::os::fd::AsFd;

use aya::maps::{IterableMap, LpmTrie, MapData, lpm_trie::Key};
use ipnet::IpNet;
use mirror_xdp_common::{
    LiveEntry, capacity, config_flag, map_name,
    sources::{LIVE_BLOCK_WORDS_V4, LIVE_BLOCK_WORDS_V6, live_block_bit, live_slash48_bit},
};

use super::{Action, Expiry, LiveError, LiveSet, fold_expiries};
use crate::kernel::{
    batch,
    maps::{Maps, MapsError, monotonic_ns},
};

/// A recomputed deadline within this of the kernel's is the same one: the wall-to-monotonic
/// offset is read anew by every command, and rewriting entries for its jitter would only
/// race the kernel's hit counter.
const SAME_DEADLINE_NS: u64 = 100_000_000;

/// Both clocks read at one moment: the file keeps wall-clock expiries, the kernel compares
/// `CLOCK_MONOTONIC` deadlines.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Nanoseconds since the Unix epoch.
    pub wall_ns: u64,
    pub mono_ns: u64,
}

impl Clock {
    pub fn now() -> Clock {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
            mono_ns: monotonic_ns(),
        }
    }

    /// The expiry of an entry added now for `ttl_secs`, rounded up to a whole second so it
    /// lasts at least that long.
    pub fn expiry_after(&self, ttl_secs: u64) -> Expiry {
        let ns = self
            .wall_ns
            .saturating_add(ttl_secs.saturating_mul(1_000_000_000));
        Expiry::At(ns.div_ceil(1_000_000_000))
    }

    pub fn expired(&self, expires: Expiry) -> bool {
        match expires {
            Expiry::At(secs) => secs.saturating_mul(1_000_000_000) <= self.wall_ns,
            Expiry::Never => false,
        }
    }

    /// The `CLOCK_MONOTONIC` deadline the kernel compares with; `u64::MAX` for never.
    pub fn deadline_ns(&self, expires: Expiry) -> u64 {
        match expires {
            Expiry::At(secs) => {
                let left = secs
                    .saturating_mul(1_000_000_000)
                    .saturating_sub(self.wall_ns);
                self.mono_ns.saturating_add(left).min(u64::MAX - 1)
            }
            Expiry::Never => u64::MAX,
        }
    }
}

/// Hit counts of the live entries as the kernel has them.
#[derive(Clone, Debug, Default)]
pub struct Hits {
    pub allow: HashMap<IpNet, u64>,
    pub deny: HashMap<IpNet, u64>,
}

impl Hits {
    pub fn read(maps: &Maps) -> Result<Hits, LiveError> {
        let mut hits = Hits::default();
        for (action, list) in [
            (Action::Allow, &mut hits.allow),
            (Action::Deny, &mut hits.deny),
        ] {
            let (v4, v6) = match action {
                Action::Allow => (&maps.live_allow_v4, &maps.live_allow_v6),
                Action::Deny => (&maps.live_deny_v4, &maps.live_deny_v6),
            };
            for (net, entry) in read(v4, name(action, 4))?
                .into_iter()
                .chain(read(v6, name(action, 6))?)
            {
                list.insert(net, entry.hits);
            }
        }
        Ok(hits)
    }

    pub fn get(&self, action: Action, net: &IpNet) -> u64 {
        let list = match action {
            Action::Allow => &self.allow,
            Action::Deny => &self.deny,
        };
        list.get(net).copied().unwrap_or(0)
    }
}

impl LiveSet {
    /// Makes the four live tries hold exactly this set (deny deadlines folded) and the
    /// `HAS_LIVE_*` flags say which are non-empty. Returns those flags.
    pub fn apply(&self, maps: &mut Maps) -> Result<u32, LiveError> {
        self.apply_at(maps, &Clock::now())
    }

    pub fn apply_at(&self, maps: &mut Maps, clock: &Clock) -> Result<u32, LiveError> {
        let allow: Vec<(IpNet, u64)> = self.allow.iter().map(|net| (*net, u64::MAX)).collect();
        let deny: Vec<(IpNet, u64)> = fold_expiries(&self.deny)
            .into_iter()
            .map(|(net, expires)| (net, clock.deadline_ns(expires)))
            .collect();
        for (action, entries) in [(Action::Allow, &allow), (Action::Deny, &deny)] {
            for family in [4, 6] {
                let count = entries
                    .iter()
                    .filter(|(n, _)| family_of(n) == family)
                    .count();
                if count > capacity::LIVE as usize {
                    return Err(LiveError::TooMany {
                        action,
                        family,
                        count,
                        max: capacity::LIVE,
                    });
                }
            }
        }
        let mut flags = 0;
        if !allow.is_empty() {
            flags |= config_flag::HAS_LIVE_ALLOW;
        }
        if !deny.is_empty() {
            flags |= config_flag::HAS_LIVE_DENY;
        }
        const LIVE: u32 = config_flag::HAS_LIVE_ALLOW | config_flag::HAS_LIVE_DENY;
        // The kernel skips a trie whose flag is off: raise flags before the entries arrive,
        // lower them only after the trie is empty.
        let mut config = maps.config()?;
        if config.flags & flags != flags {
            config.flags |= flags;
            maps.set_config(&config)?;
        }
        // The block bitmaps cover the old entries and the new ones while the tries change,
        // and only the new ones after. All of each is written first, not only what changed:
        // a bitmap that lags its tries (a pin created anew next to old tries) would let
        // sources past their entries.
        let have_allow_v4 = read(&maps.live_allow_v4, name(Action::Allow, 4))?;
        let have_allow_v6 = read(&maps.live_allow_v6, name(Action::Allow, 6))?;
        let have_deny_v4 = read(&maps.live_deny_v4, name(Action::Deny, 4))?;
        let have_deny_v6 = read(&maps.live_deny_v6, name(Action::Deny, 6))?;
        let new = Bitmaps::of(allow.iter().chain(&deny).map(|(n, _)| n));
        let old = Bitmaps::of(
            [&have_allow_v4, &have_allow_v6, &have_deny_v4, &have_deny_v6]
                .into_iter()
                .flatten()
                .map(|(n, _)| n),
        );
        let both = old.union(&new);
        both.write(maps, |_, _, bits| bits != 0)?;
        sync(
            &mut maps.live_allow_v4,
            name(Action::Allow, 4),
            have_allow_v4,
            &allow,
        )?;
        sync(
            &mut maps.live_allow_v6,
            name(Action::Allow, 6),
            have_allow_v6,
            &allow,
        )?;
        sync(
            &mut maps.live_deny_v4,
            name(Action::Deny, 4),
            have_deny_v4,
            &deny,
        )?;
        sync(
            &mut maps.live_deny_v6,
            name(Action::Deny, 6),
            have_deny_v6,
            &deny,
        )?;
        new.write(maps, |family, word, bits| both.words[family][word] != bits)?;
        let mut config = maps.config()?;
        if config.flags & LIVE != flags {
            config.flags = (config.flags & !LIVE) | flags;
            maps.set_config(&config)?;
        }
        Ok(flags)
    }
}

/// The live block bitmaps (see `sources::LIVE_BLOCK_WORDS_V4`), whole: IPv4 a bit per /24,
/// IPv6 a bit per hashed /48.
struct Bitmaps {
    words: [Vec<u64>; 2],
}

/// An IPv6 entry shorter than this marks every bit (a bit per /48 inside would be more
/// than 65,536 bits): such an entry sends every IPv6 packet to the tries.
const SHORTEST_MARKED_V6: u8 = 32;

impl Bitmaps {
    /// The bits of every block a prefix covers or lies in.
    fn of<'a>(nets: impl Iterator<Item = &'a IpNet>) -> Bitmaps {
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

    fn union(&self, other: &Bitmaps) -> Bitmaps {
        let merge = |a: &[u64], b: &[u64]| a.iter().zip(b).map(|(x, y)| x | y).collect();
        Bitmaps {
            words: [
                merge(&self.words[0], &other.words[0]),
                merge(&self.words[1], &other.words[1]),
            ],
        }
    }

    /// Writes the words `pick` chooses, given (family index, word index, bits).
    fn write(
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

fn name(action: Action, family: u8) -> &'static str {
    match (action, family) {
        (Action::Allow, 4) => map_name::LIVE_ALLOW_V4,
        (Action::Allow, _) => map_name::LIVE_ALLOW_V6,
        (Action::Deny, 4) => map_name::LIVE_DENY_V4,
        (Action::Deny, _) => map_name::LIVE_DENY_V6,
    }
}

fn family_of(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

/// An address of one family as the tries' key data (network byte order).
trait Octets<const N: usize>: Sized {
    fn octets(net: &IpNet) -> Option<[u8; N]>;
    fn net(len: u32, data: [u8; N]) -> Option<IpNet>;
}

struct Family;

impl Octets<4> for Family {
    fn octets(net: &IpNet) -> Option<[u8; 4]> {
        match net {
            IpNet::V4(n) => Some(n.network().octets()),
            IpNet::V6(_) => None,
        }
    }
    fn net(len: u32, data: [u8; 4]) -> Option<IpNet> {
        IpNet::new(data.into(), u8::try_from(len).ok()?).ok()
    }
}

impl Octets<16> for Family {
    fn octets(net: &IpNet) -> Option<[u8; 16]> {
        match net {
            IpNet::V6(n) => Some(n.network().octets()),
            IpNet::V4(_) => None,
        }
    }
    fn net(len: u32, data: [u8; 16]) -> Option<IpNet> {
        IpNet::new(data.into(), u8::try_from(len).ok()?).ok()
    }
}

/// Every entry of a trie. Collected before any change: iterating while inserting or
/// removing could skip or repeat keys.
fn read<const N: usize>(
    trie: &LpmTrie<MapData, [u8; N], LiveEntry>,
    name: &'static str,
) -> Result<Vec<(IpNet, LiveEntry)>, LiveError>
where
    Family: Octets<N>,
{
    let mut entries = Vec::new();
    for item in trie.iter() {
        let (key, entry) = item.map_err(|source| LiveError::Map { name, source })?;
        // A key no prefix describes cannot come from us; leaving it out makes sync remove it.
        if let Some(net) = Family::net(key.prefix_len(), key.data()) {
            entries.push((net, entry));
        }
    }
    Ok(entries)
}

/// Makes one trie, which holds `have` (from [`read`]), hold the entries of `want` of its
/// family: inserts what is missing,
/// rewrites changed deadlines (keeping the hit count), removes the rest. Longer prefixes
/// are written first, so a new outer entry never meets inner ones with stale deadlines.
fn sync<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], LiveEntry>,
    name: &'static str,
    have: Vec<(IpNet, LiveEntry)>,
    want: &[(IpNet, u64)],
) -> Result<(), LiveError>
where
    Family: Octets<N>,
{
    let err = |source| LiveError::Map { name, source };
    let have: HashMap<IpNet, LiveEntry> = have.into_iter().collect();
    let mut wanted: Vec<(IpNet, [u8; N], u64)> = want
        .iter()
        .filter_map(|(net, deadline)| Some((*net, Family::octets(net)?, *deadline)))
        .collect();
    wanted.sort_by_key(|(net, _, _)| std::cmp::Reverse(net.prefix_len()));
    for (net, data, expires_ns) in &wanted {
        let hits = match have.get(net) {
            Some(old) if same_deadline(old.expires_ns, *expires_ns) => continue,
            Some(old) => old.hits,
            None => 0,
        };
        let key = Key::new(u32::from(net.prefix_len()), *data);
        let entry = LiveEntry {
            expires_ns: *expires_ns,
            hits,
        };
        trie.insert(&key, entry, 0).map_err(err)?;
    }
    let keep: std::collections::HashSet<IpNet> = wanted.iter().map(|(net, _, _)| *net).collect();
    for net in have.keys().filter(|net| !keep.contains(net)) {
        let data = Family::octets(net).expect("read returns this trie's family");
        trie.remove(&Key::new(u32::from(net.prefix_len()), data))
            .map_err(err)?;
    }
    Ok(())
}

fn same_deadline(a: u64, b: u64) -> bool {
    a == b || (a != u64::MAX && b != u64::MAX && a.abs_diff(b) < SAME_DEADLINE_NS)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use mirror_xdp_common::sources::live_block_bit_v6;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn deadlines_move_wall_expiries_onto_the_monotonic_clock() {
        let clock = Clock {
            wall_ns: 1_000 * SEC + 250_000_000,
            mono_ns: 77 * SEC,
        };
        assert_eq!(clock.deadline_ns(Expiry::Never), u64::MAX);
        assert_eq!(
            clock.deadline_ns(Expiry::At(1_010)),
            77 * SEC + 9_750_000_000
        );
        // Already past: a deadline of now, which the kernel treats as expired.
        assert_eq!(clock.deadline_ns(Expiry::At(900)), 77 * SEC);
        assert!(clock.expired(Expiry::At(1_000)));
        assert!(!clock.expired(Expiry::At(1_001)));
        assert!(!clock.expired(Expiry::Never));
        // A 2 s TTL lasts at least 2 s: rounded up to the next whole second.
        assert_eq!(clock.expiry_after(2), Expiry::At(1_003));
    }

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

    #[test]
    fn jitter_is_not_a_new_deadline_but_a_second_is() {
        assert!(same_deadline(u64::MAX, u64::MAX));
        assert!(same_deadline(5 * SEC, 5 * SEC + 1_000));
        assert!(!same_deadline(5 * SEC, 6 * SEC));
        assert!(!same_deadline(u64::MAX, u64::MAX - 1));
    }

    #[test]
    fn trie_keys_and_prefixes_convert_both_ways() {
        let v4: IpNet = "192.0.2.0/24".parse().unwrap();
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert_eq!(<Family as Octets<4>>::octets(&v4), Some([192, 0, 2, 0]));
        assert_eq!(<Family as Octets<4>>::octets(&v6), None);
        assert_eq!(<Family as Octets<4>>::net(24, [192, 0, 2, 0]), Some(v4));
        let data = <Family as Octets<16>>::octets(&v6).unwrap();
        assert_eq!(<Family as Octets<16>>::net(32, data), Some(v6));
        assert_eq!(<Family as Octets<4>>::net(33, [0; 4]), None);
    }
}
