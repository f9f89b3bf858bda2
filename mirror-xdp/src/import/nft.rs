//! Reads `nft list ruleset` output: the rules of every base chain on the input hook (of
//! the ip, ip6 and inet families), the chains they jump to inlined, and named sets of
//! addresses.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::ruleset::{Action, Problem, Protocol, Rule, Ruleset, Source};

/// A chain's rules as lines of words.
#[derive(Default)]
struct Chain {
    input_hook: bool,
    policy: Option<(Action, usize)>,
    rules: Vec<(usize, Vec<String>)>,
    /// The table's family: ip (IPv4 only), ip6 (IPv6 only), inet (both).
    v6_only: Option<bool>,
}

pub fn read(text: &str) -> (Ruleset, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut set = Ruleset::default();
    let mut chains: BTreeMap<String, Chain> = BTreeMap::new();
    // Where the reader is: table family, chain name, set name (with its elements so far).
    let mut family: Option<bool> = None;
    let mut chain: Option<String> = None;
    let mut named_set: Option<String> = None;
    let mut in_elements = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let words = words(text);
        if in_elements {
            elements(&words, named_set.as_deref(), &mut set, line, &mut problems);
            in_elements = !text.contains('}');
            continue;
        }
        match words.first().map(String::as_str) {
            Some("table") => {
                family = match words.get(1).map(String::as_str) {
                    Some("ip") => Some(false),
                    Some("ip6") => Some(true),
                    _ => None,
                };
            }
            Some("chain") => {
                let name = words.get(1).cloned().unwrap_or_default();
                chains.entry(name.clone()).or_default().v6_only = family;
                chain = Some(name);
            }
            Some("set") => named_set = words.get(1).cloned(),
            // A closing brace ends the set being read, else the chain.
            Some("}") if named_set.take().is_none() => chain = None,
            Some("}") => {}
            Some("type" | "flags" | "policy" | "auto-merge" | "timeout" | "size") => {
                if let Some(c) = chain.as_ref().and_then(|c| chains.get_mut(c)) {
                    c.input_hook |= words.windows(2).any(|w| w[0] == "hook" && w[1] == "input");
                    if let Some(at) = words.iter().position(|w| w == "policy") {
                        c.policy = match words.get(at + 1).map(String::as_str) {
                            Some("drop") => Some((Action::Drop, line)),
                            Some("accept") => Some((Action::Accept, line)),
                            _ => None,
                        };
                    }
                }
            }
            Some("elements") => {
                elements(&words, named_set.as_deref(), &mut set, line, &mut problems);
                in_elements = !text.contains('}');
            }
            Some(_) => match chain.as_ref().and_then(|c| chains.get_mut(c)) {
                Some(c) => c.rules.push((line, words)),
                None => problems.push(Problem {
                    line,
                    message: format!("{text:?} outside a chain"),
                }),
            },
            None => {}
        }
    }
    for (name, c) in &chains {
        if !c.input_hook {
            continue;
        }
        if let Some(policy) = c.policy {
            set.default = Some(policy);
        }
        walk(&chains, name, c.v6_only, 0, &mut set, &mut problems);
    }
    problems.sort_by_key(|p| p.line);
    (set, problems)
}

/// The members in `elements = { a, b, c }` (possibly over several lines).
fn elements(
    words: &[String],
    named_set: Option<&str>,
    set: &mut Ruleset,
    line: usize,
    problems: &mut Vec<Problem>,
) {
    let Some(name) = named_set else {
        return;
    };
    let members = set.sets.entry(name.to_string()).or_default();
    for w in words {
        if matches!(w.as_str(), "elements" | "=" | "{" | "}") {
            continue;
        }
        match net(w) {
            Ok(n) => members.push(n),
            Err(e) => problems.push(Problem { line, message: e }),
        }
    }
}

fn walk(
    chains: &BTreeMap<String, Chain>,
    name: &str,
    v6_only: Option<bool>,
    depth: usize,
    set: &mut Ruleset,
    problems: &mut Vec<Problem>,
) {
    let Some(chain) = chains.get(name) else {
        return;
    };
    for (line, words) in &chain.rules {
        match rule(*line, words, v6_only) {
            Ok(Parsed::Rule(r)) => set.rules.push(r),
            Ok(Parsed::Established) => {
                set.established.get_or_insert(*line);
            }
            Ok(Parsed::Ignored) => {}
            Ok(Parsed::Jump(target)) if depth < 8 && chains.contains_key(&target) => {
                walk(chains, &target, v6_only, depth + 1, set, problems);
            }
            Ok(Parsed::Jump(target)) => problems.push(Problem {
                line: *line,
                message: format!("jump to {target}, a chain this input does not hold"),
            }),
            Err(message) => problems.push(Problem {
                line: *line,
                message,
            }),
        }
    }
}

enum Parsed {
    Rule(Rule),
    Established,
    Ignored,
    Jump(String),
}

fn rule(line: usize, words: &[String], v6_only: Option<bool>) -> Result<Parsed, String> {
    let mut r = Rule {
        line,
        action: Action::Drop,
        protocol: Protocol::Any,
        ports: Vec::new(),
        sources: Vec::new(),
        v6_only,
        rate: None,
    };
    let mut verdict = None;
    let mut states = None;
    let mut loopback = false;
    let mut w = words.iter().map(String::as_str).peekable();
    while let Some(word) = w.next() {
        let mut value = || {
            w.next()
                .map(str::to_string)
                .ok_or_else(|| format!("{word} without a value"))
        };
        match word {
            "ct" => match value()?.as_str() {
                "state" => {
                    // `established,related` (split at the comma) or `{ established, related }`.
                    let mut names = list(&value()?, &mut w)?;
                    while let Some(next) = w.next_if(|n| {
                        matches!(
                            *n,
                            "new" | "established" | "related" | "invalid" | "untracked"
                        )
                    }) {
                        names.push(next.to_string());
                    }
                    states = Some(names.join(","));
                }
                other => return Err(format!("ct {other}")),
            },
            "iif" | "iifname" => {
                let name = value()?;
                if name.trim_matches('"') != "lo" {
                    return Err(format!(
                        "interface match {word} {name}: a policy applies to every interface \
                         it is attached to"
                    ));
                }
                loopback = true;
            }
            "ip" | "ip6" => {
                r.v6_only = Some(word == "ip6");
                match value()?.as_str() {
                    "saddr" => {
                        for item in list(&value()?, &mut w)? {
                            r.sources.push(match item.strip_prefix('@') {
                                Some(name) => Source::Set(name.to_string()),
                                None => Source::Net(net(&item)?),
                            });
                        }
                    }
                    "protocol" | "nexthdr" => r.protocol = protocols(&value()?, &mut w)?,
                    other => return Err(format!("{word} {other}")),
                }
            }
            "meta" => match value()?.as_str() {
                "l4proto" => r.protocol = protocols(&value()?, &mut w)?,
                "nfproto" => r.v6_only = Some(value()? == "ipv6"),
                other => return Err(format!("meta {other}")),
            },
            "tcp" | "udp" => {
                r.protocol = if word == "tcp" {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                match value()?.as_str() {
                    "dport" => {
                        for item in list(&value()?, &mut w)? {
                            r.ports.push(port_range(&item)?);
                        }
                    }
                    "flags" => {
                        // `tcp flags syn` / `tcp flags & (...) == syn`: new connections.
                        for next in w.by_ref() {
                            if next == "syn" {
                                break;
                            }
                        }
                    }
                    other => return Err(format!("{word} {other}")),
                }
            }
            "icmp" | "icmpv6" => {
                r.protocol = Protocol::Icmp;
                return Err(format!("{word} {}: ICMP of some types only", value()?));
            }
            "counter" => {
                // `counter packets N bytes M` in a listing.
                while w.peek().is_some_and(|n| matches!(*n, "packets" | "bytes")) {
                    w.next();
                    w.next();
                }
            }
            "comment" => {
                value()?;
            }
            "log" => return Ok(Parsed::Ignored),
            "limit" => {
                // `limit rate N/unit [burst M packets]`.
                if value()? != "rate" {
                    return Err("limit without rate".into());
                }
                let mut n = value()?;
                if n == "over" {
                    return Err("limit rate over".into());
                }
                if !n.contains('/') {
                    n = format!("{n}{}", value()?);
                }
                r.rate = Some(super::iptables::rate(&n)?);
                if w.next_if(|n| *n == "burst").is_some() {
                    w.next();
                    w.next_if(|n| *n == "packets");
                }
            }
            "accept" => verdict = Some(Action::Accept),
            "drop" | "reject" => {
                verdict = Some(Action::Drop);
                // `reject with icmp type ...`: the rest says how.
                break;
            }
            "jump" | "goto" => return Ok(Parsed::Jump(value()?)),
            other => return Err(format!("{other:?} not understood")),
        }
    }
    if let Some(states) = states {
        let states: Vec<&str> = states.split(',').collect();
        if states
            .iter()
            .all(|s| matches!(*s, "established" | "related"))
            && verdict == Some(Action::Accept)
        {
            return Ok(Parsed::Established);
        }
        if states != ["new"] {
            return Err(format!("ct state {}", states.join(",")));
        }
    }
    let Some(action) = verdict else {
        return Ok(Parsed::Ignored);
    };
    if loopback {
        return Ok(Parsed::Ignored);
    }
    r.action = action;
    Ok(Parsed::Rule(r))
}

/// One value or an anonymous set `{ a, b, c }` (the words after `first`).
fn list<'a>(
    first: &str,
    w: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>,
) -> Result<Vec<String>, String> {
    if first != "{" {
        return Ok(vec![first.to_string()]);
    }
    let mut items = Vec::new();
    for word in w.by_ref() {
        if word == "}" {
            return Ok(items);
        }
        items.push(word.to_string());
    }
    Err("an unterminated { ... } list".into())
}

/// One protocol, or a `{ ... }` list of names that all mean the same one (`{ icmp,
/// ipv6-icmp }`).
fn protocols<'a>(
    first: &str,
    w: &mut std::iter::Peekable<impl Iterator<Item = &'a str>>,
) -> Result<Protocol, String> {
    let names = list(first, w)?;
    let mut found = names.iter().map(|n| protocol(n));
    let one = found.next().ok_or("an empty protocol list")??;
    for other in found {
        if other? != one {
            return Err(format!("protocols {{ {} }} in one rule", names.join(", ")));
        }
    }
    Ok(one)
}

fn protocol(name: &str) -> Result<Protocol, String> {
    match name {
        "tcp" | "6" => Ok(Protocol::Tcp),
        "udp" | "17" => Ok(Protocol::Udp),
        "icmp" | "ipv6-icmp" | "icmpv6" | "1" | "58" => Ok(Protocol::Icmp),
        other => Err(format!("protocol {other} (only tcp, udp, icmp)")),
    }
}

fn net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or CIDR"))
}

fn port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("port {text:?}");
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let (lo, hi): (u16, u16) = (
        lo.parse().map_err(|_| bad())?,
        hi.parse().map_err(|_| bad())?,
    );
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// The words of a line: commas, braces and semicolons stand alone; quotes are kept.
fn words(text: &str) -> Vec<String> {
    let spaced = text
        .replace(',', " ")
        .replace('{', " { ")
        .replace('}', " } ")
        .replace(';', " ");
    spaced.split_whitespace().map(str::to_string).collect()
}
