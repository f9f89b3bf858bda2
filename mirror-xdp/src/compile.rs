//! Compiles a validated [`Policy`] into the entries the kernel maps hold.
//!
//! Pure data, no syscalls: the maps module writes what this produces, and tests can inspect
//! it directly.

use std::collections::BTreeMap;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mirror_xdp_common::{
    PROTO_SLOT_TCP, PROTO_SLOT_UDP, PortEntry, config_flag, port_flag, port_index, source_flag,
};

use crate::policy::{Action, Mode, Policy, Proto};

/// Everything the maps hold for one policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapImage {
    /// `config_flag` bits, without `LOADED` (the maps module sets it last).
    pub config_flags: u32,
    /// Listed (proto, port) slots of the ports array.
    pub ports: Vec<(u32, PortEntry)>,
    /// Source prefixes with their folded `source_flag` bits.
    pub sources_v4: Vec<(Ipv4Net, u32)>,
    pub sources_v6: Vec<(Ipv6Net, u32)>,
    /// `from` prefixes by from-set id.
    pub from_v4: Vec<(u16, Ipv4Net)>,
    pub from_v6: Vec<(u16, Ipv6Net)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("too many distinct `from` lists ({0}); at most 65535 are supported")]
    TooManyFromSets(usize),
}

pub fn proto_slot(proto: Proto) -> u32 {
    match proto {
        Proto::Tcp => PROTO_SLOT_TCP,
        Proto::Udp => PROTO_SLOT_UDP,
    }
}

pub fn compile(policy: &Policy) -> Result<MapImage, CompileError> {
    let mut image = MapImage {
        config_flags: config_flags(policy),
        ..MapImage::default()
    };

    // Rules with the same `from` share one from-set id.
    let mut from_ids: BTreeMap<Vec<IpNet>, u16> = BTreeMap::new();
    let mut ports: BTreeMap<u32, PortEntry> = BTreeMap::new();
    for rule in &policy.rules {
        let entry = match &rule.from {
            None => PortEntry {
                flags: port_flag::LISTED,
                from_id: 0,
            },
            Some(from) => {
                let mut key = from.clone();
                key.sort();
                let next = from_ids.len();
                if next > u16::MAX as usize {
                    return Err(CompileError::TooManyFromSets(next));
                }
                let id = *from_ids.entry(key).or_insert(next as u16);
                PortEntry {
                    flags: port_flag::LISTED | port_flag::HAS_FROM,
                    from_id: id,
                }
            }
        };
        for range in &rule.ports {
            for port in range.lo..=range.hi {
                ports.insert(port_index(proto_slot(rule.proto), port), entry);
            }
        }
    }
    image.ports = ports.into_iter().collect();

    for (nets, id) in &from_ids {
        for net in nets {
            match net {
                IpNet::V4(n) => image.from_v4.push((*id, *n)),
                IpNet::V6(n) => image.from_v6.push((*id, *n)),
            }
        }
    }

    let tagged = policy
        .allow
        .iter()
        .map(|n| (*n, source_flag::TRUSTED))
        .chain(policy.deny.iter().map(|n| (*n, source_flag::DENIED)));
    let (v4, v6) = fold_sources(tagged);
    image.sources_v4 = v4;
    image.sources_v6 = v6;
    Ok(image)
}

fn config_flags(policy: &Policy) -> u32 {
    let s = &policy.settings;
    let mut flags = 0;
    let mut set = |on: bool, flag: u32| {
        if on {
            flags |= flag;
        }
    };
    set(s.mode == Mode::Monitor, config_flag::MONITOR);
    set(s.default == Action::Pass, config_flag::DEFAULT_PASS);
    set(s.icmp == Action::Pass, config_flag::ICMP_PASS);
    set(s.fragments == Action::Pass, config_flag::FRAGMENTS_PASS);
    set(s.other_protocols == Action::Pass, config_flag::OTHER_PASS);
    set(s.return_traffic, config_flag::RETURN_TRAFFIC);
    flags
}

type SourcePrefixes = (Vec<(Ipv4Net, u32)>, Vec<(Ipv6Net, u32)>);

/// Merges duplicate prefixes and folds into every prefix the flags of all prefixes that
/// contain it, so that the kernel's single longest-prefix lookup sees every list the
/// source is on.
fn fold_sources(tagged: impl Iterator<Item = (IpNet, u32)>) -> SourcePrefixes {
    let mut v4: BTreeMap<(u32, u8), u32> = BTreeMap::new();
    let mut v6: BTreeMap<(u128, u8), u32> = BTreeMap::new();
    for (net, flags) in tagged {
        match net.trunc() {
            IpNet::V4(n) => *v4.entry((n.network().into(), n.prefix_len())).or_default() |= flags,
            IpNet::V6(n) => *v6.entry((n.network().into(), n.prefix_len())).or_default() |= flags,
        }
    }
    let v4 = fold(v4, 32)
        .map(|((addr, len), f)| (Ipv4Net::new(addr.into(), len).expect("valid length"), f))
        .collect();
    let v6 = fold(v6, 128)
        .map(|((addr, len), f)| (Ipv6Net::new(addr.into(), len).expect("valid length"), f))
        .collect();
    (v4, v6)
}

/// Prefixes sorted by (network, length) put every container before what it contains; a
/// stack of the open containers gives each prefix the flags of all its ancestors.
fn fold<A>(sorted: BTreeMap<(A, u8), u32>, bits: u8) -> impl Iterator<Item = ((A, u8), u32)>
where
    A: Copy + Into<u128>,
{
    let mut stack: Vec<(u128, u8, u32)> = Vec::new();
    let mut out = Vec::with_capacity(sorted.len());
    for ((addr, len), flags) in sorted {
        let wide: u128 = addr.into();
        while let Some(&(top, top_len, _)) = stack.last() {
            if contains(top, top_len, wide, bits) {
                break;
            }
            stack.pop();
        }
        let folded = flags | stack.last().map_or(0, |&(_, _, f)| f);
        stack.push((wide, len, folded));
        out.push(((addr, len), folded));
    }
    out.into_iter()
}

/// Does the prefix `net/len` (of a `bits`-wide family) contain the address `addr`?
fn contains(net: u128, len: u8, addr: u128, bits: u8) -> bool {
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    (net >> shift) == (addr >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn policy(text: &str) -> Policy {
        Policy::parse(text, Path::new("test.toml")).expect("valid policy")
    }

    #[test]
    fn nested_sources_inherit_the_flags_of_their_containers() {
        let p = policy(
            r#"
version = 1
[sources]
allow = ["198.51.100.0/24"]
deny = ["198.51.0.0/16", "198.51.100.128/25", "2001:db8::/32"]
"#,
        );
        let image = compile(&p).unwrap();
        let find = |s: &str| {
            image
                .sources_v4
                .iter()
                .find(|(n, _)| n.to_string() == s)
                .map(|(_, f)| *f)
        };
        assert_eq!(find("198.51.0.0/16"), Some(source_flag::DENIED));
        assert_eq!(
            find("198.51.100.0/24"),
            Some(source_flag::DENIED | source_flag::TRUSTED)
        );
        assert_eq!(
            find("198.51.100.128/25"),
            Some(source_flag::DENIED | source_flag::TRUSTED)
        );
        assert_eq!(image.sources_v6.len(), 1);
    }

    #[test]
    fn sibling_prefixes_do_not_inherit_from_each_other() {
        let p = policy(
            r#"
version = 1
[sources]
allow = ["198.51.100.0/25"]
deny = ["198.51.100.128/25", "198.51.101.0/24"]
"#,
        );
        let image = compile(&p).unwrap();
        for (net, flags) in &image.sources_v4 {
            let expect = if net.to_string() == "198.51.100.0/25" {
                source_flag::TRUSTED
            } else {
                source_flag::DENIED
            };
            assert_eq!(*flags, expect, "{net}");
        }
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
"#,
        );
        let image = compile(&p).unwrap();
        let slots: Vec<u32> = image.ports.iter().map(|(i, _)| *i).collect();
        assert_eq!(slots, vec![22, 80, 30001, 30002, 30003, 65536 + 22]);
        let ssh = image.ports[0].1;
        assert_eq!(ssh.flags, port_flag::LISTED | port_flag::HAS_FROM);
        // The same `from` in another order shares the id.
        assert_eq!(image.ports[5].1, ssh);
        assert_eq!(image.from_v4.len(), 1);
        assert_eq!(image.from_v6.len(), 1);
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
        let flags = compile(&p).unwrap().config_flags;
        assert_eq!(
            flags,
            config_flag::MONITOR | config_flag::DEFAULT_PASS | config_flag::OTHER_PASS
        );
    }
}
