//! `mirror-xdp explain`: the verdict for a new connection and what decided it.

use std::net::IpAddr;

use super::Failure;
use mirror_xdp::observe::explain::{self, DecidedBy, ExplainError, Explanation, Query, Target};
use mirror_xdp::state::Paths;

/// Say what the attached enforcer would do with a new connection from SRC to PORT/PROTO (or
/// to an IP protocol: icmp, vrrp, 47), and what decided it: the policy rule or set entry
/// (file and line), a live entry and its origin, a ban and its expiry, a limit and its
/// bucket, or a setting. Reads the live state; sends nothing.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The connecting address.
    pub src: IpAddr,
    /// PORT/tcp, PORT/udp, icmp, or an IP protocol name or number.
    #[arg(value_parser = Target::parse)]
    pub target: Target,
    /// The destination (default: the first address of the source's family on the attached
    /// interfaces); matters where rules have `to`.
    #[arg(long)]
    pub dst: Option<IpAddr>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let query = Query {
        src: args.src,
        target: args.target,
        dst: args.dst,
    };
    let answer = explain::explain(paths, query).map_err(|e| match e {
        ExplainError::Input(_) => Failure::invalid(e),
        _ => Failure::operational(e),
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer).expect("json"));
    } else {
        print!("{}", text(&answer));
    }
    Ok(())
}

/// The human form: the verdict, the packet, what decided it, the buckets.
fn text(a: &Explanation) -> String {
    let mut out = format!("{} {}", a.verdict, a.reason);
    if a.would_drop {
        out.push_str(" (monitor mode: would drop)");
    }
    out.push_str(&format!(
        "\n  {} -> {} {}, a new connection\n  decided by ",
        a.source, a.destination, a.target
    ));
    match &a.decided_by {
        DecidedBy::Rule { file, line, text } => {
            out.push_str(&format!("the rule at {}:{line}\n", file.display()));
            for l in text {
                out.push_str(&format!("    {l}\n"));
            }
        }
        DecidedBy::Set {
            list,
            entry,
            set,
            file,
            line,
        } => {
            let via = set
                .as_ref()
                .map(|s| format!(" (set {s})"))
                .unwrap_or_default();
            out.push_str(&format!(
                "{list}: {entry}{via} at {}:{line}\n",
                file.display()
            ));
        }
        DecidedBy::Live {
            origin,
            action,
            entry,
            expires,
            decision,
        } => {
            out.push_str(&format!("a live {action} entry ({origin}): {entry}"));
            if let Some(id) = decision {
                out.push_str(&format!(", decision {id}"));
            }
            match expires {
                Some(at) => out.push_str(&format!(", expires {}\n", in_secs(*at))),
                None if *action == "deny" => out.push_str(", no expiry\n"),
                None => out.push('\n'),
            }
        }
        DecidedBy::Ban {
            prefix,
            expires_in_secs,
            ban_seconds,
        } => out.push_str(&format!(
            "a ban of {prefix} (ban_seconds = {ban_seconds}): {expires_in_secs} s left\n"
        )),
        DecidedBy::Limit(b) => out.push_str(&format!("the limit {}\n", bucket(b))),
        DecidedBy::Setting { setting, value } => out.push_str(&format!("{setting} = {value}\n")),
    }
    for b in &a.limits {
        out.push_str(&format!("  limit {}\n", bucket(b)));
    }
    out
}

fn bucket(b: &explain::Bucket) -> String {
    let mut s = format!(
        "{} {}/s, burst {}, for {}: {} left",
        b.limit, b.rate, b.burst, b.counts, b.tokens
    );
    if let Some(ms) = b.next_in_ms {
        s.push_str(&format!(", the next in {ms} ms"));
    }
    s
}

/// "in 3599 s" from Unix seconds.
fn in_secs(at: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("in {} s", at.saturating_sub(now))
}
