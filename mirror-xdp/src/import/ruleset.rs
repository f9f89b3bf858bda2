//! What `import` reads out of any firewall's rule set before it writes a policy: the
//! inbound rules in their order, each with the line it came from.

use std::collections::BTreeMap;

use ipnet::IpNet;

/// What a rule does with the packets it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Accept,
    /// DROP and REJECT alike: mirror-xdp drops, it does not answer.
    Drop,
}

/// The protocol a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    /// ICMP or ICMPv6 (any type).
    Icmp,
}

/// Where a rule's packets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Net(IpNet),
    /// A named set (an ipset, an nftables set), its members in [`Ruleset::sets`].
    Set(String),
}

/// One inbound rule: it matches packets of `protocol` (to `ports`, if any) from `sources`
/// (if any), and `action` decides them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub line: usize,
    pub action: Action,
    pub protocol: Protocol,
    /// Destination port ranges (inclusive); empty: every port.
    pub ports: Vec<(u16, u16)>,
    /// Empty: every source.
    pub sources: Vec<Source>,
    /// Only IPv4 (`Some(false)`) or only IPv6 (`Some(true)`) packets.
    pub v6_only: Option<bool>,
    /// Matches only while all sources together stay under this many packets a second
    /// (iptables `-m limit`, nftables `limit rate`).
    pub rate: Option<u64>,
}

/// A whole inbound rule set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub rules: Vec<Rule>,
    /// What happens to a packet no rule decides (the chain's policy), and its line.
    pub default: Option<(Action, usize)>,
    /// Replies to connections of this host and packets of accepted ones pass (conntrack
    /// ESTABLISHED,RELATED accepted), at this line.
    pub established: Option<usize>,
    pub sets: BTreeMap<String, Vec<IpNet>>,
}

/// A line the reader could not express, or a difference the policy will have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}
