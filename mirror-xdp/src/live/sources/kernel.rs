//! Bringing the kernel's live tries, their block bitmaps and their config flags in line
//! with a [`LiveSet`], and reading the tries' hit counts.

use std::collections::HashMap;

use aya::maps::{LpmTrie, MapData, lpm_trie::Key};
use ipnet::IpNet;
use mirror_xdp_common::{LiveEntry, capacity, config_flag, map_name};

use super::{Action, Expiry, LiveError, LiveSet, bitmaps::Bitmaps, fold_expiries};
use crate::kernel::maps::{Maps, monotonic_ns};

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
        let deny: Vec<(IpNet, u64)> = fold_expiries(&self.denies())
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
/// family: inserts what is missing, rewrites changed deadlines (keeping the hit count),
/// removes the rest. Longer prefixes are written first, so a new outer entry never meets
/// inner ones with stale deadlines.
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
