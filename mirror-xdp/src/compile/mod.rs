//! Compiles a validated [`Policy`] into the entries the kernel maps hold.
//!
//! Pure data, no syscalls: the maps module writes what this produces, and tests can inspect
//! it directly.

mod blocks;
mod config;
pub mod sources;

use std::collections::BTreeMap;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mirror_xdp_common::{
    Config, PROTO_SLOT_TCP, PROTO_SLOT_UDP, PortEntry, SourceEntry, SourceKeyV4, SourceKeyV6,
    config_flag, egress_index, port_flag, port_index, protocol_index, source_flag,
};

use crate::policy::{Policy, Proto};

pub use config::config;

/// An array map's contents: its length in words (0: not needed, the map gets one word) and
/// its non-zero words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Words {
    pub len: u32,
    pub nonzero: Vec<(u32, u64)>,
}

/// Everything the maps hold for one policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapImage {
    /// Settings and limit parameters, without `LOADED` (the maps module sets it last).
    pub config: Config,
    /// Listed slots of the ports array: (proto, port), then IP protocols; a slot only
    /// rules with `to` list has just `HAS_TO`.
    pub ports: Vec<(u32, PortEntry)>,
    /// The rules with `to`: (slot, destination prefix, the slot's entry there); egress
    /// rules' slots at `egress_index`.
    pub to_v4: Vec<(u32, Ipv4Net, PortEntry)>,
    pub to_v6: Vec<(u32, Ipv6Net, PortEntry)>,
    /// `[[egress.ports]]`: listed (proto, destination port) slots; none unless `[egress]`
    /// drops (the array is then one entry).
    pub egress_ports: Vec<(u32, PortEntry)>,
    /// The IPv4 source lists: the /24 block array, and the host entries.
    pub blocks_v4: Words,
    pub sources_v4: Vec<(SourceKeyV4, SourceEntry)>,
    /// The tiered entries of the IPv6 source lists, and their bitmap.
    pub sources_v6: Vec<(SourceKeyV6, SourceEntry)>,
    pub blocks_v6: Words,
    /// `from` prefixes by from-set id.
    pub from_v4: Vec<(u16, Ipv4Net)>,
    pub from_v6: Vec<(u16, Ipv6Net)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("too many distinct `from` lists ({0}); at most 65535 are supported")]
    TooManyFromSets(usize),
    /// A limit this machine cannot keep to (it depends on the CPU count).
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
}

pub fn proto_slot(proto: Proto) -> u32 {
    match proto {
        Proto::Tcp => PROTO_SLOT_TCP,
        Proto::Udp => PROTO_SLOT_UDP,
    }
}

/// The CPUs the kernel may run the program on (per-CPU maps have a slot for each).
pub fn possible_cpus() -> u32 {
    aya::util::nr_cpus().map_or(1, |n| n as u32)
}

/// Compiles a policy for a machine with `cpus` possible CPUs (the global SYN budget is
/// split between them).
pub fn compile(policy: &Policy, cpus: u32) -> Result<MapImage, CompileError> {
    let mut image = MapImage {
        config: config(policy, cpus)?,
        ..MapImage::default()
    };

    // Rules with the same `from` share one from-set id, port and protocol rules alike.
    let mut from_ids: BTreeMap<Vec<IpNet>, u16> = BTreeMap::new();
    let mut slots: BTreeMap<u32, PortEntry> = BTreeMap::new();
    let port_rules = policy.rules.iter().map(|rule| {
        let indexes = rule.ports.iter().flat_map(|range| {
            (range.lo..=range.hi).map(|port| port_index(proto_slot(rule.proto), port))
        });
        (indexes.collect::<Vec<u32>>(), &rule.from, &rule.to)
    });
    let protocol_rules = policy.protocols.iter().map(|rule| {
        let indexes = rule.protocols.iter().map(|p| protocol_index(*p));
        (indexes.collect::<Vec<u32>>(), &rule.from, &rule.to)
    });
    for (indexes, from, to) in port_rules.chain(protocol_rules) {
        let entry = slot_entry(from.as_deref(), &mut from_ids)?;
        for index in indexes {
            place(&mut slots, &mut image, (index, index), entry, to);
        }
    }
    image.ports = slots.into_iter().collect();

    if policy.egress.default == crate::policy::Action::Drop {
        let mut egress: BTreeMap<u32, PortEntry> = BTreeMap::new();
        let listed = PortEntry {
            flags: port_flag::LISTED,
            from_id: 0,
        };
        for rule in &policy.egress.rules {
            for range in &rule.ports {
                for port in range.lo..=range.hi {
                    let index = port_index(proto_slot(rule.proto), port);
                    let at = (index, egress_index(index));
                    place(&mut egress, &mut image, at, listed, &rule.to);
                }
            }
        }
        image.egress_ports = egress.into_iter().collect();
    }

    for (nets, id) in &from_ids {
        for net in nets {
            match net {
                IpNet::V4(n) => image.from_v4.push((*id, *n)),
                IpNet::V6(n) => image.from_v6.push((*id, *n)),
            }
        }
    }

    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let tagged = policy
        .allow
        .iter()
        .map(|n| (n, source_flag::TRUSTED))
        .chain(policy.deny.iter().map(|n| (n, source_flag::DENIED)));
    for (net, flags) in tagged {
        match net.trunc() {
            IpNet::V4(n) => v4.push((n, flags)),
            IpNet::V6(n) => v6.push((n, flags)),
        }
    }
    let tables_v4 = blocks::flatten_v4(sources::tiers_v4(&v4));
    image.blocks_v4 = tables_v4.blocks;
    if tables_v4.flat {
        image.config.flags |= config_flag::BLOCKS_FLAT_V4;
    }
    image.sources_v4 = tables_v4.hosts;
    (image.sources_v6, image.config.first_tier_v6) = sources::tiers_v6(&v6);
    (image.blocks_v6, image.config.blocks_v6_half_bits) = blocks::bitmap_v6(&v6);
    if image.blocks_v4.len != 0 {
        image.config.flags |= config_flag::HAS_SOURCES_V4;
    }
    if !image.sources_v6.is_empty() {
        image.config.flags |= config_flag::HAS_SOURCES_V6;
    }
    Ok(image)
}

/// Puts a rule's `entry` in slot `index` of `slots`: in the slot itself for a rule without
/// `to`, else the slot is marked `HAS_TO` and each destination prefix gets the entry in the
/// TO tries, at `to_index` (the slot's index there).
fn place(
    slots: &mut BTreeMap<u32, PortEntry>,
    image: &mut MapImage,
    (index, to_index): (u32, u32),
    entry: PortEntry,
    to: &Option<Vec<IpNet>>,
) {
    let slot = slots.entry(index).or_default();
    let Some(to) = to else {
        // The slot's own entry, for every destination the TO tries do not hold.
        slot.flags |= entry.flags;
        slot.from_id = entry.from_id;
        return;
    };
    slot.flags |= port_flag::HAS_TO;
    for net in to {
        match net.trunc() {
            IpNet::V4(n) => image.to_v4.push((to_index, n, entry)),
            IpNet::V6(n) => image.to_v6.push((to_index, n, entry)),
        }
    }
}

/// A listed slot, with the id of its `from` set (a new id for a list not seen yet).
fn slot_entry(
    from: Option<&[IpNet]>,
    from_ids: &mut BTreeMap<Vec<IpNet>, u16>,
) -> Result<PortEntry, CompileError> {
    let Some(from) = from else {
        return Ok(PortEntry {
            flags: port_flag::LISTED,
            from_id: 0,
        });
    };
    let mut key = from.to_vec();
    key.sort();
    let next = from_ids.len();
    if next > u16::MAX as usize {
        return Err(CompileError::TooManyFromSets(next));
    }
    Ok(PortEntry {
        flags: port_flag::LISTED | port_flag::HAS_FROM,
        from_id: *from_ids.entry(key).or_insert(next as u16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn policy(text: &str) -> Policy {
        Policy::parse(text, Path::new("test.toml")).expect("valid policy")
    }

    #[test]
    fn ports_and_from_sets_are_laid_out_per_slot() {
        let p = policy(
            r#"
version = 1
[[ports]]
proto = "tcp"
ports = [80, "30001-30003"]
[[ports]]
proto = "tcp"
ports = [22]
from = ["203.0.113.0/24", "2001:db8:a::/48"]
[[ports]]
proto = "udp"
ports = [22]
from = ["2001:db8:a::/48", "203.0.113.0/24"]
[[protocols]]
protocols = ["vrrp"]
from = ["203.0.113.0/24", "2001:db8:a::/48"]
[[protocols]]
protocols = ["gre"]
"#,
        );
        let image = compile(&p, 2).unwrap();
        let slots: Vec<u32> = image.ports.iter().map(|(i, _)| *i).collect();
        let protocols = 2 * 65536;
        assert_eq!(
            slots,
            vec![
                22,
                80,
                30001,
                30002,
                30003,
                65536 + 22,
                protocols + 47,
                protocols + 112
            ]
        );
        let ssh = image.ports[0].1;
        assert_eq!(ssh.flags, port_flag::LISTED | port_flag::HAS_FROM);
        // The same `from` in another order shares the id, for a protocol too.
        assert_eq!(image.ports[5].1, ssh);
        assert_eq!(image.ports[7].1, ssh);
        assert_eq!(image.ports[6].1.flags, port_flag::LISTED);
        assert_eq!(image.from_v4.len(), 1);
        assert_eq!(image.from_v6.len(), 1);
    }

    #[test]
    fn rules_with_to_go_to_the_to_tries() {
        let p = policy(
            r#"
version = 1
[[ports]]
proto = "tcp"
ports = [80]
to = ["198.51.100.1", "2001:db8:1::1"]
[[ports]]
proto = "tcp"
ports = [80, 22]
from = ["203.0.113.0/24"]
to = ["203.0.113.1"]
[[ports]]
proto = "tcp"
ports = [443]
[[protocols]]
protocols = ["vrrp"]
to = ["198.51.100.1"]
"#,
        );
        let image = compile(&p, 2).unwrap();
        let has_to = PortEntry {
            flags: port_flag::HAS_TO,
            from_id: 0,
        };
        let open = PortEntry {
            flags: port_flag::LISTED,
            from_id: 0,
        };
        let admins = PortEntry {
            flags: port_flag::LISTED | port_flag::HAS_FROM,
            from_id: 0,
        };
        assert_eq!(
            image.ports,
            vec![
                (22, has_to),
                (80, has_to),
                (443, open),
                (2 * 65536 + 112, has_to)
            ]
        );
        let net = |s: &str| s.parse().unwrap();
        assert_eq!(
            image.to_v4,
            vec![
                (80, net("198.51.100.1/32"), open),
                (80, net("203.0.113.1/32"), admins),
                (22, net("203.0.113.1/32"), admins),
                (2 * 65536 + 112, net("198.51.100.1/32"), open),
            ]
        );
        assert_eq!(
            image.to_v6,
            vec![(80, "2001:db8:1::1/128".parse().unwrap(), open)]
        );
    }

    #[test]
    fn settings_become_config_flags() {
        let p = policy(
            r#"
version = 1
[settings]
mode = "monitor"
default = "pass"
icmp = "drop"
fragments = "drop"
other_protocols = "pass"
return_traffic = false
"#,
        );
        let flags = compile(&p, 2).unwrap().config.flags;
        assert_eq!(
            flags,
            config_flag::MONITOR | config_flag::DEFAULT_PASS | config_flag::OTHER_PASS
        );
    }
}
