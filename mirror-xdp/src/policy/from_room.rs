//! Room for `from` prefixes in the kernel's tables: the rules' distinct `from` lists share
//! `capacity::FROM_V4` / `FROM_V6` entries. A policy that does not fit is refused here, at
//! the list that overflows, rather than by a failing map update at attach.

use std::collections::HashSet;

use ipnet::IpNet;
use mirror_xdp_common::capacity;

#[derive(Default)]
pub(super) struct FromRoom {
    /// Rules with the same list share its entries (as `compile` does).
    seen: HashSet<Vec<IpNet>>,
    v4: usize,
    v6: usize,
}

impl FromRoom {
    /// Counts a rule's `from` list; the error says what overflowed and what to do.
    pub fn take(&mut self, from: &[IpNet]) -> Result<(), String> {
        let mut key = from.to_vec();
        key.sort();
        if !self.seen.insert(key) {
            return Ok(());
        }
        let v4 = from.iter().filter(|n| matches!(n, IpNet::V4(_))).count();
        self.v4 += v4;
        self.v6 += from.len() - v4;
        for (family, used, room) in [
            ("IPv4", self.v4, capacity::FROM_V4),
            ("IPv6", self.v6, capacity::FROM_V6),
        ] {
            if used > room as usize {
                return Err(format!(
                    "the `from` lists hold {used} {family} prefixes so far; at most {room} fit \
                     in all rules together (long lists belong in sources.allow or sources.deny, \
                     which hold millions)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4s(count: u32) -> Vec<IpNet> {
        (0..count)
            .map(|i| {
                IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                    0x0a00_0000 + i,
                )))
            })
            .collect()
    }

    #[test]
    fn the_same_list_twice_takes_room_once() {
        let mut room = FromRoom::default();
        let list = v4s(capacity::FROM_V4);
        assert_eq!(room.take(&list), Ok(()));
        assert_eq!(room.take(&list), Ok(()));
        let err = room.take(&v4s(1)).unwrap_err();
        assert!(err.contains("262145 IPv4 prefixes"), "{err}");
    }
}
