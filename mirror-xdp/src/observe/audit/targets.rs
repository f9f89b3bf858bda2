//! What the audit aims its frames at, picked from the live policy: a port no rule opens, a
//! port open to all, a port open only to its `from` sources (hit from outside them), a
//! denied source, and sources the policy does not name at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Serialize;

use super::intent::PolicyView;
use crate::policy::{Action, Proto};

/// Ports tried first for "closed": ones scanners probe. After them, every port in order.
const CLOSED_CANDIDATES: [u16; 6] = [23, 25, 445, 3389, 111, 6379];
/// Ports tried first for "open to all": the usual mirror services.
const OPEN_CANDIDATES: [u16; 4] = [80, 443, 873, 8080];

/// The kinds of destination a frame is aimed at; each is a different way to be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// An unnamed source to a TCP port no rule opens.
    Closed,
    /// An unnamed source to a TCP port open only to its `from` sources.
    Restricted,
    /// A denied source to a port open to all.
    Denied,
    /// An unnamed source to a TCP port open to all: the control, which must pass.
    Open,
}

impl TargetKind {
    pub fn describe(self) -> &'static str {
        match self {
            TargetKind::Closed => "closed port",
            TargetKind::Restricted => "from-restricted port",
            TargetKind::Denied => "denied source",
            TargetKind::Open => "open port",
        }
    }
}

/// The policy's ports and sources the corpus is built around. `None` where the policy has
/// no such thing (a policy with `default = "pass"` has no closed port).
#[derive(Clone, Debug, Serialize)]
pub struct Targets {
    pub closed_port: Option<u16>,
    pub open_port: Option<u16>,
    pub restricted_port: Option<u16>,
    pub denied_v4: Option<Ipv4Addr>,
    pub denied_v6: Option<Ipv6Addr>,
    /// Sources the policy names nowhere, one per family.
    pub outsider_v4: Ipv4Addr,
    pub outsider_v6: Ipv6Addr,
    /// IPv4 addresses the policy trusts, or lets into a `from` rule: their IPv4-mapped IPv6
    /// forms must earn nothing.
    pub trusted_v4: Option<Ipv4Addr>,
    pub from_v4: Option<Ipv4Addr>,
    /// Where the frames go: an address a rule's `to` names, if any.
    pub dst_v4: Ipv4Addr,
    pub dst_v6: Ipv6Addr,
}

/// A frame's aim: who sends, to which TCP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aim {
    pub kind: TargetKind,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub port: u16,
}

impl Targets {
    pub fn pick(view: &PolicyView) -> Targets {
        let policy = &view.policy;
        // Where the frames go: an address some rule's `to` names, so that its rules are
        // the ones checked, else a documentation address.
        let to_nets = || {
            let ports = policy.rules.iter().filter_map(|r| r.to.as_ref());
            let protocols = policy.protocols.iter().filter_map(|r| r.to.as_ref());
            ports.chain(protocols).flatten().map(host_in)
        };
        let dst_v4 = to_nets()
            .find_map(v4)
            .unwrap_or(Ipv4Addr::new(198, 51, 100, 1));
        let dst_v6 = to_nets()
            .find_map(|a| match a {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            })
            .unwrap_or(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1));
        let tcp_rule = |port: u16| policy.rule_for(Proto::Tcp, port, dst_v4.into());
        let closed_port = (policy.settings.default == Action::Drop)
            .then(|| first_port(&CLOSED_CANDIDATES, |p| tcp_rule(p).is_none()))
            .flatten();
        let open_port = first_port(&OPEN_CANDIDATES, |p| {
            tcp_rule(p).is_some_and(|r| r.from.is_none())
        });
        let outsider_v4 = outsider_v4(view);
        let outsider_v6 = outsider_v6(view);
        let restricted_port = first_port(&[22], |p| {
            tcp_rule(p).is_some_and(|r| {
                r.from.as_ref().is_some_and(|from| {
                    !from.iter().any(|n| n.contains(&IpAddr::V4(outsider_v4)))
                        && !from.iter().any(|n| n.contains(&IpAddr::V6(outsider_v6)))
                })
            })
        });
        let denied = policy.deny.iter().chain(&view.live_deny);
        let denied_v4 = denied.clone().map(host_in).find_map(|a| match a {
            IpAddr::V4(a) if view.denied(a.into()) => Some(a),
            _ => None,
        });
        let denied_v6 = denied.map(host_in).find_map(|a| match a {
            IpAddr::V6(a) if view.denied(a.into()) => Some(a),
            _ => None,
        });
        let trusted_v4 = policy
            .allow
            .iter()
            .chain(&view.live_allow)
            .map(host_in)
            .find_map(v4);
        let from_v4 = restricted_port
            .and_then(|p| tcp_rule(p)?.from.as_ref())
            .and_then(|from| from.iter().map(host_in).find_map(v4))
            .filter(|a| !view.trusted((*a).into()) && !view.denied((*a).into()));
        Targets {
            closed_port,
            open_port,
            restricted_port,
            denied_v4,
            denied_v6,
            outsider_v4,
            outsider_v6,
            trusted_v4,
            from_v4,
            dst_v4,
            dst_v6,
        }
    }

    /// The aims of the given kinds that this policy has, IPv4 or IPv6 sources. A denied
    /// source goes for the open port (it must not get even there), or port 80 if nothing is
    /// open to all.
    pub fn aims(&self, kinds: &[TargetKind], v6: bool) -> Vec<Aim> {
        let outsider: IpAddr = if v6 {
            self.outsider_v6.into()
        } else {
            self.outsider_v4.into()
        };
        let dst: IpAddr = if v6 {
            self.dst_v6.into()
        } else {
            self.dst_v4.into()
        };
        let denied: Option<IpAddr> = if v6 {
            self.denied_v6.map(Into::into)
        } else {
            self.denied_v4.map(Into::into)
        };
        kinds
            .iter()
            .filter_map(|&kind| {
                let (src, port) = match kind {
                    TargetKind::Closed => (outsider, self.closed_port?),
                    TargetKind::Restricted => (outsider, self.restricted_port?),
                    TargetKind::Denied => (denied?, self.open_port.unwrap_or(80)),
                    TargetKind::Open => (outsider, self.open_port?),
                };
                Some(Aim {
                    kind,
                    src,
                    dst,
                    port,
                })
            })
            .collect()
    }

    /// Why aims of a kind are missing, for the report.
    pub fn missing(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.closed_port.is_none() {
            notes.push(
                "the policy has no closed ports (default = \"pass\" or every port listed): \
                 frames to a closed port are not built"
                    .to_string(),
            );
        }
        if self.open_port.is_none() {
            notes.push("no TCP port is open to all: the pass controls are not built".into());
        }
        if self.restricted_port.is_none() {
            notes.push(
                "no TCP rule has `from`: frames to a from-restricted port are not built".into(),
            );
        }
        if self.denied_v4.is_none() && self.denied_v6.is_none() {
            notes.push("no source is denied: frames from a denied source are not built".into());
        }
        notes
    }
}

/// The first port of `preferred`, then of 1-65535, that is `wanted`.
fn first_port(preferred: &[u16], wanted: impl Fn(u16) -> bool) -> Option<u16> {
    preferred
        .iter()
        .copied()
        .chain(1..=u16::MAX)
        .find(|&p| wanted(p))
}

/// A host address inside a prefix: its first host (the network address for /31-/32 and
/// /127-/128), so it is inside whatever the prefix length.
pub fn host_in(net: &IpNet) -> IpAddr {
    match net.trunc() {
        IpNet::V4(n) if n.prefix_len() < 31 => IpAddr::V4((u32::from(n.network()) + 1).into()),
        IpNet::V6(n) if n.prefix_len() < 127 => IpAddr::V6((u128::from(n.network()) + 1).into()),
        n => n.network(),
    }
}

fn v4(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// A documentation address the policy names nowhere (RFC 5737 ranges first; a policy
/// that names all three falls back to the shared address space, 100.64.0.0/10).
fn outsider_v4(view: &PolicyView) -> Ipv4Addr {
    [[198, 51, 100], [203, 0, 113], [192, 0, 2], [100, 64, 77]]
        .into_iter()
        .flat_map(|[a, b, c]| (200..=254).map(move |d| Ipv4Addr::new(a, b, c, d)))
        .find(|a| !view.names((*a).into()))
        .unwrap_or(Ipv4Addr::new(100, 127, 255, 254))
}

/// An IPv6 documentation address (2001:db8::/32) the policy names nowhere.
fn outsider_v6(view: &PolicyView) -> Ipv6Addr {
    (0xfff0u16..=0xffff)
        .map(|block| Ipv6Addr::new(0x2001, 0xdb8, block, 0, 0, 0, 0, 0x77))
        .find(|a| !view.names((*a).into()))
        .unwrap_or(Ipv6Addr::new(0x3fff, 0xfff, 0, 0, 0, 0, 0, 0x77))
}
