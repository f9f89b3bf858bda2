//! `mirror-xdp source`: live allow and deny entries, in force within a second without
//! re-attaching, kept in the state folder so they survive re-attach and restart.

use std::path::PathBuf;

use ipnet::IpNet;
use mirror_xdp::{
    control::{
        self,
        sources::{Entries, Op, SourceError},
    },
    live::sources::{self, Action, Change, Clock, Expiry, LiveError},
    policy::bounded,
    state::Paths,
};
use serde::Serialize;

use super::Failure;

/// Live source entries: deny or trust sources at once, without re-attaching.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: SourceCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SourceCommand {
    /// Drop everything from a source (a live deny; re-adding replaces its expiry).
    Deny {
        #[command(flatten)]
        target: Target,
        /// The entry expires after this long: 30s, 10m, 2h, 1d, 1h30m, or seconds.
        #[arg(long, value_name = "DURATION", value_parser = sources::parse_duration)]
        ttl: Option<u64>,
    },
    /// Trust a source: pass it whatever the port; wins over every deny.
    Allow {
        #[command(flatten)]
        target: Target,
    },
    /// Remove a live entry (allow and deny); policy entries change in the policy file.
    Remove {
        #[command(flatten)]
        target: Target,
    },
    /// Show the source entries: the policy's and the live ones, with expiry and hits.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// One CIDR, or a list of them.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// A CIDR or address (a bare address is a /32 or /128).
    #[arg(value_name = "CIDR", value_parser = mirror_xdp::policy::parse_prefix)]
    pub cidr: Option<IpNet>,
    /// One CIDR or address per line, '#' comments; '-' reads standard input. A bad line
    /// applies nothing.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    match args.command {
        SourceCommand::Deny { target, ttl } => change(paths, &target, Op::Deny { ttl_secs: ttl }),
        SourceCommand::Allow { target } => change(paths, &target, Op::Allow),
        SourceCommand::Remove { target } => change(paths, &target, Op::Remove),
        SourceCommand::List { json } => list(paths, json),
    }
}

/// The prefixes the command line names: one CIDR, or the lines of a list.
fn read_input(target: &Target) -> Result<Entries, Failure> {
    let Some(path) = &target.file else {
        let net = target.cidr.expect("clap requires CIDR or --file");
        return Ok(Entries {
            file: None,
            nets: vec![(0, net)],
        });
    };
    // Within the bounds policy files have: a device or a FIFO is refused at once.
    let (label, bytes) = if path.as_os_str() == "-" {
        let bytes = bounded::read_stdin()
            .map_err(|e| Failure::invalid(format!("cannot read standard input: {e}")))?;
        ("<stdin>".to_string(), bytes)
    } else {
        let bytes = bounded::read_file(path)
            .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", path.display())))?;
        (path.display().to_string(), bytes)
    };
    let nets = sources::parse_list(&label, &bytes).map_err(|lines| {
        fail(
            LiveError::BadLines {
                file: label.clone(),
                lines,
            }
            .into(),
        )
    })?;
    Ok(Entries {
        file: Some(label),
        nets,
    })
}

fn change(paths: &Paths, target: &Target, op: Op) -> Result<(), Failure> {
    let entries = read_input(target)?;
    let done = control::sources::change(paths, op, &entries, &mut |note| eprintln!("{note}"))
        .map_err(fail)?;
    let verb = match op {
        Op::Deny { .. } => "deny",
        Op::Allow => "allow",
        Op::Remove => "remove",
    };
    let what = match &entries.file {
        Some(file) => format!("{} entries from {file}", entries.nets.len()),
        None => entries.nets[0].1.to_string(),
    };
    println!(
        "{verb} {what}: {}{}",
        describe(done.change),
        match done.expires {
            Some(e) => format!("; expires {}", expires_text(e, &done.clock)),
            None => String::new(),
        }
    );
    if done.pruned > 0 {
        println!("({} expired live entries pruned)", done.pruned);
    }
    Ok(())
}

fn describe(change: Change) -> String {
    let mut parts = Vec::new();
    for (count, word) in [
        (change.added, "added"),
        (change.updated, "updated"),
        (change.removed, "removed"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {word}"));
        }
    }
    if parts.is_empty() {
        "already in place".to_string()
    } else {
        parts.join(", ")
    }
}

/// One line of `source list`.
#[derive(Serialize)]
struct Row {
    prefix: String,
    action: Action,
    origin: &'static str,
    /// Unix seconds; `null`: never.
    expires: Option<u64>,
    /// `null` for policy entries (the static tables count per reason, not per entry) and
    /// when nothing is attached.
    hits: Option<u64>,
}

/// The human list shows this many policy entries and as many CrowdSec ones; a 100,000-line
/// blocklist would bury the live entries.
const POLICY_ROWS_SHOWN: usize = 50;

fn list(paths: &Paths, json: bool) -> Result<(), Failure> {
    let control::sources::Listing {
        live: set,
        hits,
        policy,
        clock,
    } = control::sources::list(paths).map_err(fail)?;
    let attached = hits.is_some();

    let live_rows = set
        .allow
        .iter()
        .map(|net| (Action::Allow, *net, Expiry::Never))
        .chain(set.deny.iter().map(|(net, e)| (Action::Deny, *net, *e)))
        .map(|(action, net, expires)| Row {
            prefix: net.to_string(),
            action,
            origin: "live",
            expires: expires.unix(),
            hits: hits.as_ref().map(|h| h.get(action, &net)),
        });
    let crowdsec = set.crowdsec_nets();
    let crowdsec_rows = crowdsec.iter().map(|(net, expires)| Row {
        prefix: net.to_string(),
        action: Action::Deny,
        origin: "crowdsec",
        expires: expires.unix(),
        hits: hits.as_ref().map(|h| h.get(Action::Deny, net)),
    });
    let policy_rows = policy
        .allow
        .iter()
        .map(|net| (Action::Allow, net))
        .chain(policy.deny.iter().map(|net| (Action::Deny, net)))
        .map(|(action, net)| Row {
            prefix: net.to_string(),
            action,
            origin: "policy",
            expires: None,
            hits: None,
        });
    if json {
        let rows: Vec<Row> = live_rows.chain(crowdsec_rows).chain(policy_rows).collect();
        let doc = serde_json::json!({ "sources": rows });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    } else {
        if !attached {
            eprintln!("note: nothing is attached; live entries apply at the next attach");
        }
        let policy_total = policy.allow.len() + policy.deny.len();
        let rows: Vec<Row> = live_rows
            .chain(crowdsec_rows.take(POLICY_ROWS_SHOWN))
            .chain(policy_rows.take(POLICY_ROWS_SHOWN))
            .collect();
        print!("{}", table(&rows, &clock));
        if crowdsec.len() > POLICY_ROWS_SHOWN {
            println!(
                "... and {} more crowdsec entries (--json shows all)",
                crowdsec.len() - POLICY_ROWS_SHOWN
            );
        }
        if policy_total > POLICY_ROWS_SHOWN {
            println!(
                "... and {} more policy entries (--json shows all)",
                policy_total - POLICY_ROWS_SHOWN
            );
        }
    }
    Ok(())
}

fn table(rows: &[Row], clock: &Clock) -> String {
    if rows.is_empty() {
        return "no source entries\n".to_string();
    }
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.origin.to_string(),
                r.prefix.clone(),
                r.action.name().to_string(),
                expires_text(r.expires.map_or(Expiry::Never, Expiry::At), clock),
                r.hits.map_or("-".to_string(), |h| h.to_string()),
            ]
        })
        .collect();
    super::table::render(["ORIGIN", "PREFIX", "ACTION", "EXPIRES", "HITS"], &cells)
}

/// "never", or "in 1h30m": the two largest units are precise enough for a person.
fn expires_text(expires: Expiry, clock: &Clock) -> String {
    let Expiry::At(at) = expires else {
        return "never".to_string();
    };
    // Whole seconds left, rounded down: the expiry itself was rounded up, so a new entry
    // shows its TTL, not one second more.
    let left_ns = at
        .saturating_mul(1_000_000_000)
        .saturating_sub(clock.wall_ns);
    let mut left = (left_ns / 1_000_000_000).max(1);
    let mut parts = Vec::new();
    for (unit, name) in [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")] {
        if left >= unit && parts.len() < 2 {
            parts.push(format!("{}{name}", left / unit));
            left %= unit;
        } else if !parts.is_empty() {
            // Units follow each other: "1d5m" would read as a typo.
            break;
        }
    }
    format!("in {}", parts.concat())
}

fn fail(e: SourceError) -> Failure {
    Failure::input_or_operational(e.is_invalid_input(), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_texts() {
        let clock = Clock {
            wall_ns: 1_000 * 1_000_000_000,
            mono_ns: 0,
        };
        let at = |secs: u64| expires_text(Expiry::At(1_000 + secs), &clock);
        assert_eq!(expires_text(Expiry::Never, &clock), "never");
        assert_eq!(at(2), "in 2s");
        assert_eq!(at(0), "in 1s");
        assert_eq!(at(5400), "in 1h30m");
        assert_eq!(at(93_784), "in 1d2h");
        assert_eq!(at(86_400 + 300), "in 1d");
    }

    /// `deny --ttl 30s` answers "expires in 30s", whatever the fraction of the second it
    /// runs at (the expiry is rounded up to a whole second).
    #[test]
    fn a_new_entry_expires_in_its_ttl() {
        for fraction_ns in [0, 1, 400_000_000, 999_999_999] {
            let clock = Clock {
                wall_ns: 1_000 * 1_000_000_000 + fraction_ns,
                mono_ns: 0,
            };
            for (ttl, text) in [(30, "in 30s"), (600, "in 10m"), (5400, "in 1h30m")] {
                let expires = clock.expiry_after(ttl);
                assert_eq!(expires_text(expires, &clock), text, "+{fraction_ns} ns");
            }
        }
    }

    #[test]
    fn table_aligns_columns() {
        let clock = Clock {
            wall_ns: 0,
            mono_ns: 0,
        };
        let rows = [
            Row {
                prefix: "198.51.100.2/32".into(),
                action: Action::Deny,
                origin: "live",
                expires: None,
                hits: Some(3),
            },
            Row {
                prefix: "192.0.2.0/24".into(),
                action: Action::Allow,
                origin: "policy",
                expires: None,
                hits: None,
            },
        ];
        assert_eq!(
            table(&rows, &clock),
            "ORIGIN  PREFIX           ACTION  EXPIRES  HITS\n\
             live    198.51.100.2/32  deny    never    3\n\
             policy  192.0.2.0/24     allow   never    -\n"
        );
        assert_eq!(table(&[], &clock), "no source entries\n");
    }
}
