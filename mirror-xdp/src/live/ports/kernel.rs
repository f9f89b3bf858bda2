//! Bringing port slots of the generation in force in line with the rules, between reloads.
//!
//! The maps themselves are the truth: which slots are listed, which `from` set each id
//! holds, which destinations the TO tries hold for a slot (rules with `to`). A change reads
//! them, plans the writes ([`KernelPorts::plan`]) and makes them in an order no packet can
//! misread: a new `from` set's prefixes before anything points at them, a slot's new
//! destination entries before the slot is marked `HAS_TO`, destination entries no rule
//! wants only after the slot stopped pointing at them, and only sets nothing points at any
//! more are emptied.

use std::collections::{BTreeMap, BTreeSet};

use aya::Pod;
use aya::maps::{LpmTrie, MapData, lpm_trie::Key};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mirror_xdp_common::{FromKeyV4, FromKeyV6, PortEntry, map_name, port_flag};

use super::{LivePortsError, from_key};
use crate::kernel::maps::Maps;

/// What a port slot's entry (or one of its destination entries) should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// No rule lists the port (the slot is zeroed).
    Closed,
    /// Listed, any source.
    Any,
    /// Listed, only these sources: a [`super::from_key`], never empty.
    From(Vec<IpNet>),
}

impl Want {
    /// What a rule with this `from` makes of a slot.
    pub fn of(from: &Option<Vec<IpNet>>) -> Want {
        match from {
            None => Want::Any,
            Some(nets) => Want::From(from_key(nets)),
        }
    }
}

/// What a slot should say: its own entry, for destinations no rule with `to` lists, and
/// the entry of each destination prefix of the rules with `to` (the slot is marked
/// `HAS_TO` while there are any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotWant {
    pub own: Want,
    /// Never [`Want::Closed`].
    pub to: BTreeMap<IpNet, Want>,
}

impl SlotWant {
    /// The slot of the rules that list its port or protocol, as (`from`, `to`) in policy
    /// order: the first without `to` gives its own entry, each with `to` its prefixes (the
    /// policy's checks keep two rules from disagreeing on a destination).
    pub fn of_rules<'a>(
        rules: impl IntoIterator<Item = (&'a Option<Vec<IpNet>>, &'a Option<Vec<IpNet>>)>,
    ) -> SlotWant {
        let mut slot = SlotWant {
            own: Want::Closed,
            to: BTreeMap::new(),
        };
        for (from, to) in rules {
            match to {
                None if slot.own == Want::Closed => slot.own = Want::of(from),
                None => {}
                Some(nets) => {
                    for net in nets {
                        slot.to.entry(net.trunc()).or_insert_with(|| Want::of(from));
                    }
                }
            }
        }
        slot
    }

    /// No rule lists the port for any destination.
    pub fn is_closed(&self) -> bool {
        self.own == Want::Closed && self.to.is_empty()
    }
}

/// The listed slots, the destination entries and the `from` sets of one generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelPorts {
    /// Listed slots and slots with destination entries (`HAS_TO`) only.
    pub slots: BTreeMap<u32, PortEntry>,
    /// The prefixes of each `from` id, sorted. An id whose list is empty (a policy rule
    /// with an empty set file) has no prefixes, so it is not here.
    pub sets: BTreeMap<u16, Vec<IpNet>>,
    /// The TO tries' entries by slot index (egress rules' indexes too, left alone).
    pub to: BTreeMap<u32, BTreeMap<IpNet, PortEntry>>,
}

/// The writes that make slots say what they should, in the order to make them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New `from` sets: prefixes to insert before anything points at them.
    pub new_sets: Vec<(u16, Vec<IpNet>)>,
    /// Destination entries to write before the slots.
    pub to_insert: Vec<(u32, IpNet, PortEntry)>,
    pub slots: Vec<(u32, PortEntry)>,
    /// Destination entries no rule wants: removed once the slots are written.
    pub to_remove: Vec<(u32, IpNet)>,
    /// Sets nothing points at once the rest is written: their prefixes go.
    pub unused: Vec<u16>,
}

const LISTED: PortEntry = PortEntry {
    flags: port_flag::LISTED,
    from_id: 0,
};

impl KernelPorts {
    /// Reads the ports array (a lookup per slot: some 131,328, tens of milliseconds; the
    /// protocols' slots too, whose `from` sets are in use as well), both `from` tries and
    /// both TO tries.
    pub fn read(maps: &Maps) -> Result<KernelPorts, LivePortsError> {
        let mut kernel = KernelPorts::default();
        for index in 0..Maps::RULE_SLOTS {
            let entry = maps.ports.get(&index, 0).map_err(map(map_name::PORTS))?;
            if entry.flags & (port_flag::LISTED | port_flag::HAS_TO) != 0 {
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
        for entry in maps.to_v4.iter() {
            let (key, entry) = entry.map_err(map(map_name::TO_V4))?;
            let (data, len) = (key.data(), key.prefix_len().saturating_sub(32));
            if let Ok(net) = Ipv4Net::new(data.addr.into(), len as u8) {
                kernel.add_to(data.from_id, net.into(), entry);
            }
        }
        for entry in maps.to_v6.iter() {
            let (key, entry) = entry.map_err(map(map_name::TO_V6))?;
            let (data, len) = (key.data(), key.prefix_len().saturating_sub(32));
            if let Ok(net) = Ipv6Net::new(data.addr.into(), len as u8) {
                kernel.add_to(data.from_id, net.into(), entry);
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

    /// A destination entry of the slot whose index is `slot` (big-endian, as keyed).
    fn add_to(&mut self, slot: [u8; 4], net: IpNet, entry: PortEntry) {
        let index = u32::from_be_bytes(slot);
        self.to.entry(index).or_default().insert(net, entry);
    }

    /// Whether `entry` already means `want`, `HAS_TO` aside (the id may differ from the
    /// one a fresh write would pick; the sources are what counts).
    fn says(&self, entry: PortEntry, want: &Want) -> bool {
        let listed = entry.flags & port_flag::LISTED != 0;
        let from = entry.flags & port_flag::HAS_FROM != 0;
        match want {
            Want::Closed => !listed,
            Want::Any => listed && !from,
            Want::From(key) => listed && from && self.sets.get(&entry.from_id) == Some(key),
        }
    }

    /// Whether slot `index` (its entry and its destination entries) already means `want`.
    fn slot_says(&self, index: u32, want: &SlotWant) -> bool {
        let entry = self.slots.get(&index).copied().unwrap_or_default();
        let empty = BTreeMap::new();
        let to = self.to.get(&index).unwrap_or(&empty);
        self.says(entry, &want.own)
            && (entry.flags & port_flag::HAS_TO != 0) != want.to.is_empty()
            && to.len() == want.to.len()
            && want
                .to
                .iter()
                .all(|(net, w)| to.get(net).is_some_and(|e| self.says(*e, w)))
    }

    /// The writes for `want`. A `from` list the generation holds already reuses its id;
    /// another gets an id above every id a slot or trie holds, so it can never add
    /// sources to a rule of the policy.
    pub fn plan(&self, want: &[(u32, SlotWant)]) -> Result<Plan, LivePortsError> {
        let mut ids: BTreeMap<Vec<IpNet>, u16> = BTreeMap::new();
        for (id, nets) in self.sets.iter().rev() {
            // Reversed, so the lowest id of equal sets wins (the policy's, if it has it).
            ids.insert(nets.clone(), *id);
        }
        let highest = self
            .entries()
            .filter(|e| e.flags & port_flag::HAS_FROM != 0)
            .map(|e| e.from_id)
            .chain(self.sets.keys().copied())
            .max();
        let mut next: u32 = highest.map_or(0, |id| u32::from(id) + 1);
        let mut plan = Plan::default();
        let mut entry_for = |want: &Want, plan: &mut Plan| -> Result<PortEntry, LivePortsError> {
            Ok(match want {
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
                            ids.insert(key.clone(), id);
                            id
                        }
                    };
                    PortEntry {
                        flags: port_flag::LISTED | port_flag::HAS_FROM,
                        from_id: id,
                    }
                }
            })
        };
        // The state once the plan is written, to tell which sets are still used.
        let mut after = self.clone();
        for (index, want) in want {
            if self.slot_says(*index, want) {
                continue;
            }
            let current = self.to.get(index).cloned().unwrap_or_default();
            let slot_to = after.to.entry(*index).or_default();
            for (net, w) in &want.to {
                if current.get(net).is_some_and(|e| self.says(*e, w)) {
                    continue;
                }
                let entry = entry_for(w, &mut plan)?;
                plan.to_insert.push((*index, *net, entry));
                slot_to.insert(*net, entry);
            }
            for net in current.keys().filter(|net| !want.to.contains_key(net)) {
                plan.to_remove.push((*index, *net));
                slot_to.remove(net);
            }
            let mut entry = entry_for(&want.own, &mut plan)?;
            if !want.to.is_empty() {
                entry.flags |= port_flag::HAS_TO;
            }
            plan.slots.push((*index, entry));
            if entry.flags != 0 {
                after.slots.insert(*index, entry);
            } else {
                after.slots.remove(index);
            }
        }
        let used: BTreeSet<u16> = after
            .entries()
            .filter(|e| e.flags & port_flag::HAS_FROM != 0)
            .map(|e| e.from_id)
            .collect();
        plan.unused = self
            .sets
            .keys()
            .filter(|id| !used.contains(id))
            .copied()
            .collect();
        Ok(plan)
    }

    /// Every slot entry and destination entry.
    fn entries(&self) -> impl Iterator<Item = &PortEntry> {
        self.slots
            .values()
            .chain(self.to.values().flat_map(BTreeMap::values))
    }
}

/// Makes the slots of `want` say what it says in the generation `maps` belong to; returns
/// how many slots were written.
pub fn apply(maps: &mut Maps, want: &[(u32, SlotWant)]) -> Result<usize, LivePortsError> {
    let kernel = KernelPorts::read(maps)?;
    let plan = kernel.plan(want)?;
    for (id, nets) in &plan.new_sets {
        for net in nets {
            set_prefix(maps, *id, net, true)?;
        }
    }
    for (index, net, entry) in &plan.to_insert {
        set_destination(maps, *index, net, Some(entry))?;
    }
    for (index, entry) in &plan.slots {
        maps.ports
            .set(*index, entry, 0)
            .map_err(map(map_name::PORTS))?;
    }
    for (index, net) in &plan.to_remove {
        set_destination(maps, *index, net, None)?;
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
            write(&mut maps.from_v4, &key, insert.then_some(&1)).map_err(map(map_name::FROM_V4))
        }
        IpNet::V6(n) => {
            let addr = n.network().octets();
            let key = Key::new(len, FromKeyV6 { from_id, addr });
            write(&mut maps.from_v6, &key, insert.then_some(&1)).map_err(map(map_name::FROM_V6))
        }
    }
}

/// Writes (or, with `None`, removes) slot `index`'s entry for destination `net`.
fn set_destination(
    maps: &mut Maps,
    index: u32,
    net: &IpNet,
    entry: Option<&PortEntry>,
) -> Result<(), LivePortsError> {
    let from_id = index.to_be_bytes();
    let len = 32 + u32::from(net.prefix_len());
    match net {
        IpNet::V4(n) => {
            let addr = n.network().octets();
            let key = Key::new(len, FromKeyV4 { from_id, addr });
            write(&mut maps.to_v4, &key, entry).map_err(map(map_name::TO_V4))
        }
        IpNet::V6(n) => {
            let addr = n.network().octets();
            let key = Key::new(len, FromKeyV6 { from_id, addr });
            write(&mut maps.to_v6, &key, entry).map_err(map(map_name::TO_V6))
        }
    }
}

fn write<K: Pod, V: Pod>(
    trie: &mut LpmTrie<MapData, K, V>,
    key: &Key<K>,
    value: Option<&V>,
) -> Result<(), aya::maps::MapError> {
    match value {
        Some(value) => trie.insert(key, value, 0),
        None => trie.remove(key),
    }
}

fn map(name: &'static str) -> impl Fn(aya::maps::MapError) -> LivePortsError {
    move |source| LivePortsError::Map { name, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slots whose rules have no `to`.
    fn own(want: &[(u32, Want)]) -> Vec<(u32, SlotWant)> {
        want.iter()
            .map(|(index, w)| {
                let slot = SlotWant {
                    own: w.clone(),
                    to: BTreeMap::new(),
                };
                (*index, slot)
            })
            .collect()
    }

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
            to: Default::default(),
            slots: [(80, LISTED), (22, from(0)), (23, from(1))].into(),
            sets: [(0, nets(&["203.0.113.0/24"]))].into(),
        }
    }

    #[test]
    fn a_new_from_list_gets_an_id_above_every_slots_and_tries() {
        let plan = kernel()
            .plan(&own(&[
                (8082, Want::From(nets(&["198.51.100.0/24"]))),
                (8083, Want::From(nets(&["198.51.100.0/24"]))),
            ]))
            .unwrap();
        // Id 1 is the empty set's: reusing it would open port 23 to these sources.
        assert_eq!(plan.new_sets, vec![(2, nets(&["198.51.100.0/24"]))]);
        assert_eq!(plan.slots, vec![(8082, from(2)), (8083, from(2))]);
        assert!(plan.unused.is_empty());
    }

    #[test]
    fn the_same_sources_reuse_the_generations_id() {
        let plan = kernel()
            .plan(&own(&[(8082, Want::From(nets(&["203.0.113.0/24"])))]))
            .unwrap();
        assert!(plan.new_sets.is_empty());
        assert_eq!(plan.slots, vec![(8082, from(0))]);
    }

    #[test]
    fn slots_that_say_it_already_are_left_alone() {
        let plan = kernel()
            .plan(&own(&[
                (80, Want::Any),
                (22, Want::From(nets(&["203.0.113.0/24"]))),
                (9999, Want::Closed),
            ]))
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
        let plan = k
            .plan(&own(&[(8082, Want::Closed), (8081, Want::Any)]))
            .unwrap();
        assert_eq!(
            plan.slots,
            vec![(8082, PortEntry::default()), (8081, LISTED)]
        );
        assert_eq!(plan.unused, vec![5, 7]);
        // The policy's id 0 is still used by port 22.
        let plan = k.plan(&own(&[(22, Want::Any)])).unwrap();
        assert!(plan.unused.contains(&0));
        let plan = k.plan(&own(&[(80, Want::Closed)])).unwrap();
        assert!(!plan.unused.contains(&0));
    }

    #[test]
    fn destinations_go_in_before_the_slot_points_at_them_and_out_after() {
        let admins = nets(&["203.0.113.0/24"]);
        let a: IpNet = "198.51.100.1/32".parse().unwrap();
        let b: IpNet = "198.51.100.2/32".parse().unwrap();
        // 8080 to a for anyone, to b for the admins (id 0).
        let want = SlotWant {
            own: Want::Closed,
            to: [(a, Want::Any), (b, Want::From(admins.clone()))].into(),
        };
        let plan = kernel().plan(&[(8080, want.clone())]).unwrap();
        assert!(plan.new_sets.is_empty());
        assert_eq!(plan.to_insert, vec![(8080, a, LISTED), (8080, b, from(0))]);
        let has_to = PortEntry {
            flags: port_flag::HAS_TO,
            from_id: 0,
        };
        assert_eq!(plan.slots, vec![(8080, has_to)]);
        // Written, it is in place.
        let mut k = kernel();
        k.slots.insert(8080, has_to);
        k.to.insert(8080, [(a, LISTED), (b, from(0))].into());
        assert_eq!(k.plan(&[(8080, want)]).unwrap(), Plan::default());
        // Dropping b: the slot stays marked, b's entry goes; port 22 still uses id 0.
        let only_a = SlotWant {
            own: Want::Closed,
            to: [(a, Want::Any)].into(),
        };
        let plan = k.plan(&[(8080, only_a)]).unwrap();
        assert_eq!(
            (plan.to_insert.len(), plan.to_remove.clone()),
            (0, vec![(8080, b)])
        );
        assert!(plan.unused.is_empty());
        // Closed: the mark off first, then both entries.
        let plan = k.plan(&own(&[(8080, Want::Closed)])).unwrap();
        assert_eq!(plan.slots, vec![(8080, PortEntry::default())]);
        assert_eq!(plan.to_remove, vec![(8080, a), (8080, b)]);
    }

    #[test]
    fn a_set_only_destination_entries_use_stays() {
        let mut k = kernel();
        let a: IpNet = "198.51.100.1/32".parse().unwrap();
        k.to.insert(9000, [(a, from(0))].into());
        // Port 22 no longer points at id 0, but 9000's entry for a does.
        let plan = k.plan(&own(&[(22, Want::Any)])).unwrap();
        assert!(!plan.unused.contains(&0));
    }

    #[test]
    fn rules_make_a_slot_first_without_to_then_each_destination() {
        let admins = Some(nets(&["203.0.113.0/24"]));
        let to = Some(nets(&["198.51.100.1/32", "2001:db8::/64"]));
        let slot = SlotWant::of_rules([(&None, &to), (&admins, &None), (&None, &None)]);
        assert_eq!(slot.own, Want::From(nets(&["203.0.113.0/24"])));
        assert_eq!(slot.to.len(), 2);
        assert!(slot.to.values().all(|w| *w == Want::Any));
        assert!(SlotWant::of_rules([]).is_closed());
    }

    #[test]
    fn ids_run_out_at_65536() {
        let k = KernelPorts {
            to: Default::default(),
            slots: [(22, from(u16::MAX))].into(),
            sets: [(u16::MAX, nets(&["10.0.0.0/8"]))].into(),
        };
        let err = k
            .plan(&own(&[(23, Want::From(nets(&["10.1.0.0/16"])))]))
            .unwrap_err();
        assert!(matches!(err, LivePortsError::TooManyFromSets), "{err}");
    }
}
