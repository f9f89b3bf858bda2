//! `[[protocols]]`: IP protocols other than TCP, UDP and ICMP that the host takes, such as
//! VRRP between keepalived peers or GRE and ESP from a tunnel's far end (README, "Policy
//! reference").

use ipnet::IpNet;
use toml::Spanned;

use super::PolicyError;
use super::destinations::{HOST, ToRoom, destinations, disjoint};
use super::from_room::FromRoom;
use super::ports::from_key;
use super::raw::{RawPort, RawProtocolRule};
use super::sets::Resolver;
use super::source::Source;

/// The names a rule may use, with their IP protocol numbers.
pub const NAMES: &[(&str, u8)] = &[
    ("igmp", 2),
    ("ipip", 4),
    ("ipv6", 41),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ospf", 89),
    ("pim", 103),
    ("vrrp", 112),
    ("sctp", 132),
];

/// Protocols with rules of their own: ICMP, TCP, UDP, ICMPv6.
const OWN_RULES: &[(u8, &str)] = &[
    (1, "ICMP has its own setting, settings.icmp"),
    (6, "TCP has its own rules, [[ports]] with proto = \"tcp\""),
    (17, "UDP has its own rules, [[ports]] with proto = \"udp\""),
    (58, "ICMPv6 has its own setting, settings.icmp"),
];

/// One `[[protocols]]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolRule {
    /// IP protocol numbers, sorted, without repeats.
    pub protocols: Vec<u8>,
    /// `None`: any source.
    pub from: Option<Vec<IpNet>>,
    /// `None`: every address of the host.
    pub to: Option<Vec<IpNet>>,
    /// The line of the rule's `[[protocols]]` header.
    pub line: usize,
}

/// The name of protocol `number`, or the number itself.
pub fn name(number: u8) -> String {
    NAMES
        .iter()
        .find(|(_, n)| *n == number)
        .map_or_else(|| number.to_string(), |(name, _)| (*name).to_string())
}

pub(super) fn protocol_rules(
    src: &Source,
    resolver: &mut Resolver,
    (room, to_room): &mut (FromRoom, ToRoom),
    raw: &[Spanned<RawProtocolRule>],
) -> Result<Vec<ProtocolRule>, PolicyError> {
    let mut rules: Vec<ProtocolRule> = Vec::with_capacity(raw.len());
    for spanned in raw {
        let rule = spanned.get_ref();
        let Some(items) = &rule.protocols else {
            let msg = "rule has no `protocols` (names such as \"vrrp\", or numbers 0-255)";
            return Err(src.error(spanned, msg));
        };
        if items.get_ref().is_empty() {
            return Err(src.error(items, "`protocols` is empty: list at least one"));
        }
        let mut protocols = Vec::with_capacity(items.get_ref().len());
        for item in items.get_ref() {
            let number = protocol(item.get_ref()).map_err(|msg| src.error(item, msg))?;
            protocols.push((number, item));
        }
        let from = match &rule.from {
            None => None,
            Some(l) if l.get_ref().is_empty() => {
                let msg = "`from = []` matches nothing; leave `from` out to match any";
                return Err(src.error(l, msg));
            }
            Some(l) => {
                let nets = resolver.items(l.get_ref(), true)?;
                room.take(&nets).map_err(|msg| src.error(l, msg))?;
                Some(nets)
            }
        };
        let to = destinations(src, resolver, to_room, (&rule.to, HOST), protocols.len())?;
        // Two rules may list a protocol for destinations that share no address.
        for (number, item) in &protocols {
            let clash = rules.iter().find(|r| {
                r.protocols.contains(number)
                    && !(disjoint(&r.to, &to)
                        || (from_key(&r.from) == from_key(&from)
                            && from_key(&r.to) == from_key(&to)))
            });
            if let Some(earlier) = clash {
                let msg = format!(
                    "{} is listed by the rule at line {} already, for destinations this \
                     rule's cover too: one rule per protocol and destination",
                    name(*number),
                    earlier.line
                );
                return Err(src.error(*item, msg));
            }
        }
        let mut protocols: Vec<u8> = protocols.into_iter().map(|(n, _)| n).collect();
        protocols.sort_unstable();
        protocols.dedup();
        rules.push(ProtocolRule {
            protocols,
            from,
            to,
            line: src.line_of(spanned),
        });
    }
    Ok(rules)
}

/// A protocol given outside the file (`protocol allow vrrp`), with the file's rules and
/// messages.
pub fn parse(text: &str) -> Result<u8, String> {
    protocol(&RawPort::Text(text.to_string()))
}

/// A name of [`NAMES`] or a number 0-255 other than those with rules of their own.
fn protocol(raw: &RawPort) -> Result<u8, String> {
    let number = match raw {
        RawPort::Number(n) => {
            u8::try_from(*n).map_err(|_| format!("protocol numbers are 0-255, not {n}"))?
        }
        RawPort::Text(text) => {
            let lower = text.trim().to_ascii_lowercase();
            match (NAMES.iter().find(|(n, _)| *n == lower), lower.as_str()) {
                (Some((_, number)), _) => *number,
                (None, "icmp" | "icmpv6" | "ipv6-icmp") => 1,
                (None, "tcp") => 6,
                (None, "udp") => 17,
                (None, _) => match lower.parse::<u8>() {
                    Ok(n) => n,
                    Err(_) => {
                        let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                        return Err(format!(
                            "unknown protocol {text:?}: a name ({}) or a number 0-255",
                            known.join(", ")
                        ));
                    }
                },
            }
        }
    };
    match OWN_RULES.iter().find(|(n, _)| *n == number) {
        Some((_, why)) => Err(format!("protocol {number} cannot be listed here: {why}")),
        None => Ok(number),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::Policy;

    fn parse(tables: &str) -> Result<Policy, String> {
        let text =
            format!("version = 1\n[sets]\npeers = [\"192.0.2.2\", \"2001:db8::2\"]\n{tables}");
        Policy::parse(&text, Path::new("p.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn names_and_numbers_with_from() {
        let p = parse(
            "[[protocols]]\nprotocols = [\"VRRP\", 47]\nfrom = [\"peers\"]\n\
             [[protocols]]\nprotocols = [\"esp\", \"51\"]\n",
        )
        .unwrap();
        assert_eq!(p.protocols.len(), 2);
        assert_eq!(p.protocols[0].protocols, [47, 112]);
        assert_eq!(p.protocols[0].from.as_ref().unwrap().len(), 2);
        assert_eq!(p.protocols[0].line, 4);
        assert_eq!(
            (
                p.protocols[1].protocols.clone(),
                p.protocols[1].from.clone()
            ),
            (vec![50, 51], None)
        );
        assert_eq!(name(112), "vrrp");
        assert_eq!(name(253), "253");
    }

    #[test]
    fn bad_protocols_are_refused_where_they_are() {
        for (table, at, words) in [
            (
                "protocols = [\"carp\"]",
                ":5:14",
                "unknown protocol \"carp\"",
            ),
            ("protocols = [6]", ":5:14", "[[ports]] with proto = \"tcp\""),
            ("protocols = [\"icmp\"]", ":5:14", "settings.icmp"),
            ("protocols = [58]", ":5:14", "settings.icmp"),
            ("protocols = [256]", ":5:14", "0-255"),
            ("protocols = []", ":5:13", "is empty"),
            ("from = [\"peers\"]", ":4:1", "has no `protocols`"),
            (
                "protocols = [\"gre\"]\nto = []",
                ":6:6",
                "`to = []` matches no address",
            ),
            (
                "protocols = [\"gre\"]\nto = [\"192.0.2.1/24\"]",
                ":6:",
                "192.0.2.0/24",
            ),
            (
                "protocols = [\"gre\"]\nfrom = []",
                ":6:8",
                "matches nothing",
            ),
            (
                "protocols = [\"gre\"]\nport = 1",
                ":6:1",
                "unknown field `port`",
            ),
        ] {
            let e = parse(&format!("[[protocols]]\n{table}\n")).unwrap_err();
            assert!(e.contains(at) && e.contains(words), "{table}: {e}");
        }
        // Listed twice with other sources: which rule would decide?
        let twice = parse(
            "[[protocols]]\nprotocols = [\"gre\"]\n[[protocols]]\nprotocols = [47]\nfrom = [\"peers\"]\n",
        )
        .unwrap_err();
        assert!(
            twice.contains(":7:14") && twice.contains("line 4"),
            "{twice}"
        );
        // For destinations that share no address, two rules may list a protocol.
        let apart = "[[protocols]]\nprotocols = [\"vrrp\"]\nto = [\"192.0.2.1\"]\n\
                     [[protocols]]\nprotocols = [112]\nfrom = [\"peers\"]\nto = [\"192.0.2.9\"]\n";
        let p = parse(apart).unwrap();
        let at = |a: &str| a.parse().unwrap();
        assert_eq!(p.protocol_rule(112, at("192.0.2.9")).unwrap().line, 7);
        assert_eq!(p.protocol_rule(112, at("192.0.2.1")).unwrap().line, 4);
        assert!(p.protocol_rule(112, at("192.0.2.2")).is_none());
        let overlap = parse(&apart.replace("192.0.2.9", "192.0.2.0/24")).unwrap_err();
        assert!(
            overlap.contains(":8:14") && overlap.contains("line 4"),
            "{overlap}"
        );
    }
}
