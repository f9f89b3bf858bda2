//! Live rules joined to the policy's: set names resolved with the policy's `[sets]`, and
//! the policy file's own rule that a (proto, port) has one source list for each
//! destination: two rules share a port only with the same `from` and `to`, or with `to`
//! lists that share no address.

use super::{
    Expanded, Lists, LivePorts, LivePortsError, LiveRule, PortSpec, SHARING, from_text,
    merge_protocols, resolve_from, resolve_to,
};
use crate::policy::{Policy, PortRule};

impl Policy {
    /// The policy with the live rules added after its own (with line 0), as attach and
    /// reload compile it. A live rule on a port that a policy rule lists with the same
    /// sources is a harmless duplicate; with other sources, or naming a set the policy
    /// does not define, it is refused: the caller keeps what is in force.
    pub fn with_live_ports(mut self, live: &LivePorts) -> Result<Policy, LivePortsError> {
        let extra = live_rules(&self, live, None)?;
        let (protocols, mut problems) = merge_protocols(&self, live, None);
        if !problems.is_empty() {
            return Err(problems.remove(0));
        }
        self.rules.extend(extra);
        self.protocols.extend(protocols);
        Ok(self)
    }
}

/// The live rules as policy rules, each checked against the policy's rules and the live
/// rules before it. The first problem is an error; `new` names the rule being added (not
/// yet in the state file), whose error does not suggest removing it.
pub fn live_rules(
    policy: &Policy,
    live: &LivePorts,
    new: Option<&PortSpec>,
) -> Result<Vec<PortRule>, LivePortsError> {
    let (rules, mut problems) = merge(policy, live, new);
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems.remove(0))
    }
}

/// Like [`live_rules`], but a rule with a problem is left out and reported instead: a
/// removal must not be blocked by another rule that an edit of the policy file broke.
pub fn merge(
    policy: &Policy,
    live: &LivePorts,
    new: Option<&PortSpec>,
) -> (Vec<PortRule>, Vec<LivePortsError>) {
    let mut accepted: Vec<(&LiveRule, Lists)> = Vec::new();
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for rule in &live.rules {
        match check(policy, &accepted, rule) {
            Ok((from, to)) => {
                rules.push(PortRule {
                    proto: rule.spec.proto,
                    ports: vec![rule.spec.ports],
                    from: from.clone(),
                    to: to.clone(),
                    line: 0,
                });
                accepted.push((rule, Lists::new(&from, &to)));
            }
            Err((message, fix)) => {
                // The rule being added is refused; one in the state file already must go
                // (or the policy change).
                let fix = if new == Some(&rule.spec) {
                    fix
                } else {
                    format!(
                        "remove the live rule (mirror-xdp port remove {}) or change the policy",
                        rule.spec
                    )
                };
                problems.push(LivePortsError::Clash {
                    rule: rule.clone(),
                    message: format!("{message}; {fix}"),
                });
            }
        }
    }
    (rules, problems)
}

/// The rule's expanded `from` and `to`, or why it cannot join and how a new rule could.
fn check(
    policy: &Policy,
    accepted: &[(&LiveRule, Lists)],
    rule: &LiveRule,
) -> Result<Expanded, (String, String)> {
    let from = resolve_from(policy, &rule.from, "the ports")?;
    let to = resolve_to(policy, &rule.to)?;
    let lists = Lists::new(&from, &to);
    let proto = rule.spec.proto.name();
    for own in policy.rules.iter().filter(|r| r.proto == rule.spec.proto) {
        let Some(port) = shared_port(&own.ports, &rule.spec) else {
            continue;
        };
        let theirs = Lists::new(&own.from, &own.to);
        if lists.may_share(&theirs) {
            continue;
        }
        let at = format!(
            "{proto} port {port} is in the policy rule at line {} of {}",
            own.line,
            policy.path.display()
        );
        return Err(if own.to.is_none() && to.is_none() {
            (
                format!(
                    "{at}, which admits {}; a port has one source list",
                    from_text(own.from.as_deref()),
                ),
                "give the live rule the same sources, or change the policy".to_string(),
            )
        } else {
            (
                format!("{at}, for destinations this rule's cover too; {SHARING}"),
                "give the live rule `--to` addresses that rule does not cover, or change the \
                 policy"
                    .to_string(),
            )
        });
    }
    for (other, theirs) in accepted {
        if !other.spec.overlaps(&rule.spec) || lists.may_share(theirs) {
            continue;
        }
        let port = other.spec.ports.lo.max(rule.spec.ports.lo);
        let remove = format!(
            "remove that rule first (mirror-xdp port remove {})",
            other.spec
        );
        return Err(if other.to.is_none() && rule.to.is_none() {
            (
                format!(
                    "{proto} port {port} is in the live rule {other}, which admits other \
                     sources; a port has one source list"
                ),
                format!("{remove} or give this one the same sources"),
            )
        } else {
            (
                format!(
                    "{proto} port {port} is in the live rule {other}, for destinations this \
                     rule's cover too; {SHARING}"
                ),
                format!("{remove} or give this one other `--to` addresses"),
            )
        });
    }
    Ok((from, to))
}

/// The first port of `spec` that `ranges` list too.
fn shared_port(ranges: &[crate::policy::PortRange], spec: &PortSpec) -> Option<u16> {
    ranges
        .iter()
        .filter(|r| r.lo <= spec.ports.hi && spec.ports.lo <= r.hi)
        .map(|r| r.lo.max(spec.ports.lo))
        .min()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::{rule, rule_to};
    use super::*;

    const POLICY: &str = r#"version = 1
[sets]
admins = ["203.0.113.0/24", "2001:db8:a::/48"]
nobody = []

[[ports]]
proto = "tcp"
ports = [80, 443, "30001-30010"]

[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]
"#;

    fn policy() -> Policy {
        Policy::parse(POLICY, Path::new("/etc/mirror-xdp/policy.toml")).unwrap()
    }

    fn live(rules: &[LiveRule]) -> LivePorts {
        LivePorts {
            rules: rules.to_vec(),
            ..LivePorts::default()
        }
    }

    fn refused(rules: &[LiveRule]) -> String {
        match policy().with_live_ports(&live(rules)) {
            Ok(p) => panic!("accepted: {:?}", p.rules),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn live_rules_follow_the_policys_with_sets_resolved() {
        let merged = policy()
            .with_live_ports(&live(&[
                rule("8081/tcp", &[]),
                rule("8082/tcp", &["admins", "198.51.100.7"]),
                rule("5140/udp", &[]),
            ]))
            .unwrap();
        assert_eq!(merged.rules.len(), 5);
        let extra = &merged.rules[2..];
        assert!(extra.iter().all(|r| r.line == 0));
        assert_eq!(extra[0].from, None);
        let nets: Vec<ipnet::IpNet> = ["203.0.113.0/24", "2001:db8:a::/48", "198.51.100.7/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(extra[1].from, Some(nets));
        assert_eq!(
            merged
                .rule_for(crate::policy::Proto::Tcp, 8082, [198, 51, 100, 1].into())
                .map(|r| r.line),
            Some(0)
        );
    }

    #[test]
    fn a_port_that_a_rule_with_to_lists_takes_live_rules_for_other_destinations() {
        let text = format!(
            "{POLICY}[[ports]]\nproto = \"udp\"\nports = [5140]\nto = [\"198.51.100.1\"]\n"
        );
        let policy = Policy::parse(&text, Path::new("/etc/mirror-xdp/policy.toml")).unwrap();
        let refused = |rules: &[LiveRule]| {
            policy
                .clone()
                .with_live_ports(&live(rules))
                .unwrap_err()
                .to_string()
        };
        // Every destination includes the rule's.
        let e = refused(&[rule("5140/udp", &[])]);
        assert!(
            e.contains("line 14") && e.contains("for destinations this rule's cover too"),
            "{e}"
        );
        // The same destination from other sources, or a prefix around it.
        let same_address = live(&[rule_to("5140/udp", &["admins"], &["198.51.100.1"])]);
        let e = live_rules(&policy, &same_address, Some(&spec_of("5140/udp"))).unwrap_err();
        assert!(
            e.to_string()
                .contains("give the live rule `--to` addresses that rule does not cover"),
            "{e}"
        );
        assert!(!refused(&[rule_to("5140/udp", &[], &["198.51.100.0/24"])]).is_empty());
        // Another address, or the same lists: fine, and the live rule keeps its `to`.
        let merged = policy
            .clone()
            .with_live_ports(&live(&[
                rule_to("5140/udp", &["admins"], &["198.51.100.2"]),
                rule_to("5140/udp", &[], &["198.51.100.1"]),
                rule("5141/udp", &[]),
            ]))
            .unwrap();
        let to = |rule: &PortRule| rule.to.clone().map(|t| t[0].to_string());
        assert_eq!(to(&merged.rules[3]), Some("198.51.100.2/32".to_string()));
        assert_eq!(
            merged
                .rule_for(crate::policy::Proto::Udp, 5140, [198, 51, 100, 2].into())
                .map(|r| (r.line, r.from.is_some())),
            Some((0, true))
        );
    }

    #[test]
    fn live_rules_with_to_clash_with_each_other_on_shared_destinations() {
        let msg = refused(&[
            rule_to("8080/tcp", &[], &["198.51.100.0/24"]),
            rule_to("8080/tcp", &["admins"], &["198.51.100.1"]),
        ]);
        assert!(
            msg.contains(
                "is in the live rule 8080/tcp from any source to 198.51.100.0/24, for \
                          destinations this rule's cover too"
            ),
            "{msg}"
        );
        let msg = refused(&[rule_to("8080/tcp", &[], &["nobody"])]);
        assert!(msg.contains("apply to no destination"), "{msg}");
    }

    #[test]
    fn same_sources_as_the_policy_is_a_duplicate_not_a_clash() {
        let rules = [
            rule("22/tcp", &["admins"]),
            rule("22/tcp", &["2001:db8:a::/48", "203.0.113.0/24"]),
            rule("79-81/tcp", &[]),
            rule("30005/tcp", &[]),
        ];
        assert!(policy().with_live_ports(&live(&rules)).is_ok());
    }

    #[test]
    fn other_sources_on_a_policy_port_are_refused_naming_the_rule() {
        let msg = refused(&[rule("22/tcp", &[])]);
        assert!(
            msg.starts_with(
                "live rule 22/tcp from any source: tcp port 22 is in the policy rule at line 10 \
                 of /etc/mirror-xdp/policy.toml, which admits 203.0.113.0/24, 2001:db8:a::/48"
            ),
            "{msg}"
        );
        assert!(msg.contains("mirror-xdp port remove 22/tcp"), "{msg}");
        let msg = refused(&[rule("30000-30002/tcp", &["198.51.100.0/24"])]);
        assert!(
            msg.contains("tcp port 30001 is in the policy rule at line 6"),
            "{msg}"
        );
        // UDP 22 is another port.
        assert!(
            policy()
                .with_live_ports(&live(&[rule("22/udp", &[])]))
                .is_ok()
        );
    }

    #[test]
    fn live_rules_clash_with_each_other_too() {
        let msg = refused(&[rule("8080-8090/tcp", &[]), rule("8085/tcp", &["admins"])]);
        assert!(
            msg.contains("tcp port 8085 is in the live rule 8080-8090/tcp from any source"),
            "{msg}"
        );
        assert!(
            policy()
                .with_live_ports(&live(&[
                    rule("8080-8090/tcp", &["admins"]),
                    rule("8085/tcp", &["203.0.113.0/24", "2001:db8:a::/48"]),
                ]))
                .is_ok()
        );
    }

    #[test]
    fn unknown_and_empty_sets_are_refused() {
        let msg = refused(&[rule("8082/tcp", &["peers"])]);
        assert!(
            msg.contains("unknown set 'peers' (the policy's sets: admins, nobody)"),
            "{msg}"
        );
        let msg = refused(&[rule("8082/tcp", &["nobody"])]);
        assert!(msg.contains("open to no one"), "{msg}");
    }

    #[test]
    fn the_rule_being_added_is_not_told_to_remove_itself() {
        let rules = live(&[rule("22/tcp", &[])]);
        let new = spec_of("22/tcp");
        let err = live_rules(&policy(), &rules, Some(&new)).unwrap_err();
        assert!(!err.to_string().contains("port remove"), "{err}");
        assert!(err.is_invalid_input());
    }

    #[test]
    fn lenient_merge_leaves_out_only_the_broken_rules() {
        let rules = live(&[
            rule("8081/tcp", &[]),
            rule("8082/tcp", &["gone"]),
            rule("8083/tcp", &[]),
        ]);
        let (merged, problems) = merge(&policy(), &rules, None);
        let ports: Vec<u16> = merged.iter().map(|r| r.ports[0].lo).collect();
        assert_eq!(ports, [8081, 8083]);
        assert_eq!(problems.len(), 1);
    }

    fn spec_of(text: &str) -> PortSpec {
        PortSpec::parse(text).unwrap()
    }
}
