//! ufw's rule sets: its `user.rules` and `user6.rules` (iptables-save format, read by
//! [`iptables`]), or `ufw show added` (the commands that made them), with what ufw's own
//! rules around them do.

use ipnet::IpNet;

use super::iptables;
use super::ruleset::{Action, Problem, Protocol, Rule, Ruleset, Source};

/// Reads either form. Line 0 stands for ufw's own rules, which the input does not hold:
/// its default incoming policy (deny, what `ufw enable` starts with), and before.rules'
/// accepts of established connections and of ICMP.
pub fn read(text: &str) -> (Ruleset, Vec<Problem>) {
    let commands = text.lines().any(|l| l.trim_start().starts_with("ufw "));
    let (mut set, problems) = if commands {
        read_commands(text)
    } else {
        iptables::read(text, &["ufw-user-input", "ufw6-user-input"])
    };
    set.default = Some((Action::Drop, 0));
    set.established = Some(0);
    set.rules.insert(
        0,
        Rule {
            line: 0,
            action: Action::Accept,
            protocol: Protocol::Icmp,
            ports: Vec::new(),
            sources: Vec::new(),
            v6_only: None,
            rate: None,
        },
    );
    (set, problems)
}

/// `ufw show added` output: one `ufw ...` command a line, as ufw normalises them (service
/// names already turned into ports).
fn read_commands(text: &str) -> (Ruleset, Vec<Problem>) {
    let mut set = Ruleset::default();
    let mut problems = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let text = raw.trim();
        let Some(command) = text.strip_prefix("ufw ") else {
            if !(text.is_empty() || text.starts_with("Added user rules")) {
                problems.push(Problem {
                    line,
                    message: "not a ufw command (`ufw show added` prints one a line)".into(),
                });
            }
            continue;
        };
        match command_rules(command, line) {
            Ok((rules, problem)) => {
                set.rules.extend(rules);
                problems.extend(problem.map(|message| Problem { line, message }));
            }
            Err(message) => problems.push(Problem { line, message }),
        }
    }
    (set, problems)
}

/// The rules one command adds, and what the policy leaves out of it (ufw's `limit`).
fn command_rules(command: &str, line: usize) -> Result<(Vec<Rule>, Option<String>), String> {
    // Single quotes group: `comment 'web'`, `'Nginx Full'`.
    let words = iptables::words(command, '\'')?;
    let mut words = words.iter().map(String::as_str).peekable();
    let mut action = match words.next() {
        Some("allow" | "limit") => Action::Accept,
        Some("deny" | "reject") => Action::Drop,
        Some("route") => return Err("a routed (forwarding) rule: not inbound".into()),
        other => return Err(format!("ufw command {other:?} not understood")),
    };
    let limited = command.starts_with("limit");
    let mut protocol = None;
    let mut ports: Vec<(u16, u16)> = Vec::new();
    let mut source: Option<IpNet> = None;
    // The address a `port` belongs to.
    let mut after = "";
    while let Some(word) = words.next() {
        let mut value = || {
            words
                .next()
                .ok_or_else(|| format!("{word} without a value"))
        };
        match word {
            "in" | "log" | "log-all" => {}
            "out" => return Err("an outbound rule: the policy's rules are inbound".into()),
            "on" => {
                return Err(format!(
                    "interface match `on {}`: a policy applies to every interface it is \
                     attached to",
                    value()?
                ));
            }
            "proto" => protocol = Some(proto(value()?)?),
            "from" => {
                after = "from";
                let addr = value()?;
                if addr != "any" {
                    source = Some(iptables::net(addr)?);
                }
            }
            "to" => {
                after = "to";
                match value()? {
                    "any" => {}
                    addr => return Err(format!("destination {addr}: the policy has no `to`")),
                }
            }
            "port" if after == "from" => return Err(format!("source port {}", value()?)),
            "port" => ports = port_list(value()?)?,
            "app" => return Err(format!("application profile {}", value()?)),
            "comment" => {
                value()?;
            }
            spec => {
                // The short form: `ufw allow 80/tcp`, `ufw allow 53`, `ufw allow 'Nginx Full'`.
                let (list, proto_name) = match spec.split_once('/') {
                    Some((list, p)) => (list, Some(p)),
                    None => (spec, None),
                };
                ports = port_list(list)
                    .map_err(|_| format!("application profile {spec:?}: write its ports"))?;
                if let Some(p) = proto_name {
                    protocol = Some(proto(p)?);
                }
            }
        }
    }
    if limited {
        action = Action::Accept;
    }
    let protocols: &[Protocol] = match (protocol, ports.is_empty()) {
        (Some(p), _) => &[p],
        // Ports without a protocol: ufw opens them for TCP and UDP.
        (None, false) => &[Protocol::Tcp, Protocol::Udp],
        (None, true) => &[Protocol::Any],
    };
    let rules = protocols
        .iter()
        .map(|&protocol| Rule {
            line,
            action,
            protocol,
            ports: ports.clone(),
            sources: source.iter().map(|&n| Source::Net(n)).collect(),
            v6_only: source.map(|n| matches!(n, IpNet::V6(_))),
            rate: None,
        })
        .collect();
    // ufw's limit: 6 new connections in 30 seconds from one source, then REJECT.
    let left_out = limited.then(|| iptables::per_source_limit_left_out("6", "30"));
    Ok((rules, left_out))
}

fn proto(name: &str) -> Result<Protocol, String> {
    match name {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("protocol {other} (only tcp and udp)")),
    }
}

/// `80`, `80,443`, `30000:30010`.
fn port_list(text: &str) -> Result<Vec<(u16, u16)>, String> {
    text.split(',').map(iptables::port_range).collect()
}
