//! `mirror-xdp protocol`: live protocol rules, as `port` for ports: in force at once, kept
//! in the state folder so they survive reload, re-attach and restart.

use mirror_xdp::{
    control,
    live::ports::{Added, LivePorts, LivePortsError, LiveProtocol, from_text},
    policy::{ListItem, Policy, protocols},
    state::Paths,
};
use serde::Serialize;

use super::Failure;

/// Live protocol rules: let an IP protocol other than TCP, UDP and ICMP in (VRRP from a
/// keepalived peer, GRE from a tunnel end), to everyone or to some sources, or close it
/// again, at once, without re-attaching.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ProtocolCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ProtocolCommand {
    /// Let a protocol in, from any source or only from the `--from` sources, on every
    /// address of the host or only on the `--to` ones.
    Allow {
        /// A name (vrrp, gre, esp, ah, ipip, ipv6, sctp, igmp, ospf, pim) or a number 0-255
        /// other than 1, 6, 17 and 58.
        #[arg(value_name = "PROTOCOL", value_parser = protocols::parse)]
        protocol: u8,
        /// Only these sources: CIDRs, addresses or set names of the policy (repeatable).
        #[arg(long, value_name = "CIDR|SET", num_args = 1.., value_parser = ListItem::parse)]
        from: Vec<ListItem>,
        /// Only to these destinations (the host's addresses): CIDRs, addresses or set names
        /// of the policy (repeatable).
        #[arg(long, value_name = "CIDR|SET", num_args = 1.., value_parser = ListItem::parse)]
        to: Vec<ListItem>,
    },
    /// Remove a protocol's live rule; policy protocols change in the policy file.
    Remove {
        #[arg(value_name = "PROTOCOL", value_parser = protocols::parse)]
        protocol: u8,
    },
    /// Show the protocol rules: the policy's and the live ones.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    match args.command {
        ProtocolCommand::Allow { protocol, from, to } => {
            let rule = LiveProtocol {
                protocol,
                from: (!from.is_empty()).then_some(from),
                to: (!to.is_empty()).then_some(to),
            };
            let done = control::protocols::allow(paths, rule.clone()).map_err(fail)?;
            let what = match done.added {
                Added::New => "added",
                Added::Replaced => "updated",
                Added::AlreadyInPlace => "already in place",
            };
            println!("allow {rule}: {what}");
            if let Some(line) = done.policy_line {
                println!(
                    "note: the policy rule at line {line} lists it with the same sources and destinations already"
                );
            }
            Ok(())
        }
        ProtocolCommand::Remove { protocol } => {
            let done = control::protocols::remove(paths, protocol).map_err(fail)?;
            let outcome = match (done.attached, done.still_listed) {
                (false, _) => "; nothing is attached, so only the state file changed",
                (true, true) => ": the policy lists it, so it stays open",
                (true, false) => ": closed",
            };
            println!("removed live rule {}{outcome}", done.rule);
            Ok(())
        }
        ProtocolCommand::List { json } => list(paths, json),
    }
}

/// One line of `protocol list`.
#[derive(Debug, Serialize)]
struct Row {
    protocol: String,
    number: u8,
    /// `null`: any source. Live rules keep set names as given.
    from: Option<Vec<String>>,
    /// The rule's `to` (a live rule's as given); absent: every address of the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<Vec<String>>,
    origin: &'static str,
}

fn rows(policy: Option<&Policy>, live: &LivePorts) -> Vec<Row> {
    let strings = |items: &[_]| items.iter().map(ToString::to_string).collect();
    let mut rows = Vec::new();
    for rule in policy.map(|p| p.protocols.as_slice()).unwrap_or_default() {
        for number in &rule.protocols {
            rows.push(Row {
                protocol: protocols::name(*number),
                number: *number,
                from: rule.from.as_deref().map(strings),
                to: rule.to.as_deref().map(strings),
                origin: "policy",
            });
        }
    }
    for rule in &live.protocols {
        rows.push(Row {
            protocol: protocols::name(rule.protocol),
            number: rule.protocol,
            from: rule
                .from
                .as_ref()
                .map(|i| i.iter().map(ToString::to_string).collect()),
            to: rule
                .to
                .as_ref()
                .map(|i| i.iter().map(ToString::to_string).collect()),
            origin: "live",
        });
    }
    rows
}

fn list(paths: &Paths, json: bool) -> Result<(), Failure> {
    let (policy, live) = control::ports::snapshot(paths).map_err(fail)?;
    let rows = rows(policy.as_ref(), &live);
    if json {
        let doc = serde_json::json!({ "protocols": rows });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        return Ok(());
    }
    if policy.is_none() {
        eprintln!("note: nothing is attached; live rules apply at the next attach");
    }
    if rows.is_empty() {
        println!("no protocol rules");
        return Ok(());
    }
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.origin.to_string(),
                r.protocol.clone(),
                from_text(r.from.as_deref()),
                r.to.as_ref()
                    .map_or("every address".into(), |to| to.join(", ")),
            ]
        })
        .collect();
    print!(
        "{}",
        super::table::render(["ORIGIN", "PROTOCOL", "FROM", "TO"], &cells)
    );
    Ok(())
}

fn fail(e: LivePortsError) -> Failure {
    Failure::input_or_operational(e.is_invalid_input(), e)
}
