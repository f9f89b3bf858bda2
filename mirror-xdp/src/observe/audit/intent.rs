//! The policy's intent, at the level an operator reads a policy: who may reach which port.
//!
//! This is deliberately not the reference model. The model mirrors the kernel program byte
//! for byte, tricks included; intent ignores every header trick and asks only what the
//! frame *means* to the host behind the filter: a TCP segment from this source to that
//! port, or a piece of a fragmented packet. A frame whose verdict differs from its meaning's
//! verdict is a finding.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::live::sources::LiveSet;
use crate::policy::{Action, Mode, Policy, Proto};

/// What a frame means to the host behind the filter, once its tricks are seen through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    /// A TCP or UDP packet to this port.
    Port(Proto, u16),
    /// A non-first fragment: it carries no port; its packet is judged by its first fragment.
    Fragment,
    /// A packet of an IP protocol other than TCP, UDP and ICMP (VRRP, GRE, ...).
    Protocol(u8),
}

/// The verdict the policy intends, and the policy words that say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intent {
    pub drop: bool,
    pub why: &'static str,
}

/// The policy in force, with the live source entries that change who is trusted or denied.
#[derive(Clone, Debug)]
pub struct PolicyView {
    pub policy: Policy,
    pub live_allow: Vec<IpNet>,
    /// Live denies that have not expired.
    pub live_deny: Vec<IpNet>,
}

impl PolicyView {
    /// The policy with the live entries of `live` that are in force at Unix time `now`.
    pub fn new(policy: Policy, live: &LiveSet, now_unix: u64) -> PolicyView {
        let live_deny = live
            .denies()
            .iter()
            .filter(|(_, expires)| expires.unix().is_none_or(|at| at > now_unix))
            .map(|(net, _)| *net)
            .collect();
        PolicyView {
            policy,
            live_allow: live.allow.iter().copied().collect(),
            live_deny,
        }
    }

    pub fn trusted(&self, src: IpAddr) -> bool {
        within(&self.policy.allow, src) || within(&self.live_allow, src)
    }

    pub fn denied(&self, src: IpAddr) -> bool {
        !self.trusted(src) && (within(&self.policy.deny, src) || within(&self.live_deny, src))
    }

    /// Whether `src` is named anywhere: trusted, denied or in some rule's `from` (or `to`:
    /// an address the rules treat apart is no outsider).
    pub fn names(&self, src: IpAddr) -> bool {
        self.trusted(src)
            || within(&self.policy.deny, src)
            || within(&self.live_deny, src)
            || self
                .policy
                .rules
                .iter()
                .any(|r| r.from.as_ref().is_some_and(|from| within(from, src)))
            || self
                .policy
                .protocols
                .iter()
                .any(|r| r.from.as_ref().is_some_and(|from| within(from, src)))
    }

    /// The verdict the policy intends for `meaning` from `src` to `dst`. Monitor mode
    /// intends to drop nothing.
    pub fn intent(&self, src: IpAddr, dst: IpAddr, meaning: Meaning) -> Intent {
        let settings = &self.policy.settings;
        if settings.mode == Mode::Monitor {
            return pass("monitor mode drops nothing");
        }
        if self.trusted(src) {
            return pass("the source is trusted");
        }
        if self.denied(src) {
            return drop("the source is denied");
        }
        let (proto, port) = match meaning {
            Meaning::Fragment => {
                return match settings.fragments {
                    Action::Pass => pass("fragments = \"pass\""),
                    Action::Drop => drop("fragments = \"drop\""),
                };
            }
            Meaning::Protocol(protocol) => {
                return match self.policy.protocol_rule(protocol, dst) {
                    Some(rule) if rule.from.as_ref().is_some_and(|from| !within(from, src)) => {
                        drop("the protocol admits only its `from` sources")
                    }
                    Some(_) => pass("a [[protocols]] rule lists the protocol"),
                    None => match settings.other_protocols {
                        Action::Pass => pass("other_protocols = \"pass\""),
                        Action::Drop => drop("no rule lists the protocol"),
                    },
                };
            }
            Meaning::Port(proto, port) => (proto, port),
        };
        match self.policy.rule_for(proto, port, dst) {
            Some(rule) if rule.from.as_ref().is_some_and(|from| !within(from, src)) => {
                drop("the port admits only its `from` sources")
            }
            Some(_) => pass("a rule opens the port"),
            None => match settings.default {
                Action::Drop => drop("no rule opens the port"),
                Action::Pass => pass("default = \"pass\""),
            },
        }
    }
}

fn pass(why: &'static str) -> Intent {
    Intent { drop: false, why }
}

fn drop(why: &'static str) -> Intent {
    Intent { drop: true, why }
}

/// Whether `addr` is in one of the prefixes (of its own family: an IPv4-mapped IPv6
/// address is not in an IPv4 prefix).
fn within(prefixes: &[IpNet], addr: IpAddr) -> bool {
    prefixes.iter().any(|net| net.contains(&addr))
}
