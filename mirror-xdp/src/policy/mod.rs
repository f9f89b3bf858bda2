//! The policy file (README, "Policy reference"): the validated form the program uses.
//!
//! `parse` turns TOML text into a [`Policy`], resolving set names and set files; every
//! rejection is a [`PolicyError`] that names the file, line and column.

mod addr;
pub mod bounded;
pub mod crowdsec;
mod destinations;
pub mod diff;
pub mod egress;
mod error;
mod files;
mod from_room;
#[cfg(test)]
mod fuzz_corpus;
#[cfg(test)]
mod hostile_input;
mod locate;
mod parse;
mod ports;
pub mod protocols;
mod raw;
pub mod setfile;
mod sets;
mod source;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

pub use addr::parse_prefix;
pub use destinations::disjoint;
pub use error::PolicyError;
pub use files::PolicyFiles;
pub use locate::{Location, SourceList};

/// A policy that parsed and validated: every address list is expanded to prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The file it was read from (set files are relative to its folder).
    pub path: PathBuf,
    pub settings: Settings,
    pub rules: Vec<PortRule>,
    /// `[[protocols]]`: other IP protocols the host takes.
    pub protocols: Vec<protocols::ProtocolRule>,
    /// `[egress]`: what the host may connect to.
    pub egress: egress::Egress,
    /// `sources.allow`: trusted sources, bypass every later check.
    pub allow: Vec<IpNet>,
    /// `sources.deny`: always dropped.
    pub deny: Vec<IpNet>,
    pub limits: Limits,
    /// Where `global_syn_rate` is set (line, column), for the compiler's messages (its
    /// check needs the machine's CPU count); `None` when the file does not set it.
    pub global_syn_rate_at: Option<(usize, usize)>,
    /// The resolved `[sets]` by name: live rules (`port allow --from SET`) name them too.
    pub sets: BTreeMap<String, Vec<IpNet>>,
    /// `[crowdsec]`: the LAPI `run` keeps ban decisions from.
    pub crowdsec: Option<crowdsec::Crowdsec>,
    /// The texts it was compiled from, which its generation keeps.
    pub files: PolicyFiles,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    pub default: Action,
    pub icmp: Action,
    pub fragments: Action,
    pub other_protocols: Action,
    pub return_traffic: bool,
}

impl Default for Settings {
    /// The README's example values (Policy reference), also the defaults of an absent key.
    fn default() -> Self {
        Settings {
            mode: Mode::Enforce,
            default: Action::Drop,
            icmp: Action::Pass,
            fragments: Action::Pass,
            other_protocols: Action::Drop,
            return_traffic: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Monitor,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Monitor => "monitor",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// Whether a rule with destinations `to` (`None`: every address) applies to `dst`. An
/// address matches only prefixes of its own family.
pub fn applies_to(to: &Option<Vec<IpNet>>, dst: IpAddr) -> bool {
    to.as_ref()
        .is_none_or(|nets| nets.iter().any(|n| n.contains(&dst)))
}

/// An inclusive port range; a single port has `lo == hi`. Always `1 <= lo <= hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

/// One `[[ports]]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    pub proto: Proto,
    pub ports: Vec<PortRange>,
    /// `None`: any source. `Some(list)`: only these prefixes (the expanded `from`).
    pub from: Option<Vec<IpNet>>,
    /// `None`: every address of the host. `Some(list)`: packets to these destinations only
    /// (the expanded `to`); to another one the rule is as if absent.
    pub to: Option<Vec<IpNet>>,
    /// The line of the rule's `[[ports]]` header, for messages; 0 for a rule that does not
    /// come from the policy file (a live rule merged in).
    pub line: usize,
}

/// The `[limits]` table. 0 means off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub per_source_pps: u64,
    pub per_source_burst: u64,
    pub per_source_syn_rate: u64,
    pub per_source_syn_burst: u64,
    pub global_syn_rate: u64,
    pub ban_seconds: u64,
    pub source_prefix_v4: u8,
    pub source_prefix_v6: u8,
    /// Answer SYNs over `global_syn_rate` with SYN cookies (XDP_TX) instead of dropping them.
    pub syn_cookies: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_source_pps: 0,
            per_source_burst: 0,
            per_source_syn_rate: 0,
            per_source_syn_burst: 0,
            global_syn_rate: 0,
            ban_seconds: 0,
            source_prefix_v4: 32,
            source_prefix_v6: 64,
            syn_cookies: false,
        }
    }
}

impl Limits {
    /// Names of the limits that are switched on (a rate, a ban time, SYN cookies), for
    /// messages.
    pub fn enabled(&self) -> Vec<&'static str> {
        [
            ("per_source_pps", self.per_source_pps),
            ("per_source_syn_rate", self.per_source_syn_rate),
            ("global_syn_rate", self.global_syn_rate),
            ("ban_seconds", self.ban_seconds),
            ("syn_cookies", self.syn_cookies as u64),
        ]
        .into_iter()
        .filter(|(_, v)| *v != 0)
        .map(|(name, _)| name)
        .collect()
    }
}

impl Policy {
    /// Reads and validates a policy file (and its set files) within the bounds of
    /// [`bounded`].
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bytes = bounded::read_file(path).map_err(|e| PolicyError::unreadable(path, &e))?;
        let text = String::from_utf8(bytes).map_err(|e| PolicyError::not_utf8(path, &e))?;
        Policy::parse(&text, path)
    }

    /// Validates policy text as if it had been read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        parse::parse(text, path, files::Reader::Disk(BTreeMap::new()))
    }

    /// Validates a policy again from the texts it was compiled from (a generation's copy),
    /// without reading the disk.
    pub fn from_files(files: &PolicyFiles) -> Result<Policy, PolicyError> {
        let text = files.texts.get(&files.policy).ok_or_else(|| {
            PolicyError::new(&files.policy, 0, 0, "the kept copy lacks the policy's text")
        })?;
        parse::parse(text, &files.policy, files::Reader::Kept(files))
    }

    /// The rule that lists (proto, port), if any. Validation guarantees rules that share a
    /// port agree on `from`, so the first match is the answer.
    /// The `[[protocols]]` rule that lists IP protocol `protocol` for packets to `dst`, if
    /// one does.
    pub fn protocol_rule(&self, protocol: u8, dst: IpAddr) -> Option<&protocols::ProtocolRule> {
        self.protocols
            .iter()
            .find(|r| r.protocols.contains(&protocol) && applies_to(&r.to, dst))
    }

    /// The rule that lists (`proto`, `port`) for packets to `dst`, if one does.
    pub fn rule_for(&self, proto: Proto, port: u16, dst: IpAddr) -> Option<&PortRule> {
        self.rules.iter().find(|r| {
            r.proto == proto && r.ports.iter().any(|p| p.contains(port)) && applies_to(&r.to, dst)
        })
    }

    /// Expands items given outside the file (`port allow --from`) with this policy's sets,
    /// in order, without duplicates, as the file's own lists are.
    pub fn resolve(&self, items: &[ListItem]) -> Result<Vec<IpNet>, String> {
        let mut nets = Vec::new();
        for item in items {
            match item {
                ListItem::Net(net) => nets.push(*net),
                ListItem::Set(name) => match self.sets.get(name) {
                    Some(set) => nets.extend_from_slice(set),
                    None if self.sets.is_empty() => {
                        return Err(format!(
                            "unknown set '{name}' (the policy defines no sets in [sets])"
                        ));
                    }
                    None => {
                        let known: Vec<&str> = self.sets.keys().map(String::as_str).collect();
                        return Err(format!(
                            "unknown set '{name}' (the policy's sets: {})",
                            known.join(", ")
                        ));
                    }
                },
            }
        }
        Ok(addr::dedup(nets))
    }
}

/// A port or "lo-hi" range given outside the file (`port allow 30001-30010/udp`), with the
/// file's rules and messages.
pub fn parse_port_range(text: &str) -> Result<PortRange, String> {
    ports::port_range(&raw::RawPort::Text(text.to_string()))
}

/// One item of an address list given outside the file: a CIDR or address, or a set name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListItem {
    Net(IpNet),
    Set(String),
}

impl ListItem {
    /// Reads an item as the policy file does (same rules and messages).
    pub fn parse(text: &str) -> Result<ListItem, String> {
        match addr::classify(text)? {
            addr::Entry::Net(net) => Ok(ListItem::Net(net)),
            addr::Entry::Name(name) => Ok(ListItem::Set(name.to_string())),
        }
    }
}

impl std::fmt::Display for ListItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListItem::Net(net) => net.fmt(f),
            ListItem::Set(name) => f.write_str(name),
        }
    }
}
