//! A rule set, first match wins, turned into a policy, whose verdict order is fixed
//! (README, "What happens to a packet"): trusted sources, denied sources, then the port
//! rules with their `from` lists, then `default`. Each family is walked on its own and the
//! two results merged (a `from` of `0.0.0.0/0` opens a port to all of IPv4 only). Where the
//! policy cannot say what the rules say, the translation errs on the side of dropping and
//! says so; where it would let through what the rules drop, it says that too.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ipnet::IpNet;

use super::ruleset::{Action, Problem, Protocol, Rule, Ruleset, Source};

/// What the rules decided for one destination port of one protocol and family, so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Port {
    Undecided,
    Open,
    /// Open to the sources of list `n` (see [`Family::lists`]).
    From(usize),
    Closed,
}

const TCP: usize = 0;
const UDP: usize = 1;

/// One family's walk.
struct Family {
    v6: bool,
    ports: [Vec<Port>; 2],
    lists: Vec<Vec<Source>>,
    trusted: Vec<(Source, usize)>,
    denied: Vec<(Source, usize)>,
    /// Drops of some sources on some ports, which a policy cannot say: (rule, reported).
    port_drops: Vec<(Rule, bool)>,
    icmp: Option<Action>,
    /// A rule matching every packet decided everything after it.
    everything: Option<Action>,
    /// Sources some port accepts so far (`accepted_all`: some port accepts every source).
    accepted: Vec<Source>,
    accepted_all: bool,
    /// The rate limits of accepting rules: (line, packets a second).
    rates: Vec<(usize, u64)>,
}

pub struct Translated {
    pub policy: String,
    pub problems: Vec<Problem>,
}

pub fn translate(set: &Ruleset, input_name: &str) -> Translated {
    let mut problems = Vec::new();
    let families = [false, true].map(|v6| walk(set, v6, &mut problems));
    let default = set.default.map_or(Action::Accept, |(a, _)| a);
    let mut policy = format!(
        "# Imported by `mirror-xdp import` from {input_name}: check it, then `mirror-xdp \
         check` it.\nversion = 1\n\n[settings]\n"
    );
    let everything = |a| families.iter().all(|f| f.everything == Some(a));
    let default = if everything(Action::Drop) {
        Action::Drop
    } else if everything(Action::Accept) {
        Action::Accept
    } else {
        default
    };
    let drop = default == Action::Drop;
    let _ = writeln!(
        policy,
        "default = \"{}\"",
        if drop { "drop" } else { "pass" }
    );
    let icmp_pass = families
        .iter()
        .any(|f| f.icmp.or(f.everything) == Some(Action::Accept) || (f.icmp.is_none() && !drop));
    let _ = writeln!(
        policy,
        "icmp = \"{}\"",
        if icmp_pass { "pass" } else { "drop" }
    );
    let _ = writeln!(
        policy,
        "other_protocols = \"{}\"",
        if drop { "drop" } else { "pass" }
    );
    let _ = writeln!(policy, "return_traffic = {}", set.established.is_some());
    if !icmp_pass {
        problems.push(Problem {
            line: set.default.map_or(0, |(_, l)| l),
            message: "ICMP is dropped, but mirror-xdp always passes the ICMP errors path MTU \
                      discovery needs and echo replies"
                .into(),
        });
    }

    // Sets the policy names: every set a `from`, allow or deny list uses.
    let mut used_sets = BTreeMap::new();
    let mut name = |s: &Source| match s {
        Source::Net(n) => format!("\"{n}\""),
        Source::Set(name) => {
            used_sets.insert(
                name.clone(),
                set.sets.get(name).cloned().unwrap_or_default(),
            );
            format!("\"{}\"", set_name(name))
        }
    };
    let list = |v: &mut Vec<String>| {
        v.sort();
        v.dedup();
        v.join(", ")
    };

    let mut rules = String::new();
    for (proto, proto_name) in [(TCP, "tcp"), (UDP, "udp")] {
        // Each port's decision, both families merged: None = closed.
        let mut merged: Vec<Option<Vec<String>>> = vec![None; 65536];
        for (port, merged) in merged.iter_mut().enumerate().skip(1) {
            let mut open_to: Option<Vec<String>> = None;
            let mut all_open = true;
            for f in &families {
                match f.ports[proto][port] {
                    Port::Open => {
                        let all = if f.v6 { "::/0" } else { "0.0.0.0/0" };
                        open_to
                            .get_or_insert_with(Vec::new)
                            .push(format!("\"{all}\""));
                    }
                    Port::From(n) => {
                        all_open = false;
                        let items = open_to.get_or_insert_with(Vec::new);
                        items.extend(f.lists[n].iter().map(&mut name));
                    }
                    Port::Undecided if !drop => {
                        let all = if f.v6 { "::/0" } else { "0.0.0.0/0" };
                        open_to
                            .get_or_insert_with(Vec::new)
                            .push(format!("\"{all}\""));
                    }
                    Port::Undecided | Port::Closed => all_open = false,
                }
            }
            *merged = match open_to {
                Some(_) if all_open => Some(Vec::new()),
                Some(mut v) => {
                    list(&mut v);
                    Some(v)
                }
                None => None,
            };
        }
        if !drop
            && merged[1..]
                .iter()
                .all(|p| p.as_ref().is_some_and(Vec::is_empty))
        {
            continue;
        }
        // Group the ports by who may reach them, ranges in order.
        let mut groups: BTreeMap<Vec<String>, Vec<(usize, usize)>> = BTreeMap::new();
        let mut port = 1;
        while port <= 65535 {
            let Some(from) = &merged[port] else {
                port += 1;
                continue;
            };
            let start = port;
            while port < 65535 && merged[port + 1].as_ref() == Some(from) {
                port += 1;
            }
            groups.entry(from.clone()).or_default().push((start, port));
            port += 1;
        }
        for (from, ranges) in groups {
            let ports: Vec<String> = ranges
                .iter()
                .map(|&(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("\"{a}-{b}\"")
                    }
                })
                .collect();
            let _ = write!(
                rules,
                "\n[[ports]]\nproto = \"{proto_name}\"\nports = [{}]\n",
                ports.join(", ")
            );
            if !from.is_empty() {
                let _ = writeln!(rules, "from = [{}]", from.join(", "));
            }
        }
        if !drop {
            problems.push(Problem {
                line: set.default.map_or(0, |(_, l)| l),
                message: format!(
                    "the default accepts, and a policy that passes unlisted ports cannot \
                     close some {proto_name} ports: they stay open"
                ),
            });
        }
    }

    let mut allow: Vec<String> = families
        .iter()
        .flat_map(|f| f.trusted.iter().map(|(s, _)| s.clone()))
        .collect::<Vec<_>>()
        .iter()
        .map(&mut name)
        .collect();
    let mut deny: Vec<String> = families
        .iter()
        .flat_map(|f| f.denied.iter().map(|(s, _)| s.clone()))
        .collect::<Vec<_>>()
        .iter()
        .map(&mut name)
        .collect();
    if !used_sets.is_empty() {
        policy.push_str("\n[sets]\n");
        for (name, members) in &used_sets {
            let members: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
            let _ = writeln!(policy, "{} = [{}]", set_name(name), members.join(", "));
        }
    }
    policy.push_str(&rules);
    if !allow.is_empty() || !deny.is_empty() {
        policy.push_str("\n[sources]\n");
        if !allow.is_empty() {
            let _ = writeln!(policy, "allow = [{}]", list(&mut allow));
        }
        if !deny.is_empty() {
            let _ = writeln!(policy, "deny = [{}]", list(&mut deny));
        }
    }
    // Rate-limited accepts: the policy's closest limit counts SYNs to every port.
    let rates: BTreeMap<usize, u64> = families.iter().flat_map(|f| f.rates.clone()).collect();
    if let Some(&global) = rates.values().max() {
        let _ = writeln!(policy, "\n[limits]\nglobal_syn_rate = {global}");
        for (&line, &rate) in &rates {
            problems.push(Problem {
                line,
                message: format!(
                    "approximated: a rate limit of {rate} a second on this rule's packets \
                     became global_syn_rate = {global}, new TCP connections a second to \
                     every port"
                ),
            });
        }
    }
    problems.sort_by_key(|p| p.line);
    problems.dedup();
    Translated { policy, problems }
}

/// A set name the policy accepts: letters, digits, `_` and `-`.
fn set_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The rules for one family, first match wins.
fn walk(set: &Ruleset, v6: bool, problems: &mut Vec<Problem>) -> Family {
    let mut f = Family {
        v6,
        ports: [vec![Port::Undecided; 65536], vec![Port::Undecided; 65536]],
        lists: Vec::new(),
        trusted: Vec::new(),
        denied: Vec::new(),
        port_drops: Vec::new(),
        icmp: None,
        everything: None,
        accepted: Vec::new(),
        accepted_all: false,
        rates: Vec::new(),
    };
    for rule in &set.rules {
        if f.everything.is_some() || rule.v6_only.is_some_and(|only| only != v6) {
            continue;
        }
        if rule.rate.is_some() && rule.action == Action::Drop {
            problems.push(Problem {
                line: rule.line,
                message: "not translated: a drop under a rate limit".into(),
            });
            continue;
        }
        // The rule's sources in this family; none left: the rule is not for it.
        let sources: Vec<Source> = rule
            .sources
            .iter()
            .filter(|s| in_family(s, set, v6))
            .cloned()
            .collect();
        if !rule.sources.is_empty() && sources.is_empty() {
            continue;
        }
        let protos: &[usize] = match rule.protocol {
            Protocol::Tcp => &[TCP],
            Protocol::Udp => &[UDP],
            Protocol::Any if rule.ports.is_empty() => &[TCP, UDP],
            Protocol::Any | Protocol::Icmp => &[],
        };
        let ranges = if rule.ports.is_empty() {
            vec![(1, 65535)]
        } else {
            rule.ports.clone()
        };
        match (rule.protocol, rule.action, sources.is_empty()) {
            (Protocol::Icmp, action, true) => {
                f.icmp.get_or_insert(action);
            }
            (Protocol::Icmp, _, false) => problems.push(Problem {
                line: rule.line,
                message: "ICMP from some sources only: a policy passes or drops ICMP from all"
                    .into(),
            }),
            (Protocol::Any, action, true) => {
                f.everything = Some(action);
                f.icmp.get_or_insert(action);
                let decided = if action == Action::Accept {
                    Port::Open
                } else {
                    Port::Closed
                };
                for p in f.ports.iter_mut().flat_map(|v| v.iter_mut()) {
                    if *p == Port::Undecided {
                        *p = decided;
                    }
                }
            }
            (Protocol::Any, Action::Accept, false) => {
                if let Some(line) = dropped_before(&f, &sources, set) {
                    problems.push(Problem {
                        line: rule.line,
                        message: format!(
                            "not translated: trusted sources bypass every drop, and line \
                             {line} drops some of these sources first"
                        ),
                    });
                } else {
                    f.trusted
                        .extend(sources.into_iter().map(|s| (s, rule.line)));
                }
            }
            (Protocol::Any, Action::Drop, false) => {
                if accepted_before(&f, &sources, set) {
                    problems.push(Problem {
                        line: rule.line,
                        message: "these sources are denied on every port, though an earlier \
                                  rule accepts them on some"
                            .into(),
                    });
                }
                f.denied.extend(sources.into_iter().map(|s| (s, rule.line)));
            }
            (_, Action::Accept, _) => {
                if let Some(rate) = rule.rate {
                    f.rates.push((rule.line, rate));
                }
                accept(&mut f, protos, &ranges, &sources);
                for (drop, reported) in &mut f.port_drops {
                    let hits = ranges.iter().any(|&(lo, hi)| {
                        drop.ports.is_empty() || drop.ports.iter().any(|&(a, b)| a <= hi && lo <= b)
                    });
                    if !*reported
                        && drop.protocol == rule.protocol
                        && hits
                        && overlaps(&sources, &drop.sources, set)
                    {
                        *reported = true;
                        problems.push(Problem {
                            line: drop.line,
                            message: format!(
                                "not translated: a policy cannot drop sources on some ports \
                                 only, so these reach what line {} accepts",
                                rule.line
                            ),
                        });
                    }
                }
            }
            (_, Action::Drop, true) => {
                for &proto in protos {
                    for &(lo, hi) in &ranges {
                        for port in lo as usize..=hi as usize {
                            let p = &mut f.ports[proto][port];
                            if *p == Port::Undecided {
                                *p = Port::Closed;
                            }
                        }
                    }
                }
            }
            (_, Action::Drop, false) => f.port_drops.push((
                Rule {
                    sources,
                    ..rule.clone()
                },
                false,
            )),
        }
    }
    f
}

/// Opens `ranges` of `protos` to `sources` (all if empty) where no earlier rule decided
/// them, and adds `sources` to the ports earlier rules opened to others.
fn accept(f: &mut Family, protos: &[usize], ranges: &[(u16, u16)], sources: &[Source]) {
    if sources.is_empty() {
        f.accepted_all = true;
    }
    f.accepted.extend(sources.iter().cloned());
    let Family { ports, lists, .. } = f;
    let fresh = (!sources.is_empty()).then(|| {
        lists.push(sources.to_vec());
        lists.len() - 1
    });
    // Each earlier list, grown by these sources.
    let mut grown: BTreeMap<usize, usize> = BTreeMap::new();
    for &proto in protos {
        for &(lo, hi) in ranges {
            for p in &mut ports[proto][lo as usize..=hi as usize] {
                *p = match (*p, fresh) {
                    (Port::Undecided | Port::From(_), None) => Port::Open,
                    (Port::Undecided, Some(n)) => Port::From(n),
                    (Port::From(m), Some(_)) => Port::From(*grown.entry(m).or_insert_with(|| {
                        let mut list = lists[m].clone();
                        list.extend(sources.iter().cloned());
                        lists.push(list);
                        lists.len() - 1
                    })),
                    (other, _) => other,
                };
            }
        }
    }
}

fn in_family(source: &Source, set: &Ruleset, v6: bool) -> bool {
    match source {
        Source::Net(n) => matches!(n, IpNet::V6(_)) == v6,
        // A set with members of both families applies to both.
        Source::Set(name) => set
            .sets
            .get(name)
            .is_none_or(|m| m.is_empty() || m.iter().any(|n| matches!(n, IpNet::V6(_)) == v6)),
    }
}

fn members(source: &Source, set: &Ruleset) -> Vec<IpNet> {
    match source {
        Source::Net(n) => vec![*n],
        Source::Set(name) => set.sets.get(name).cloned().unwrap_or_default(),
    }
}

/// Whether any address is in both lists (an empty list: every address).
fn overlaps(a: &[Source], b: &[Source], set: &Ruleset) -> bool {
    if a.is_empty() || b.is_empty() {
        return true;
    }
    let b: Vec<IpNet> = b.iter().flat_map(|s| members(s, set)).collect();
    a.iter().flat_map(|s| members(s, set)).any(|x| {
        b.iter()
            .any(|y| x.contains(&y.network()) || y.contains(&x.network()))
    })
}

/// The line of an earlier rule that drops some of `sources` (on any port).
fn dropped_before(f: &Family, sources: &[Source], set: &Ruleset) -> Option<usize> {
    let denied = f
        .denied
        .iter()
        .find(|(s, _)| overlaps(sources, std::slice::from_ref(s), set))
        .map(|(_, line)| *line);
    let port_dropped = f
        .port_drops
        .iter()
        .find(|(r, _)| overlaps(sources, &r.sources, set))
        .map(|(r, _)| r.line);
    denied.or(port_dropped)
}

/// Whether an earlier rule accepts some of `sources` somewhere.
fn accepted_before(f: &Family, sources: &[Source], set: &Ruleset) -> bool {
    f.accepted_all
        || (!f.accepted.is_empty() && overlaps(sources, &f.accepted, set))
        || f.trusted
            .iter()
            .any(|(s, _)| overlaps(sources, std::slice::from_ref(s), set))
}
