//! What applying one policy instead of another changes: ports and protocols opened and
//! closed, sources added and removed per port or protocol and in `[sources]`, settings and
//! limits. `mirror-xdp diff`
//! shows it before a reload, and `reload` and `run` print it after one.

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::{Policy, PortRange, Proto};

/// One change, as a line of the summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change(pub String);

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The lines `reload` and `run` print after a reload: each change, or "no change".
pub fn summary(changes: Option<&[Change]>) -> Vec<String> {
    match changes {
        None => vec!["changes: unknown (no copy of the previous policy was kept)".into()],
        Some([]) => vec!["no change".into()],
        Some(changes) => changes.iter().map(ToString::to_string).collect(),
    }
}

/// A summary shows this many prefixes of a list that changed, then a count.
const SHOWN: usize = 4;

/// The changes from `old` (in force) to `new`, ports first; empty when they mean the same.
pub fn diff(old: &Policy, new: &Policy) -> Vec<Change> {
    let mut out = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        ports(old, new, proto, &mut out);
    }
    protocols(old, new, &mut out);
    egress(old, new, &mut out);
    for (name, old_list, new_list) in [
        ("sources.allow", &old.allow, &new.allow),
        ("sources.deny", &old.deny, &new.deny),
    ] {
        if let Some(change) = nets_changed(old_list, new_list) {
            out.push(Change(format!("~ {name}: {change}")));
        }
    }
    settings(old, new, &mut out);
    if old.crowdsec != new.crowdsec {
        let (was, is) = (crowdsec(old), crowdsec(new));
        out.push(Change(format!("~ crowdsec: {was} -> {is}")));
    }
    out
}

/// `[crowdsec]` in a few words.
fn crowdsec(p: &Policy) -> String {
    match &p.crowdsec {
        None => "off".into(),
        Some(c) => {
            let scopes: Vec<&str> = c.scopes.iter().map(|s| s.name()).collect();
            format!(
                "{} every {} s ({}), key {}",
                c.url,
                c.poll_interval.as_secs_f64(),
                scopes.join(", "),
                c.api_key_file.display()
            )
        }
    }
}

/// A rule's destinations and sources, each sorted (`None`: every address, any source).
type Grant = (Option<Vec<IpNet>>, Option<Vec<IpNet>>);

fn grant(to: &Option<Vec<IpNet>>, from: &Option<Vec<IpNet>>) -> Grant {
    (super::ports::from_key(to), super::ports::from_key(from))
}

/// What a port or protocol says in one policy: the distinct grants of the rules that list
/// it, sorted; none: closed.
type Says<'a> = Vec<&'a Grant>;

fn says<'a>(grants: &'a [Grant], listing: impl Iterator<Item = usize>) -> Says<'a> {
    let mut said: Says = listing.map(|i| &grants[i]).collect();
    said.sort();
    said.dedup();
    said
}

/// Every port of one protocol: the rules that list it, as indices into `grants`.
struct Ports {
    rules: Vec<Vec<usize>>,
    grants: Vec<Grant>,
}

impl Ports {
    /// The `[[ports]]` rules of `proto`.
    fn new(policy: &Policy, proto: Proto) -> Ports {
        let rules = policy.rules.iter().filter(|r| r.proto == proto);
        Ports::of(rules.map(|r| (r.ports.as_slice(), grant(&r.to, &r.from))))
    }

    /// The `[[egress.ports]]` rules of `proto` (no sources: `from` stays `None`).
    fn egress(policy: &Policy, proto: Proto) -> Ports {
        let rules = policy.egress.rules.iter().filter(|r| r.proto == proto);
        Ports::of(rules.map(|r| (r.ports.as_slice(), grant(&r.to, &None))))
    }

    fn of<'a>(rules: impl Iterator<Item = (&'a [PortRange], Grant)>) -> Ports {
        let mut listing = vec![Vec::new(); usize::from(u16::MAX) + 1];
        let mut grants = Vec::new();
        for (ranges, grant) in rules {
            let index = grants.len();
            grants.push(grant);
            for range in ranges {
                for slot in &mut listing[usize::from(range.lo)..=usize::from(range.hi)] {
                    slot.push(index);
                }
            }
        }
        Ports {
            rules: listing,
            grants,
        }
    }

    fn get(&self, port: u16) -> Says<'_> {
        says(&self.grants, self.rules[usize::from(port)].iter().copied())
    }
}

/// Walks every port once and reports runs of ports that changed the same way as a range,
/// each as `line` words it.
fn ports_changed(
    (old, new): (&Ports, &Ports),
    line: impl Fn(PortRange, &Says, &Says) -> Change,
    out: &mut Vec<Change>,
) {
    let mut run: Option<(PortRange, Says, Says)> = None;
    for number in 1..=u16::MAX {
        let (was, is) = (old.get(number), new.get(number));
        if let Some((range, w, i)) = &mut run {
            if range.hi + 1 == number && (&*w, &*i) == (&was, &is) {
                range.hi = number;
                continue;
            }
            out.push(line(*range, w, i));
            run = None;
        }
        if was != is {
            run = Some((
                PortRange {
                    lo: number,
                    hi: number,
                },
                was,
                is,
            ));
        }
    }
    if let Some((range, w, i)) = run {
        out.push(line(range, &w, &i));
    }
}

fn ports(old: &Policy, new: &Policy, proto: Proto, out: &mut Vec<Change>) {
    let (old, new) = (Ports::new(old, proto), Ports::new(new, proto));
    let line = |range, was: &Says, is: &Says| port_change(proto, range, was, is);
    ports_changed((&old, &new), line, out);
}

/// `[egress]`: its default, and the (protocol, port) its rules let the host connect to.
fn egress(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let (was, is) = (old.egress.default, new.egress.default);
    if was != is {
        out.push(Change(format!(
            "~ egress.default: {} -> {}",
            action(was),
            action(is)
        )));
    }
    let destinations = |said: &Says| -> String {
        let to: Vec<String> = said
            .iter()
            .map(|(to, _)| match to {
                None => "any destination".to_string(),
                Some(nets) => shown(&nets.iter().collect::<Vec<_>>()),
            })
            .collect();
        to.join("; ")
    };
    for proto in [Proto::Tcp, Proto::Udp] {
        let (a, b) = (Ports::egress(old, proto), Ports::egress(new, proto));
        let line = |range: PortRange, was: &Says, is: &Says| {
            let ports = if range.lo == range.hi {
                format!("{}/{}", range.lo, proto.name())
            } else {
                format!("{}-{}/{}", range.lo, range.hi, proto.name())
            };
            Change(match (was.is_empty(), is.is_empty()) {
                (true, _) => format!("+ egress {ports} to {}", destinations(is)),
                (_, true) => format!("- egress {ports}"),
                _ => format!(
                    "~ egress {ports}: to {} -> to {}",
                    destinations(was),
                    destinations(is)
                ),
            })
        };
        ports_changed((&a, &b), line, out);
    }
}

/// Each IP protocol whose `[[protocols]]` rules changed.
fn protocols(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let grants =
        |p: &Policy| -> Vec<Grant> { p.protocols.iter().map(|r| grant(&r.to, &r.from)).collect() };
    let (old_grants, new_grants) = (grants(old), grants(new));
    // The indexes of the rules of `p` that list `number`.
    let listing = |p: &Policy, number: u8| -> Vec<usize> {
        let rules = p.protocols.iter().enumerate();
        rules
            .filter(|(_, r)| r.protocols.contains(&number))
            .map(|(i, _)| i)
            .collect()
    };
    for number in 0..=u8::MAX {
        let was = says(&old_grants, listing(old, number).into_iter());
        let is = says(&new_grants, listing(new, number).into_iter());
        if was != is {
            let name = format!("protocol {}", super::protocols::name(number));
            out.push(change(&name, &was, &is));
        }
    }
}

fn port_change(proto: Proto, range: PortRange, was: &Says, is: &Says) -> Change {
    let ports = if range.lo == range.hi {
        format!("{}/{}", range.lo, proto.name())
    } else {
        format!("{}-{}/{}", range.lo, range.hi, proto.name())
    };
    change(&ports, was, is)
}

/// A port range's or a protocol's change: in a few words where neither side has `to`.
fn change(what: &str, was: &Says, is: &Says) -> Change {
    let (Some(was_simple), Some(is_simple)) = (simple(was), simple(is)) else {
        return Change(format!("~ {what}: {} -> {}", described(was), described(is)));
    };
    Change(match (was_simple, is_simple) {
        (Port::Closed, Port::Open(from)) => format!("+ {what} opened {}", sources(from)),
        (Port::Open(_), Port::Closed) => format!("- {what} closed"),
        (Port::Open(Some(a)), Port::Open(Some(b))) => {
            let change = nets_changed(a, b).unwrap_or_default();
            format!("~ {what} sources: {change}")
        }
        (Port::Open(_), Port::Open(None)) => format!("~ {what} now open to any source"),
        (Port::Open(None), Port::Open(from)) => format!("~ {what} now only {}", sources(from)),
        (Port::Closed, Port::Closed) => unreachable!("an unchanged port is not a change"),
    })
}

/// What a port or protocol says where no rule has `to`: closed, or open to any source or
/// from a list.
#[derive(Clone, Copy)]
enum Port<'a> {
    Closed,
    Open(Option<&'a [IpNet]>),
}

/// The port's [`Port`], or `None` when a rule has `to`.
fn simple<'a>(said: &Says<'a>) -> Option<Port<'a>> {
    match said.as_slice() {
        [] => Some(Port::Closed),
        [(None, from)] => Some(Port::Open(from.as_deref())),
        _ => None,
    }
}

/// "closed", or each grant: "to 198.51.100.1/32 from any source; to every address from ...".
fn described(said: &Says) -> String {
    if said.is_empty() {
        return "closed".into();
    }
    let grants: Vec<String> = said
        .iter()
        .map(|(to, from)| {
            let to = match to {
                None => "every address".to_string(),
                Some(nets) => shown(&nets.iter().collect::<Vec<_>>()),
            };
            let from = match from {
                None => "any source".to_string(),
                Some(nets) => shown(&nets.iter().collect::<Vec<_>>()),
            };
            format!("to {to} from {from}")
        })
        .collect();
    grants.join("; ")
}

fn sources(from: Option<&[IpNet]>) -> String {
    match from {
        None => "to any source".to_string(),
        Some(nets) => format!("from {}", shown(&nets.iter().collect::<Vec<_>>())),
    }
}

/// "+2 (a, b), -1 (c)" for two lists of prefixes; `None` when they hold the same.
fn nets_changed(old: &[IpNet], new: &[IpNet]) -> Option<String> {
    let (old, new): (BTreeSet<&IpNet>, BTreeSet<&IpNet>) =
        (old.iter().collect(), new.iter().collect());
    let added: Vec<&IpNet> = new.difference(&old).copied().collect();
    let removed: Vec<&IpNet> = old.difference(&new).copied().collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("+{} ({})", added.len(), shown(&added)));
    }
    if !removed.is_empty() {
        parts.push(format!("-{} ({})", removed.len(), shown(&removed)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn shown(nets: &[&IpNet]) -> String {
    let head: Vec<String> = nets.iter().take(SHOWN).map(ToString::to_string).collect();
    match nets.len().checked_sub(SHOWN) {
        Some(more) if more > 0 => format!("{}, +{more} more", head.join(", ")),
        _ => head.join(", "),
    }
}

/// Settings and limits, one line each that changed.
fn settings(old: &Policy, new: &Policy, out: &mut Vec<Change>) {
    let (a, b) = (&old.settings, &new.settings);
    let (la, lb) = (&old.limits, &new.limits);
    let fields: [(&str, String, String); 15] = [
        ("settings.mode", a.mode.name().into(), b.mode.name().into()),
        ("settings.default", action(a.default), action(b.default)),
        ("settings.icmp", action(a.icmp), action(b.icmp)),
        (
            "settings.fragments",
            action(a.fragments),
            action(b.fragments),
        ),
        (
            "settings.other_protocols",
            action(a.other_protocols),
            action(b.other_protocols),
        ),
        (
            "settings.return_traffic",
            a.return_traffic.to_string(),
            b.return_traffic.to_string(),
        ),
        (
            "limits.per_source_pps",
            n(la.per_source_pps),
            n(lb.per_source_pps),
        ),
        (
            "limits.per_source_burst",
            n(la.per_source_burst),
            n(lb.per_source_burst),
        ),
        (
            "limits.per_source_syn_rate",
            n(la.per_source_syn_rate),
            n(lb.per_source_syn_rate),
        ),
        (
            "limits.per_source_syn_burst",
            n(la.per_source_syn_burst),
            n(lb.per_source_syn_burst),
        ),
        (
            "limits.global_syn_rate",
            n(la.global_syn_rate),
            n(lb.global_syn_rate),
        ),
        ("limits.ban_seconds", n(la.ban_seconds), n(lb.ban_seconds)),
        (
            "limits.source_prefix_v4",
            n(la.source_prefix_v4.into()),
            n(lb.source_prefix_v4.into()),
        ),
        (
            "limits.source_prefix_v6",
            n(la.source_prefix_v6.into()),
            n(lb.source_prefix_v6.into()),
        ),
        (
            "limits.syn_cookies",
            la.syn_cookies.to_string(),
            lb.syn_cookies.to_string(),
        ),
    ];
    for (name, was, is) in fields {
        if was != is {
            out.push(Change(format!("~ {name}: {was} -> {is}")));
        }
    }
}

fn action(a: super::Action) -> String {
    match a {
        super::Action::Pass => "pass".into(),
        super::Action::Drop => "drop".into(),
    }
}

fn n(v: u64) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::parse(text, Path::new("/etc/mirror-xdp/policy.toml")).unwrap()
    }

    /// The change lines from policy text `a` to `b`.
    fn lines(a: &str, b: &str) -> Vec<String> {
        diff(&policy(a), &policy(b))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const IN_FORCE: &str = r#"version = 1
[sets]
admins = ["203.0.113.0/24"]
[[ports]]
proto = "tcp"
ports = [80, 8080, "30001-30010"]
[[ports]]
proto = "tcp"
ports = [22]
from = ["admins"]
[[ports]]
proto = "udp"
ports = [53]
[sources]
deny = ["192.0.2.0/24"]
"#;

    #[test]
    fn crowdsec_turned_on_and_changed_is_a_change() {
        let on = format!(
            "{IN_FORCE}[crowdsec]\nurl = \"http://127.0.0.1:8080\"\napi_key_file = \"cs.key\"\n"
        );
        assert_eq!(
            diff(&policy(IN_FORCE), &policy(&on)),
            [Change(
                "~ crowdsec: off -> http://127.0.0.1:8080 every 10 s (ip, range), key \
                 /etc/mirror-xdp/cs.key"
                    .into()
            )]
        );
        let slower = on.replace("cs.key\"\n", "cs.key\"\npoll_interval = \"1m\"\n");
        assert_eq!(diff(&policy(&on), &policy(&slower)).len(), 1);
        assert_eq!(diff(&policy(&on), &policy(&on)), vec![]);
    }

    #[test]
    fn the_same_policy_is_no_change_even_reordered() {
        let reordered = IN_FORCE
            .replace("[80, 8080, \"30001-30010\"]", "[\"30001-30010\", 8080, 80]")
            .replace(
                "\"203.0.113.0/24\"]",
                "\"203.0.113.0/25\", \"203.0.113.128/25\"]",
            );
        assert_eq!(diff(&policy(IN_FORCE), &policy(IN_FORCE)), vec![]);
        let a = policy(&reordered);
        let b = policy(&reordered.replace(
            "\"203.0.113.0/25\", \"203.0.113.128/25\"",
            "\"203.0.113.128/25\", \"203.0.113.0/25\"",
        ));
        assert_eq!(diff(&a, &b), vec![]);
        assert_eq!(
            diff(
                &policy(IN_FORCE),
                &policy(&IN_FORCE.replace("[80, 8080,", "[8080, 80,"))
            ),
            vec![]
        );
    }

    #[test]
    fn ports_sources_settings_and_limits_each_get_a_line() {
        let edited = IN_FORCE
            .replace("[80, 8080, \"30001-30010\"]", "[80, 8443, \"30001-30005\"]")
            .replace("admins = [\"203.0.113.0/24\"]", "admins = [\"203.0.113.0/24\", \"198.51.100.7\"]")
            .replace("proto = \"udp\"\nports = [53]", "proto = \"udp\"\nports = [53]\nfrom = [\"admins\"]")
            .replace("deny = [\"192.0.2.0/24\"]", "deny = [\"2001:db8::/32\"]\n[settings]\nmode = \"monitor\"\n[limits]\nper_source_pps = 1000");
        let lines: Vec<String> = diff(&policy(IN_FORCE), &policy(&edited))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "~ 22/tcp sources: +1 (198.51.100.7/32)",
                "- 8080/tcp closed",
                "+ 8443/tcp opened to any source",
                "- 30006-30010/tcp closed",
                "~ 53/udp now only from 198.51.100.7/32, 203.0.113.0/24",
                "~ sources.deny: +1 (2001:db8::/32), -1 (192.0.2.0/24)",
                "~ settings.mode: enforce -> monitor",
                "~ limits.per_source_pps: 0 -> 1000",
            ]
        );
    }

    #[test]
    fn protocol_rules_get_a_line_each() {
        let vrrp = "[[protocols]]\nprotocols = [\"vrrp\"]\nfrom = [\"198.51.100.2\"]\n";
        let with_vrrp = format!("{IN_FORCE}{vrrp}");
        assert_eq!(
            lines(IN_FORCE, &with_vrrp),
            ["+ protocol vrrp opened from 198.51.100.2/32"]
        );
        let both = with_vrrp.replace("[\"vrrp\"]", "[\"vrrp\", 253]");
        let open = both.replace("from = [\"198.51.100.2\"]\n", "");
        assert_eq!(
            lines(&both, &open),
            [
                "~ protocol vrrp now open to any source",
                "~ protocol 253 now open to any source"
            ]
        );
        assert_eq!(lines(&with_vrrp, IN_FORCE), ["- protocol vrrp closed"]);
        assert_eq!(lines(&with_vrrp, &with_vrrp), Vec::<String>::new());
    }

    #[test]
    fn rules_with_to_say_what_each_destination_gets() {
        let to = IN_FORCE.replace(
            "ports = [80, 8080, \"30001-30010\"]",
            "ports = [80, 8080, \"30001-30010\"]\nto = [\"198.51.100.1\"]",
        );
        assert_eq!(
            lines(IN_FORCE, &to),
            [
                "~ 80/tcp: to every address from any source -> to 198.51.100.1/32 from any source",
                "~ 8080/tcp: to every address from any source -> to 198.51.100.1/32 from any source",
                "~ 30001-30010/tcp: to every address from any source -> to 198.51.100.1/32 from any source",
            ]
        );
        let admins_too = format!(
            "{to}[[ports]]\nproto = \"tcp\"\nports = [80]\nfrom = [\"admins\"]\nto = [\"203.0.113.1\"]\n"
        );
        assert_eq!(
            lines(&to, &admins_too),
            [
                "~ 80/tcp: to 198.51.100.1/32 from any source -> to 198.51.100.1/32 from any \
              source; to 203.0.113.1/32 from 203.0.113.0/24"
            ]
        );
        assert_eq!(lines(&admins_too, &admins_too), Vec::<String>::new());
    }

    #[test]
    fn egress_rules_and_default_get_a_line_each() {
        let egress = format!(
            "{IN_FORCE}[egress]\ndefault = \"drop\"\n[[egress.ports]]\nproto = \"tcp\"\n\
             ports = [873, 443]\nto = [\"192.0.2.80\"]\n[[egress.ports]]\nproto = \"udp\"\n\
             ports = [53]\n"
        );
        assert_eq!(
            lines(IN_FORCE, &egress),
            [
                "~ egress.default: pass -> drop",
                "+ egress 443/tcp to 192.0.2.80/32",
                "+ egress 873/tcp to 192.0.2.80/32",
                "+ egress 53/udp to any destination",
            ]
        );
        let wider = egress.replace("to = [\"192.0.2.80\"]\n", "");
        assert_eq!(
            lines(&egress, &wider),
            [
                "~ egress 443/tcp: to 192.0.2.80/32 -> to any destination",
                "~ egress 873/tcp: to 192.0.2.80/32 -> to any destination",
            ]
        );
    }

    #[test]
    fn long_lists_are_cut_short_with_a_count() {
        let nets: Vec<IpNet> = (0..10u8)
            .map(|i| format!("10.0.{i}.0/24").parse().unwrap())
            .collect();
        assert_eq!(
            nets_changed(&[], &nets).unwrap(),
            "+10 (10.0.0.0/24, 10.0.1.0/24, 10.0.2.0/24, 10.0.3.0/24, +6 more)"
        );
        assert_eq!(nets_changed(&nets, &nets), None);
    }
}
