//! The policy file (SPEC section 1): the validated form that the rest of the program uses.
//!
//! `parse` turns TOML text into a [`Policy`], resolving set names and set files; every
//! rejection is a [`PolicyError`] that names the file, line and column.

mod addr;
mod error;
mod parse;
mod ports;
mod raw;
mod setfile;
mod sets;
mod source;

use std::path::{Path, PathBuf};

use ipnet::IpNet;

pub use addr::parse_prefix;
pub use error::PolicyError;

/// A policy that parsed and validated: every address list is expanded to prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The file it was read from (set files are relative to its folder).
    pub path: PathBuf,
    pub settings: Settings,
    pub rules: Vec<PortRule>,
    /// `sources.allow`: trusted sources, bypass every later check.
    pub allow: Vec<IpNet>,
    /// `sources.deny`: always dropped.
    pub deny: Vec<IpNet>,
    pub limits: Limits,
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
    /// The SPEC's example values, which are also the defaults of an absent key.
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
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::io(path, &e))?;
        Policy::parse(&text, path)
    }

    /// Validates policy text as if it had been read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        parse::parse(text, path)
    }

    /// The rule that lists (proto, port), if any. Validation guarantees rules that share a
    /// port agree on `from`, so the first match is the answer.
    pub fn rule_for(&self, proto: Proto, port: u16) -> Option<&PortRule> {
        self.rules
            .iter()
            .find(|r| r.proto == proto && r.ports.iter().any(|p| p.contains(port)))
    }
}
