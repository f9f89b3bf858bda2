//! Live protocol rules (`mirror-xdp protocol`): an IP protocol other than TCP, UDP and
//! ICMP opened to any source or to some, on every address of the host or on some, kept
//! with the live port rules in their state file and joined to the policy's `[[protocols]]`
//! rules as they are.

use super::{
    Added, Expanded, Lists, LivePorts, LivePortsError, SHARING, from_text, items_key, resolve_from,
    resolve_to,
};
use crate::policy::protocols::{ProtocolRule, name};
use crate::policy::{ListItem, Policy};

/// One live protocol rule: at most one per protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveProtocol {
    pub protocol: u8,
    /// Set names stay names, resolved with the policy's `[sets]` at every reload.
    pub from: Option<Vec<ListItem>>,
    /// Destinations (`--to`), kept as given like `from`; `None`: every address.
    pub to: Option<Vec<ListItem>>,
}

impl std::fmt::Display for LiveProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} from {}",
            name(self.protocol),
            from_text(self.from.as_deref())
        )?;
        if let Some(to) = &self.to {
            write!(f, " to {}", from_text(Some(to)))?;
        }
        Ok(())
    }
}

impl LivePorts {
    pub fn protocol_position(&self, protocol: u8) -> Option<usize> {
        self.protocols.iter().position(|r| r.protocol == protocol)
    }

    /// The set with `rule` in it; a rule for the same protocol takes the new sources.
    pub fn with_protocol(&self, rule: LiveProtocol) -> (LivePorts, Added) {
        let mut after = self.clone();
        match self.protocol_position(rule.protocol) {
            Some(i)
                if items_key(&self.protocols[i].from) == items_key(&rule.from)
                    && items_key(&self.protocols[i].to) == items_key(&rule.to) =>
            {
                (after, Added::AlreadyInPlace)
            }
            Some(i) => {
                after.protocols[i] = rule;
                (after, Added::Replaced)
            }
            None => {
                after.protocols.push(rule);
                (after, Added::New)
            }
        }
    }
}

/// The live protocol rules as policy rules (line 0), each checked against the policy's:
/// the rules that join, and the problems of those that do not. `new` names the protocol
/// being added, whose error does not suggest removing it.
pub fn merge_protocols(
    policy: &Policy,
    live: &LivePorts,
    new: Option<u8>,
) -> (Vec<ProtocolRule>, Vec<LivePortsError>) {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for rule in &live.protocols {
        match check(policy, rule) {
            Ok((from, to)) => rules.push(ProtocolRule {
                protocols: vec![rule.protocol],
                from,
                to,
                line: 0,
            }),
            Err((message, fix)) => {
                let fix = if new == Some(rule.protocol) {
                    fix
                } else {
                    format!(
                        "remove the live rule (mirror-xdp protocol remove {}) or change the policy",
                        name(rule.protocol)
                    )
                };
                problems.push(LivePortsError::ProtocolClash {
                    rule: rule.clone(),
                    message: format!("{message}; {fix}"),
                });
            }
        }
    }
    (rules, problems)
}

/// The rule's expanded `from` and `to`, or why it cannot join the policy and how a new
/// rule could.
fn check(policy: &Policy, rule: &LiveProtocol) -> Result<Expanded, (String, String)> {
    let from = resolve_from(policy, &rule.from, "the protocol")?;
    let to = resolve_to(policy, &rule.to)?;
    let lists = Lists::new(&from, &to);
    let listing = policy
        .protocols
        .iter()
        .filter(|r| r.protocols.contains(&rule.protocol));
    for own in listing {
        if lists.may_share(&Lists::new(&own.from, &own.to)) {
            continue;
        }
        let at = format!(
            "{} is in the policy rule at line {} of {}",
            name(rule.protocol),
            own.line,
            policy.path.display()
        );
        return Err(if own.to.is_none() && to.is_none() {
            (
                format!(
                    "{at}, which admits {}; a protocol has one source list",
                    from_text(own.from.as_deref())
                ),
                "give the live rule the same sources, or change the policy".into(),
            )
        } else {
            (
                format!("{at}, for destinations this rule's cover too; {SHARING}"),
                "give the live rule `--to` addresses that rule does not cover, or change the \
                 policy"
                    .into(),
            )
        });
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const POLICY: &str = r#"version = 1
[sets]
peers = ["198.51.100.2", "2001:db8:1::2"]
empty = []
[[protocols]]
protocols = ["gre"]
from = ["peers"]
[[protocols]]
protocols = ["esp"]
to = ["192.0.2.1"]
"#;

    fn policy() -> Policy {
        Policy::parse(POLICY, Path::new("/etc/mirror-xdp/policy.toml")).unwrap()
    }

    fn rule(protocol: u8, from: &[&str]) -> LiveProtocol {
        LiveProtocol {
            protocol,
            from: (!from.is_empty())
                .then(|| from.iter().map(|s| ListItem::parse(s).unwrap()).collect()),
            to: None,
        }
    }

    fn rule_to(protocol: u8, from: &[&str], to: &[&str]) -> LiveProtocol {
        LiveProtocol {
            to: Some(to.iter().map(|s| ListItem::parse(s).unwrap()).collect()),
            ..rule(protocol, from)
        }
    }

    fn merged(rules: &[LiveProtocol]) -> Result<Policy, String> {
        let live = LivePorts {
            protocols: rules.to_vec(),
            ..LivePorts::default()
        };
        policy().with_live_ports(&live).map_err(|e| e.to_string())
    }

    #[test]
    fn live_protocols_join_the_policy_with_their_sources() {
        let p = merged(&[
            rule(112, &["peers"]),
            rule(47, &["2001:db8:1::2", "198.51.100.2"]),
        ])
        .unwrap();
        let vrrp = p.protocol_rule(112, "192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!((vrrp.line, vrrp.from.as_ref().map(Vec::len)), (0, Some(2)));
        // GRE: the same sources as the policy's rule, in another order: a duplicate.
        assert_eq!(
            p.protocol_rule(47, "192.0.2.1".parse().unwrap())
                .unwrap()
                .line,
            5
        );
    }

    #[test]
    fn clashes_say_where_and_what_to_do() {
        let e = merged(&[rule(47, &[])]).unwrap_err();
        assert!(e.contains("gre is in the policy rule at line 5 of /etc/mirror-xdp/policy.toml, which admits 198.51.100.2/32, 2001:db8:1::2/128"), "{e}");
        assert!(e.contains("mirror-xdp protocol remove gre"), "{e}");
        let e = merged(&[rule(50, &[])]).unwrap_err();
        assert!(e.contains("for destinations this rule's cover too"), "{e}");
        // ESP on another address than the policy's rule: fine.
        let p = merged(&[rule_to(50, &["peers"], &["192.0.2.2"])]).unwrap();
        let esp = |addr: &str| p.protocol_rule(50, addr.parse().unwrap()).map(|r| r.line);
        assert_eq!(
            (esp("192.0.2.1"), esp("192.0.2.2"), esp("192.0.2.3")),
            (Some(8), Some(0), None)
        );
        let e = merged(&[rule_to(50, &[], &["192.0.2.0/30"])]).unwrap_err();
        assert!(e.contains("for destinations this rule's cover too"), "{e}");
        let e = merged(&[rule(112, &["empty"])]).unwrap_err();
        assert!(e.contains("open to no one"), "{e}");
        let e = merged(&[rule(112, &["admins"])]).unwrap_err();
        assert!(e.contains("unknown set 'admins'"), "{e}");
    }

    #[test]
    fn allowing_again_replaces_the_sources() {
        let live = LivePorts::default();
        let (live, added) = live.with_protocol(rule(112, &[]));
        assert_eq!(added, Added::New);
        let (same, added) = live.with_protocol(rule(112, &[]));
        assert_eq!((added, &same), (Added::AlreadyInPlace, &live));
        let (live, added) = live.with_protocol(rule(112, &["peers"]));
        assert_eq!((added, live.protocols.len()), (Added::Replaced, 1));
    }
}
