//! Bringing port slots of the generation in force in line with the rules, between reloads.
//!
//! The maps themselves are the truth: which slots are listed, which `from` set each id
//! holds. A change reads them, plans the writes ([`KernelPorts::plan`]) and makes them in
//! an order no packet can misread: a new `from` set's prefixes before the slots that point
//! at it, and only sets no slot points at any more are emptied.

use std::collections::{BTreeMap, BTreeSet};

use aya::Pod;
use aya::maps::{LpmTrie, MapData, lpm_trie::Key};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mirror_xdp_common::{FromKeyV4, FromKeyV6, PortEntry, map_name, port_flag};

use super::LivePortsError;
use crate::kernel::maps::Maps;

/// What a port slot should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// No rule lists the port (the slot is zeroed).
    Closed,
    /// Listed, any source.
    Any,
    /// Listed, only these sources: a [`super::from_key`], never empty.
    From(Vec<IpNet>),
}

/// The listed slots and the `from` sets of one generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelPorts {
    /// Listed slots only.
    pub slots: BTreeMap<u32, PortEntry>,
    /// The prefixes of each `from` id, sorted. An id whose list is empty (a policy rule
    /// with an empty set file) has no prefixes, so it is not here.
    pub sets: BTreeMap<u16, Vec<IpNet>>,
    /// The `from` ids the entries of the TO tries (rules with `to`) use: never emptied.
    pub to_sets: BTreeSet<u16>,
}

/// The writes that make slots say what they should, in the order to make them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New `from` sets: prefixes to insert before any slot points at them.
    pub new_sets: Vec<(u16, Vec<IpNet>)>,
    pub slots: Vec<(u32, PortEntry)>,
    /// Sets no listed slot points at once the slots are written: their prefixes go.
    pub unused: Vec<u16>,
}

const LISTED: PortEntry = PortEntry {
    flags: port_flag::LISTED,
    from_id: 0,
};

impl KernelPorts {
    /// Reads the ports array (a lookup per slot: some 131,328, tens of milliseconds; the
    /// protocols' slots too, whose `from` sets are in use as well) and both `from` tries.
    pub fn read(maps: &Maps) -> Result<KernelPorts, LivePortsError> {
        let mut kernel = KernelPorts::default();
        for index in 0..Maps::RULE_SLOTS {
            let entry = maps.ports.get(&index, 0).map_err(map(map_name::PORTS))?;
            if entry.flags & port_flag::LISTED != 0 {
                kernel.slots.insert(index, entry);
            }
        }
        for key in maps.from_v4.keys() {
            let key = key.map_err(map(map_name::FROM_V4))?;
            let data = key.data();
            let len = key.prefix_len().saturating_sub(32);
            if let Ok(net) = Ipv4Net::new(data.addr.into(), len as u8) {
                kernel.add(data.from_id, IpNet::V4(net));
            }
        }
        for key in maps.from_v6.keys() {
            let key = key.map_err(map(map_name::FROM_V6))?;
            let data = key.data();
            let len = key.prefix_len().saturating_sub(32);
            if let Ok(net) = Ipv6Net::new(data.addr.into(), len as u8) {
                kernel.add(data.from_id, IpNet::V6(net));
            }
        }
        let v4 = maps
            .to_v4
            .iter()
            .map(|e| (map_name::TO_V4, e.map(|(_, v)| v)));
        let v6 = maps
            .to_v6
            .iter()
            .map(|e| (map_name::TO_V6, e.map(|(_, v)| v)));
        for (name, entry) in v4.chain(v6) {
            let entry = entry.map_err(map(name))?;
            if entry.flags & port_flag::HAS_FROM != 0 {
                kernel.to_sets.insert(entry.from_id);
            }
        }
        for nets in kernel.sets.values_mut() {
            nets.sort();
        }
        Ok(kernel)
    }

    fn add(&mut self, from_id: [u8; 4], net: IpNet) {
        // Ids are u16 in the slots; a wider one cannot be ours and no slot can name it.
        if let Ok(id) = u16::try_from(u32::from_be_bytes(from_id)) {
            self.sets.entry(id).or_default().push(net);
        }
    }

    /// Whether `entry` already means `want` (the id may differ from the one a fresh
    /// write would pick; the sources are what counts).
    fn says(&self, entry: PortEntry, want: &Want) -> bool {
        let listed = entry.flags & port_flag::LISTED != 0;
        let from = entry.flags & port_flag::HAS_FROM != 0;
        match want {
            Want::Closed => !listed,
            Want::Any => listed && !from,
            Want::From(key) => listed && from && self.sets.get(&entry.from_id) == Some(key),
        }
    }

    /// The writes for `want`. A `from` list the generation holds already reuses its id;
    /// another gets an id above every id a slot or trie holds, so it can never add
    /// sources to a rule of the policy.
    pub fn plan(&self, want: &[(u32, Want)]) -> Result<Plan, LivePortsError> {
        let mut ids: BTreeMap<&Vec<IpNet>, u16> = BTreeMap::new();
        for (id, nets) in self.sets.iter().rev() {
            // Reversed, so the lowest id of equal sets wins (the policy's, if it has it).
            ids.insert(nets, *id);
        }
        let highest = self
            .slots
            .values()
            .filter(|e| e.flags & port_flag::HAS_FROM != 0)
            .map(|e| e.from_id)
            .chain(self.sets.keys().copied())
            .chain(self.to_sets.iter().copied())
            .max();
        let mut next: u32 = highest.map_or(0, |id| u32::from(id) + 1);
        let mut plan = Plan::default();
        let mut slots = self.slots.clone();
        for (index, want) in want {
            let current = slots.get(index).copied().unwrap_or_default();
            if self.says(current, want) {
                continue;
            }
            let entry = match want {
                Want::Closed => PortEntry::default(),
                Want::Any => LISTED,
                Want::From(key) => {
                    let id = match ids.get(key) {
                        Some(id) => *id,
                        None => {
                            let id =
                                u16::try_from(next).map_err(|_| LivePortsError::TooManyFromSets)?;
                            next += 1;
                            plan.new_sets.push((id, key.clone()));
                            ids.insert(key, id);
                            id
                        }
                    };
                    PortEntry {
                        flags: port_flag::LISTED | port_flag::HAS_FROM,
                        from_id: id,
                    }
                }
            };
            plan.slots.push((*index, entry));
            if entry.flags & port_flag::LISTED != 0 {
                slots.insert(*index, entry);
            } else {
                slots.remove(index);
            }
        }
        let used: BTreeSet<u16> = slots
            .values()
            .filter(|e| e.flags & port_flag::HAS_FROM != 0)
            .map(|e| e.from_id)
            .chain(self.to_sets.iter().copied())
            .collect();
        plan.unused = self
            .sets
            .keys()
            .filter(|id| !used.contains(id))
            .copied()
            .collect();
        Ok(plan)
    }
}

/// Makes the slots of `want` say what it says in the generation `maps` belong to; returns
/// how many slots were written.
pub fn apply(maps: &mut Maps, want: &[(u32, Want)]) -> Result<usize, LivePortsError> {
    let kernel = KernelPorts::read(maps)?;
    let plan = kernel.plan(want)?;
    for (id, nets) in &plan.new_sets {
        for net in nets {
            set_prefix(maps, *id, net, true)?;
        }
    }
    for (index, entry) in &plan.slots {
        maps.ports
            .set(*index, entry, 0)
            .map_err(map(map_name::PORTS))?;
    }
    for id in &plan.unused {
        for net in kernel.sets.get(id).into_iter().flatten() {
            set_prefix(maps, *id, net, false)?;
        }
    }
    Ok(plan.slots.len())
}

/// Inserts (or removes) one prefix of a `from` set, keyed as the kernel looks it up.
fn set_prefix(maps: &mut Maps, id: u16, net: &IpNet, insert: bool) -> Result<(), LivePortsError> {
    let from_id = u32::from(id).to_be_bytes();
    let len = 32 + u32::from(net.prefix_len());
    match net {
        IpNet::V4(n) => {
            let addr = n.network().octets();
            let key = Key::new(len, FromKeyV4 { from_id, addr });
            write(&mut maps.from_v4, &key, insert).map_err(map(map_name::FROM_V4))
        }
        IpNet::V6(n) => {
            let addr = n.network().octets();
            let key = Key::new(len, FromKeyV6 { from_id, addr });
            write(&mut maps.from_v6, &key, insert).map_err(map(map_name::FROM_V6))
        }
    }
}

fn write<K: Pod>(
    trie: &mut LpmTrie<MapData, K, u32>,
    key: &Key<K>,
    insert: bool,
) -> Result<(), aya::maps::MapError> {
    if insert {
        trie.insert(key, 1, 0)
    } else {
        trie.remove(key)
    }
}

fn map(name: &'static str) -> impl Fn(aya::maps::MapError) -> LivePortsError {
    move |source| LivePortsError::Map { name, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn from(id: u16) -> PortEntry {
        PortEntry {
            flags: port_flag::LISTED | port_flag::HAS_FROM,
            from_id: id,
        }
    }

    /// Port 80 open, 22 for admins (id 0), 23 for an empty set file (id 1, no prefixes).
    fn kernel() -> KernelPorts {
        KernelPorts {
            to_sets: Default::default(),
            slots: [(80, LISTED), (22, from(0)), (23, from(1))].into(),
            sets: [(0, nets(&["203.0.113.0/24"]))].into(),
        }
    }

    #[test]
    fn a_new_from_list_gets_an_id_above_every_slots_and_tries() {
        let plan = kernel()
            .plan(&[
                (8082, Want::From(nets(&["198.51.100.0/24"]))),
                (8083, Want::From(nets(&["198.51.100.0/24"]))),
            ])
            .unwrap();
        // Id 1 is the empty set's: reusing it would open port 23 to these sources.
        assert_eq!(plan.new_sets, vec![(2, nets(&["198.51.100.0/24"]))]);
        assert_eq!(plan.slots, vec![(8082, from(2)), (8083, from(2))]);
        assert!(plan.unused.is_empty());
    }

    #[test]
    fn the_same_sources_reuse_the_generations_id() {
        let plan = kernel()
            .plan(&[(8082, Want::From(nets(&["203.0.113.0/24"])))])
            .unwrap();
        assert!(plan.new_sets.is_empty());
        assert_eq!(plan.slots, vec![(8082, from(0))]);
    }

    #[test]
    fn slots_that_say_it_already_are_left_alone() {
        let plan = kernel()
            .plan(&[
                (80, Want::Any),
                (22, Want::From(nets(&["203.0.113.0/24"]))),
                (9999, Want::Closed),
            ])
            .unwrap();
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn closing_the_last_slot_of_a_set_frees_its_prefixes_only() {
        let mut k = kernel();
        k.slots.insert(8082, from(5));
        k.sets.insert(5, nets(&["198.51.100.0/24"]));
        // A leftover of an interrupted change: no slot points at id 7.
        k.sets.insert(7, nets(&["192.0.2.0/24"]));
        let plan = k.plan(&[(8082, Want::Closed), (8081, Want::Any)]).unwrap();
        assert_eq!(
            plan.slots,
            vec![(8082, PortEntry::default()), (8081, LISTED)]
        );
        assert_eq!(plan.unused, vec![5, 7]);
        // The policy's id 0 is still used by port 22.
        let plan = k.plan(&[(22, Want::Any)]).unwrap();
        assert!(plan.unused.contains(&0));
        let plan = k.plan(&[(80, Want::Closed)]).unwrap();
        assert!(!plan.unused.contains(&0));
    }

    #[test]
    fn ids_run_out_at_65536() {
        let k = KernelPorts {
            to_sets: Default::default(),
            slots: [(22, from(u16::MAX))].into(),
            sets: [(u16::MAX, nets(&["10.0.0.0/8"]))].into(),
        };
        let err = k
            .plan(&[(23, Want::From(nets(&["10.1.0.0/16"])))])
            .unwrap_err();
        assert!(matches!(err, LivePortsError::TooManyFromSets), "{err}");
    }
}
