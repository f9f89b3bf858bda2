//! `[[ports]]` entries: numbers and "lo-hi" ranges, and the check that a port has one `from`
//! for each destination.

use ipnet::IpNet;

use toml::Spanned;

use super::destinations::disjoint;
use super::raw::RawPort;
use super::source::Source;
use super::{PolicyError, PortRange, Proto};

/// A rule's `proto`: "tcp" or "udp"; `rule` (the table) is where a missing one is reported,
/// `what` names the kind of rule ("rule", "egress rule").
pub(super) fn proto<T>(
    src: &Source,
    rule: &Spanned<T>,
    raw: &Option<Spanned<String>>,
    what: &str,
) -> Result<Proto, PolicyError> {
    let Some(p) = raw else {
        return Err(src.error(rule, format!("{what} has no `proto` (\"tcp\" or \"udp\")")));
    };
    match p.get_ref().as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        other => {
            let msg = format!("proto must be \"tcp\" or \"udp\", not \"{other}\"");
            Err(src.error(p, msg))
        }
    }
}

/// Reads one entry of `ports`: a number, "n" or "lo-hi" (spaces around the numbers allowed,
/// as the README says); `Err` says what is wrong.
pub(super) fn port_range(item: &RawPort) -> Result<PortRange, String> {
    match item {
        RawPort::Number(n) => match u16::try_from(*n) {
            Ok(p) if p != 0 => Ok(PortRange { lo: p, hi: p }),
            _ => Err(format!("port {n} is out of range (1-65535)")),
        },
        RawPort::Text(text) => match text.split_once('-') {
            None => {
                let p = number(text, text)?;
                Ok(PortRange { lo: p, hi: p })
            }
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo, text)?, number(hi, text)?);
                if lo > hi {
                    return Err(format!(
                        "reversed range '{text}': the low port comes first (\"{hi}-{lo}\")"
                    ));
                }
                Ok(PortRange { lo, hi })
            }
        },
    }
}

fn number(part: &str, whole: &str) -> Result<u16, String> {
    let part = part.trim();
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "bad port range '{whole}': expected a port number or \"lo-hi\", like \"30001-30010\""
        ));
    }
    match part.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ if part == whole.trim() => Err(format!("port {part} is out of range (1-65535)")),
        _ => Err(format!(
            "port {part} in '{whole}' is out of range (1-65535)"
        )),
    }
}

/// The ports claimed so far, to refuse the same (proto, port) in two rules that would both
/// apply to a packet with different sources (rules that agree on `from` and `to` may share
/// ports, as may rules whose `to` lists share no address).
#[derive(Default)]
pub(super) struct PortOwners {
    owners: Vec<Owner>,
}

struct Owner {
    proto: Proto,
    range: PortRange,
    rule: usize,
    line: usize,
    from: Option<Vec<IpNet>>,
    to: Option<Vec<IpNet>>,
}

/// `from` as a set: sorted, without duplicates.
pub(super) fn from_key(from: &Option<Vec<IpNet>>) -> Option<Vec<IpNet>> {
    from.as_ref().map(|nets| {
        let mut nets = nets.clone();
        nets.sort();
        nets.dedup();
        nets
    })
}

impl PortOwners {
    /// Records that rule number `rule` (whose header is on `line`) lists `range`; `from`
    /// and `to` are its [`from_key`]s. `Err` names the earlier rule that lists a shared
    /// port differently for some destination.
    pub fn claim(
        &mut self,
        proto: Proto,
        range: PortRange,
        (rule, line): (usize, usize),
        from: &Option<Vec<IpNet>>,
        to: &Option<Vec<IpNet>>,
    ) -> Result<(), String> {
        let clash = self.owners.iter().find(|o| {
            o.rule != rule
                && o.proto == proto
                && o.range.lo <= range.hi
                && range.lo <= o.range.hi
                && (o.from != *from || o.to != *to)
                && !disjoint(&o.to, to)
        });
        if let Some(o) = clash {
            let port = o.range.lo.max(range.lo);
            let (proto, line) = (proto.name(), o.line);
            return Err(if o.to.is_none() && to.is_none() {
                format!(
                    "{proto} port {port} is also in the rule at line {line}, which has a \
                     different `from`; a port has one source list (merge the rules, or give \
                     them the same `from`)"
                )
            } else {
                format!(
                    "{proto} port {port} is also in the rule at line {line}, for destinations \
                     this rule's cover too; two rules may share a port if they have the same \
                     `from` and `to`, or `to` lists that share no address"
                )
            });
        }
        self.owners.push(Owner {
            proto,
            range,
            rule,
            line,
            from: from.clone(),
            to: to.clone(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<PortRange, String> {
        port_range(&RawPort::Text(s.to_string()))
    }

    fn range(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }

    #[test]
    fn numbers_strings_and_ranges() {
        assert_eq!(port_range(&RawPort::Number(80)), Ok(range(80, 80)));
        assert_eq!(port_range(&RawPort::Number(65535)), Ok(range(65535, 65535)));
        assert_eq!(text("873"), Ok(range(873, 873)));
        assert_eq!(text("30001-30010"), Ok(range(30001, 30010)));
        assert_eq!(text("1-65535"), Ok(range(1, 65535)));
        assert_eq!(text("5000-5000"), Ok(range(5000, 5000)));
        assert_eq!(text(" 6000 - 6010 "), Ok(range(6000, 6010)));
    }

    #[test]
    fn out_of_range() {
        let msg = |s: &str| Err(s.to_string());
        assert_eq!(
            port_range(&RawPort::Number(0)),
            msg("port 0 is out of range (1-65535)")
        );
        assert_eq!(
            port_range(&RawPort::Number(65536)),
            msg("port 65536 is out of range (1-65535)")
        );
        assert_eq!(
            port_range(&RawPort::Number(-1)),
            msg("port -1 is out of range (1-65535)")
        );
        assert_eq!(text("0"), msg("port 0 is out of range (1-65535)"));
        assert_eq!(text("70000"), msg("port 70000 is out of range (1-65535)"));
        assert_eq!(
            text("1-70000"),
            msg("port 70000 in '1-70000' is out of range (1-65535)")
        );
        assert_eq!(
            text("0-10"),
            msg("port 0 in '0-10' is out of range (1-65535)")
        );
    }

    #[test]
    fn reversed_and_malformed() {
        assert_eq!(
            text("30010-30001"),
            Err("reversed range '30010-30001': the low port comes first (\"30001-30010\")".into())
        );
        let bad = |s: &str| {
            Err(format!(
                "bad port range '{s}': expected a port number or \"lo-hi\", like \"30001-30010\""
            ))
        };
        for s in [
            "", "http", "80-", "-80", "1-2-3", "+80", "80:90", "1..2", "80 90",
        ] {
            assert_eq!(text(s), bad(s), "{s:?}");
        }
    }

    #[test]
    fn shared_ports_need_the_same_from() {
        let admins: Option<Vec<IpNet>> = Some(vec!["203.0.113.0/24".parse().unwrap()]);
        let mut owners = PortOwners::default();
        owners
            .claim(Proto::Tcp, range(20, 30), (0, 5), &None, &None)
            .unwrap();
        // Same rule repeating itself, other protocol, same `from`, disjoint ports: fine.
        owners
            .claim(Proto::Tcp, range(25, 25), (0, 5), &None, &None)
            .unwrap();
        owners
            .claim(Proto::Udp, range(22, 22), (1, 9), &admins, &None)
            .unwrap();
        owners
            .claim(Proto::Tcp, range(30, 40), (2, 12), &None, &None)
            .unwrap();
        owners
            .claim(Proto::Tcp, range(41, 41), (3, 15), &admins, &None)
            .unwrap();
        assert_eq!(
            owners.claim(Proto::Tcp, range(10, 22), (4, 20), &admins, &None),
            Err(
                "tcp port 20 is also in the rule at line 5, which has a different `from`; \
                 a port has one source list (merge the rules, or give them the same `from`)"
                    .into()
            )
        );
        assert_eq!(
            owners.claim(Proto::Udp, range(22, 22), (5, 25), &None, &None),
            Err(
                "udp port 22 is also in the rule at line 9, which has a different `from`; \
                 a port has one source list (merge the rules, or give them the same `from`)"
                    .into()
            )
        );
    }

    #[test]
    fn shared_ports_need_the_same_from_and_to_or_disjoint_destinations() {
        let net = |s: &str| Some(vec![s.parse::<IpNet>().unwrap()]);
        let (a, b) = (net("198.51.100.1/32"), net("203.0.113.1/32"));
        let admins = net("203.0.113.0/24");
        let mut owners = PortOwners::default();
        owners
            .claim(Proto::Tcp, range(80, 80), (0, 5), &None, &a)
            .unwrap();
        // Another address, other sources: fine; the same address and sources: fine.
        owners
            .claim(Proto::Tcp, range(80, 80), (1, 9), &admins, &b)
            .unwrap();
        owners
            .claim(Proto::Tcp, range(80, 80), (2, 12), &None, &a)
            .unwrap();
        let overlap = owners.claim(Proto::Tcp, range(70, 90), (3, 15), &admins, &a);
        assert!(
            overlap
                .as_ref()
                .is_err_and(|e| e.contains("line 5, for destinations")),
            "{overlap:?}"
        );
        // No `to` covers every address: it overlaps both.
        let every = owners.claim(Proto::Tcp, range(80, 80), (4, 20), &None, &None);
        assert!(every.is_err(), "{every:?}");
    }

    #[test]
    fn from_key_ignores_order_and_duplicates() {
        let a: IpNet = "10.0.0.0/8".parse().unwrap();
        let b: IpNet = "2001:db8::/32".parse().unwrap();
        assert_eq!(from_key(&Some(vec![b, a, b])), from_key(&Some(vec![a, b])));
        assert_eq!(from_key(&None), None);
    }
}
