//! `mirror-xdp source`: live allow and deny entries, in force within a second without
//! re-attaching, kept in the state folder so they survive re-attach and restart.

use std::io::Read;
use std::path::PathBuf;

use ipnet::IpNet;
use mirror_xdp::{
    live::{self, Action, Change, Clock, Expiry, Hits, LiveError, LiveSet, PolicySources},
    maps::Maps,
    state::{Paths, Record},
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
        #[arg(long, value_name = "DURATION", value_parser = live::parse_duration)]
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
        SourceCommand::Deny { target, ttl } => change(paths, &target, Op::Deny(ttl)),
        SourceCommand::Allow { target } => change(paths, &target, Op::Allow),
        SourceCommand::Remove { target } => change(paths, &target, Op::Remove),
        SourceCommand::List { json } => list(paths, json),
    }
}

#[derive(Clone, Copy)]
enum Op {
    /// With a TTL in seconds, or for good.
    Deny(Option<u64>),
    Allow,
    Remove,
}

/// What the command line named: the prefixes, and the file and lines they came from.
struct Input {
    file: Option<String>,
    entries: Vec<(usize, IpNet)>,
}

fn read_input(target: &Target) -> Result<Input, Failure> {
    let Some(path) = &target.file else {
        let net = target.cidr.expect("clap requires CIDR or --file");
        return Ok(Input {
            file: None,
            entries: vec![(0, net)],
        });
    };
    let (label, bytes) = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::invalid(format!("cannot read standard input: {e}")))?;
        ("<stdin>".to_string(), bytes)
    } else {
        let bytes = std::fs::read(path)
            .map_err(|e| Failure::invalid(format!("cannot read {}: {e}", path.display())))?;
        (path.display().to_string(), bytes)
    };
    let entries = live::parse_list(&label, &bytes).map_err(|lines| {
        fail(LiveError::BadLines {
            file: label.clone(),
            lines,
        })
    })?;
    Ok(Input {
        file: Some(label),
        entries,
    })
}

fn change(paths: &Paths, target: &Target, op: Op) -> Result<(), Failure> {
    let input = read_input(target)?;
    super::stats::attached(paths)?;
    let mut maps = Maps::open_pinned(&paths.bpffs).map_err(Failure::operational)?;
    let _lock = live::lock(paths).map_err(fail)?;
    let clock = Clock::now();
    let before = LiveSet::load(paths).map_err(fail)?;
    let mut set = before.clone();
    let pruned = set.prune(&clock);
    let nets: Vec<IpNet> = input.entries.iter().map(|(_, net)| *net).collect();
    let (verb, done, expires) = match op {
        Op::Deny(ttl) => {
            let expires = ttl.map_or(Expiry::Never, |secs| clock.expiry_after(secs));
            ("deny", set.deny(&nets, expires), Some(expires))
        }
        Op::Allow => ("allow", set.allow(&nets), None),
        Op::Remove => {
            all_live(&set, &input, paths)?;
            ("remove", set.remove(&nets), None)
        }
    };
    commit(&before, &set, &mut maps, paths)?;
    let what = match &input.file {
        Some(file) => format!("{} entries from {file}", nets.len()),
        None => nets[0].to_string(),
    };
    println!(
        "{verb} {what}: {}{}",
        describe(done),
        match expires {
            Some(e) => format!("; expires {}", expires_text(e, &clock)),
            None => String::new(),
        }
    );
    if pruned > 0 {
        println!("({pruned} expired live entries pruned)");
    }
    Ok(())
}

/// A remove names live entries only, every one of them (or nothing is removed).
fn all_live(set: &LiveSet, input: &Input, paths: &Paths) -> Result<(), Failure> {
    let missing: Vec<&(usize, IpNet)> = input
        .entries
        .iter()
        .filter(|(_, net)| !set.contains(net))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let policy = live::load_policy_sources(paths).map_err(fail)?;
    let Some(file) = &input.file else {
        let prefix = missing[0].1;
        let in_policy = policy.contains(&prefix);
        return Err(fail(LiveError::NotLive { prefix, in_policy }));
    };
    let lines = missing
        .iter()
        .map(|(line, net)| live::BadLine {
            file: file.clone(),
            line: *line,
            message: LiveError::NotLive {
                prefix: *net,
                in_policy: policy.contains(net),
            }
            .to_string(),
        })
        .collect();
    Err(fail(LiveError::BadLines {
        file: file.clone(),
        lines,
    }))
}

/// Puts `after` into the kernel, then into the file. If either fails, the kernel gets
/// `before` back, so the tries never hold what the file does not.
fn commit(
    before: &LiveSet,
    after: &LiveSet,
    maps: &mut Maps,
    paths: &Paths,
) -> Result<(), Failure> {
    let result = after.apply(maps).and_then(|_| after.save(paths));
    if let Err(e) = result {
        if let Err(again) = before.apply(maps) {
            eprintln!("mirror-xdp: restoring the previous live entries failed too: {again}");
        }
        return Err(fail(e));
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

/// The human list shows this many policy entries; a 100,000-line blocklist would bury the
/// live entries.
const POLICY_ROWS_SHOWN: usize = 50;

fn list(paths: &Paths, json: bool) -> Result<(), Failure> {
    let attached = Record::load(paths).map_err(Failure::operational)?.is_some();
    let lock = live::lock(paths).map_err(fail)?;
    let clock = Clock::now();
    let mut set = LiveSet::load(paths).map_err(fail)?;
    let pruned = set.prune(&clock);
    let (hits, policy) = if attached {
        let mut maps = Maps::open_pinned(&paths.bpffs).map_err(Failure::operational)?;
        // Pruning reaches the kernel too, as after every command.
        set.apply_at(&mut maps, &clock).map_err(fail)?;
        let hits = Hits::read(&maps).map_err(fail)?;
        (Some(hits), live::load_policy_sources(paths).map_err(fail)?)
    } else {
        (None, PolicySources::default())
    };
    if pruned > 0 {
        set.save(paths).map_err(fail)?;
    }
    drop(lock);

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
        let rows: Vec<Row> = live_rows.chain(policy_rows).collect();
        let doc = serde_json::json!({ "sources": rows });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
    } else {
        if !attached {
            eprintln!("note: nothing is attached; live entries apply at the next attach");
        }
        let policy_total = policy.allow.len() + policy.deny.len();
        let rows: Vec<Row> = live_rows
            .chain(policy_rows.take(POLICY_ROWS_SHOWN))
            .collect();
        print!("{}", table(&rows, &clock));
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
    let mut left = at.saturating_sub(clock.unix_secs()).max(1);
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

fn fail(e: LiveError) -> Failure {
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
