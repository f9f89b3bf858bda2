//! `to` in `[[ports]]` and `[[protocols]]`: the destination addresses a rule applies to,
//! when two rules may list the same port or protocol (their `to` lists do not overlap), and
//! the room their entries take in the kernel's tables.

use ipnet::IpNet;
use mirror_xdp_common::capacity;

use super::PolicyError;
use super::raw::RawList;
use super::sets::Resolver;
use super::source::Source;

/// Where a rule without `to` applies, for messages.
pub(super) const HOST: &str = "every address of the host";
pub(super) const ANYWHERE: &str = "any destination";

/// Reads a rule's `to`: `None` when absent (`absent`: [`HOST`] or [`ANYWHERE`]).
pub(super) fn destinations(
    src: &Source,
    resolver: &mut Resolver,
    room: &mut ToRoom,
    (raw, absent): (&Option<RawList>, &str),
    slots: usize,
) -> Result<Option<Vec<IpNet>>, PolicyError> {
    let Some(list) = raw else {
        return Ok(None);
    };
    if list.get_ref().is_empty() {
        let msg = format!("`to = []` matches no address; leave `to` out for {absent}");
        return Err(src.error(list, msg));
    }
    let nets = resolver.items(list.get_ref(), true)?;
    room.take(slots, &nets)
        .map_err(|msg| src.error(list, msg))?;
    Ok(Some(nets))
}

/// Whether two rules' destinations can never both match: both have `to`, and no prefix of
/// one overlaps a prefix of the other.
pub fn disjoint(a: &Option<Vec<IpNet>>, b: &Option<Vec<IpNet>>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return false;
    };
    !a.iter().any(|x| {
        b.iter()
            .any(|y| x.contains(&y.network()) || y.contains(&x.network()))
    })
}

/// Entries of the destination tries: one per (port or protocol, `to` prefix) of the rules
/// with `to`, per address family.
#[derive(Default)]
pub(super) struct ToRoom {
    v4: usize,
    v6: usize,
}

impl ToRoom {
    /// Counts `slots` ports or protocols times the prefixes of `to`.
    fn take(&mut self, slots: usize, to: &[IpNet]) -> Result<(), String> {
        let v4 = to.iter().filter(|n| matches!(n, IpNet::V4(_))).count();
        self.v4 += slots * v4;
        self.v6 += slots * (to.len() - v4);
        for (family, used, room) in [
            ("IPv4", self.v4, capacity::TO_V4),
            ("IPv6", self.v6, capacity::TO_V6),
        ] {
            if used > room as usize {
                return Err(format!(
                    "the rules with `to` need {used} {family} entries so far (one per port or \
                     protocol and destination prefix); at most {room} fit: give wide port \
                     ranges fewer destinations"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Option<Vec<IpNet>> {
        Some(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn only_two_lists_that_share_no_address_are_disjoint() {
        let a = nets(&["198.51.100.1/32", "2001:db8::1/128"]);
        assert!(disjoint(&a, &nets(&["203.0.113.1/32", "2001:db8::2/128"])));
        assert!(!disjoint(&a, &nets(&["198.51.100.0/24"])));
        assert!(!disjoint(&nets(&["198.51.100.0/24"]), &a));
        assert!(!disjoint(&a, &None));
        assert!(!disjoint(&None, &None));
    }

    #[test]
    fn room_counts_slots_times_prefixes() {
        let mut room = ToRoom::default();
        let two = nets(&["198.51.100.1/32", "198.51.100.2/32"]).unwrap();
        assert!(room.take(capacity::TO_V4 as usize / 2, &two).is_ok());
        let e = room.take(1, &two).unwrap_err();
        assert!(e.contains("IPv4") && e.contains("at most"), "{e}");
    }
}
