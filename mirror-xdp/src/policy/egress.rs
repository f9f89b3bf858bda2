//! `[egress]`: the connections the host itself may open (README, "Policy reference").
//! Replies to inbound traffic always pass; with `default = "drop"` only the listed
//! destinations are reachable.

use std::net::IpAddr;

use ipnet::IpNet;
use toml::Spanned;

use super::destinations::{ANYWHERE, ToRoom, destinations};
use super::ports::port_range;
use super::raw::{RawEgress, RawEgressRule};
use super::sets::Resolver;
use super::source::Source;
use super::{Action, PolicyError, PortRange, Proto, applies_to};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Egress {
    /// `Pass` (the default): no egress filtering.
    pub default: Action,
    pub rules: Vec<EgressRule>,
}

impl Default for Egress {
    fn default() -> Self {
        Egress {
            default: Action::Pass,
            rules: Vec::new(),
        }
    }
}

/// One `[[egress.ports]]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRule {
    pub proto: Proto,
    pub ports: Vec<PortRange>,
    /// `None`: any destination.
    pub to: Option<Vec<IpNet>>,
    pub line: usize,
}

impl Egress {
    /// An egress rule lists (`proto`, `port`) for any destination or, with `to`, for `dst`.
    pub fn allows(&self, proto: Proto, port: u16, dst: IpAddr) -> bool {
        self.rules.iter().any(|r| {
            r.proto == proto && r.ports.iter().any(|p| p.contains(port)) && applies_to(&r.to, dst)
        })
    }

    /// What an admin should know before this applies: with `default = "drop"`, no rule
    /// letting DNS out (name lookups, package updates and CrowdSec's LAPI by name fail).
    pub fn warnings(&self) -> Vec<String> {
        let dns = |proto: Proto| {
            self.rules
                .iter()
                .any(|r| r.proto == proto && r.ports.iter().any(|p| p.contains(53)))
        };
        if self.default == Action::Drop && !dns(Proto::Udp) {
            return vec![
                "[egress] default = \"drop\" and no egress rule lists udp/53: this host's DNS \
                 lookups will fail (add [[egress.ports]] with proto = \"udp\", ports = [53] \
                 and your resolvers in `to`)"
                    .to_string(),
            ];
        }
        Vec::new()
    }
}

pub(super) fn egress(
    src: &Source,
    resolver: &mut Resolver,
    to_room: &mut ToRoom,
    raw: &RawEgress,
) -> Result<Egress, PolicyError> {
    let default = match &raw.default {
        None => Action::Pass,
        Some(v) => match v.get_ref().as_str() {
            "pass" => Action::Pass,
            "drop" => Action::Drop,
            other => {
                let msg = format!("egress.default must be \"pass\" or \"drop\", not \"{other}\"");
                return Err(src.error(v, msg));
            }
        },
    };
    let rules = raw
        .ports
        .iter()
        .map(|rule| egress_rule(src, resolver, to_room, rule))
        .collect::<Result<_, _>>()?;
    Ok(Egress { default, rules })
}

fn egress_rule(
    src: &Source,
    resolver: &mut Resolver,
    to_room: &mut ToRoom,
    spanned: &Spanned<RawEgressRule>,
) -> Result<EgressRule, PolicyError> {
    let rule = spanned.get_ref();
    let proto = super::ports::proto(src, spanned, &rule.proto, "egress rule")?;
    let items = match &rule.ports {
        Some(items) if !items.get_ref().is_empty() => items,
        Some(items) => {
            let msg = "`ports` is empty: an egress rule names the ports the host may connect to";
            return Err(src.error(items, msg));
        }
        None => {
            let msg = "egress rule has no `ports`: it names the ports the host may connect to \
                       (\"lo-hi\" ranges too)";
            return Err(src.error(spanned, msg));
        }
    };
    let ports = items
        .get_ref()
        .iter()
        .map(|item| port_range(item.get_ref()).map_err(|msg| src.error(item, msg)))
        .collect::<Result<_, _>>()?;
    let ports: Vec<PortRange> = ports;
    let slots = ports.iter().map(|r| usize::from(r.hi - r.lo) + 1).sum();
    let to = destinations(src, resolver, to_room, (&rule.to, ANYWHERE), slots)?;
    Ok(EgressRule {
        proto,
        ports,
        to,
        line: src.line_of(spanned),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::policy::Policy;

    use super::*;

    fn parse(tables: &str) -> Result<Policy, String> {
        let text = format!("version = 1\n[sets]\nupstreams = [\"192.0.2.80\"]\n{tables}");
        Policy::parse(&text, Path::new("p.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn upstreams_dns_and_ntp() {
        let p = parse(
            "[egress]\ndefault = \"drop\"\n\
             [[egress.ports]]\nproto = \"tcp\"\nports = [873, 443]\nto = [\"upstreams\"]\n\
             [[egress.ports]]\nproto = \"udp\"\nports = [53, 123]\n",
        )
        .unwrap();
        let e = p.egress;
        assert_eq!(e.default, Action::Drop);
        assert_eq!(e.rules.len(), 2);
        assert_eq!(e.rules[0].to, Some(vec!["192.0.2.80/32".parse().unwrap()]));
        assert_eq!(
            (e.rules[1].proto, e.rules[1].to.clone(), e.rules[1].line),
            (Proto::Udp, None, 10)
        );
        assert_eq!(parse("").unwrap().egress, Egress::default());
        assert_eq!(e.warnings(), Vec::<String>::new());
    }

    #[test]
    fn dropping_egress_without_dns_is_warned_about() {
        let no_dns = "[egress]\ndefault = \"drop\"\n\
                      [[egress.ports]]\nproto = \"tcp\"\nports = [873, 53]\n";
        let warnings = parse(no_dns).unwrap().egress.warnings();
        assert!(
            warnings.len() == 1 && warnings[0].contains("udp/53"),
            "{warnings:?}"
        );
        let pass = parse("[egress]\ndefault = \"pass\"\n").unwrap();
        assert_eq!(pass.egress.warnings(), Vec::<String>::new());
    }

    #[test]
    fn bad_egress_rules_are_refused_where_they_are() {
        for (table, at, words) in [
            (
                "[egress]\ndefault = \"block\"",
                ":5:11",
                "\"pass\" or \"drop\"",
            ),
            (
                "[[egress.ports]]\nproto = \"tcp\"",
                ":4:1",
                "has no `ports`",
            ),
            (
                "[[egress.ports]]\nproto = \"tcp\"\nports = []",
                ":6:9",
                "is empty",
            ),
            ("[[egress.ports]]\nports = [53]", ":4:1", "has no `proto`"),
            (
                "[[egress.ports]]\nproto = \"tcp\"\nports = [443]\nto = [\"192.0.2.1/24\"]",
                ":7:",
                "192.0.2.0/24",
            ),
            (
                "[[egress.ports]]\nproto = \"tcp\"\nports = [443]\nto = []",
                ":7:6",
                "leave `to` out for any destination",
            ),
            ("[egress]\nport = 1", ":5:1", "unknown field `port`"),
        ] {
            let e = parse(table).unwrap_err();
            assert!(e.contains(at) && e.contains(words), "{table}: {e}");
        }
    }
}
