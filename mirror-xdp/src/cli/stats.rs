//! `mirror-xdp stats`: the counters per reason and per port, once, refreshed as rates
//! (`--watch`), or read and zeroed (`--reset`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use super::Failure;
use mirror_xdp::{
    compile::proto_slot,
    kernel::maps::Maps,
    observe::stats::Stats,
    policy::Proto,
    state::{Paths, Record},
};
use mirror_xdp_common::port_index;

/// Show packet and byte counters per verdict reason and per rule port.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output (SPEC section 4).
    #[arg(long, conflicts_with = "watch")]
    pub json: bool,
    /// Refresh every SECS seconds with per-second rates (the first screen shows totals);
    /// Ctrl-C stops.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
    /// With --watch: stop after N screens.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Print the counters, then zero them all (with --json the JSON shows them as they were).
    #[arg(long, conflicts_with = "watch")]
    pub reset: bool,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    if let Some(secs) = args.watch {
        return watch(paths, Duration::from_secs(secs), args.count);
    }
    let record = attached(paths)?;
    let mut maps = Maps::open_pinned(&paths.bpffs).map_err(Failure::operational)?;
    let stats = Stats::read(&maps, &record).map_err(Failure::operational)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats).expect("json"));
    } else {
        print!("{}", stats.table());
    }
    if args.reset {
        maps.reset_counters(listed_port_slots(&record))
            .map_err(Failure::operational)?;
        if !args.json {
            println!("\ncounters reset to zero");
        }
    }
    Ok(())
}

/// The port-counter slots of every port a rule lists. Only these need zeroing: the kernel
/// counts a port only when the ports array marks it listed (`verdict.rs` sets `port_slot`
/// after the `LISTED` check), and the record lists the same rules. Sweeping all 131,072
/// slots would cost a syscall each for slots that are always zero.
fn listed_port_slots(record: &Record) -> impl Iterator<Item = u32> + '_ {
    record.ports.iter().flat_map(|rule| {
        let slot = proto_slot(Proto::from(rule.proto));
        (rule.lo..=rule.hi).map(move |port| port_index(slot, port))
    })
}

/// Reads the counters every `every`, printing totals first and then rates over each
/// measured interval. On a terminal each screen replaces the last; into a pipe or file the
/// screens follow each other, a blank line apart.
fn watch(paths: &Paths, every: Duration, count: Option<u64>) -> Result<(), Failure> {
    let terminal = std::io::stdout().is_terminal();
    let mut last: Option<(Stats, Instant)> = None;
    let mut shown = 0u64;
    loop {
        // Re-read record and pins each time: a reload may change the rules or the maps.
        let record = attached(paths)?;
        let maps = Maps::open_pinned(&paths.bpffs).map_err(Failure::operational)?;
        let stats = Stats::read(&maps, &record).map_err(Failure::operational)?;
        let now = Instant::now();
        let screen = match &last {
            None => format!("totals since attach or reset\n{}", stats.table()),
            Some((prev, at)) => rate_table(prev, &stats, now.duration_since(*at)),
        };
        let mut out = std::io::stdout().lock();
        let sep = if terminal {
            "\x1b[H\x1b[2J"
        } else if shown > 0 {
            "\n"
        } else {
            ""
        };
        // A closed pipe (`| head`) ends the watch quietly.
        if write!(out, "{sep}{screen}")
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(());
        }
        drop(out);
        shown += 1;
        if count.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        last = Some((stats, now));
        std::thread::sleep(every);
    }
}

/// Per-second rates between two readings. Counters that went down (a reset in between)
/// count from zero.
fn rate_table(prev: &Stats, cur: &Stats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
    let drop_word = if cur.mode == "monitor" {
        "would drop/s"
    } else {
        "dropped/s"
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rates per second over {secs:.2} s  mode {}  policy {} (generation {})",
        cur.mode,
        cur.policy.path.display(),
        cur.policy.generation
    );
    let _ = writeln!(
        out,
        "\n{:<20} {:>12} {:>14} {:>12}",
        "reason", "packets/s", "bytes/s", drop_word
    );
    for name in cur.reasons.keys() {
        let r = |key| rate(cur.reason_count(name, key), prev.reason_count(name, key));
        let _ = writeln!(
            out,
            "{:<20} {:>12.1} {:>14.1} {:>12.1}",
            name,
            r("packets"),
            r("bytes"),
            r("drop_packets")
        );
    }
    let before: HashMap<_, _> = prev.ports.iter().map(|p| ((p.proto, p.port), p)).collect();
    let _ = writeln!(
        out,
        "\n{:<6} {:>6} {:>12} {:>12}",
        "proto", "port", "passed/s", drop_word
    );
    for p in &cur.ports {
        // A port inside a range is listed once it sees traffic: before that it was zero.
        let (pass, drop) = before
            .get(&(p.proto, p.port))
            .map_or((0, 0), |b| (b.pass_packets, b.drop_packets));
        let _ = writeln!(
            out,
            "{:<6} {:>6} {:>12.1} {:>12.1}",
            p.proto,
            p.port,
            rate(p.pass_packets, pass),
            rate(p.drop_packets, drop)
        );
    }
    out
}

/// The record of the attached enforcer, once what a crashed command left is recovered and
/// its pins are known to be this build's; "nothing attached" is an operational failure.
pub fn attached(paths: &Paths) -> Result<Record, Failure> {
    mirror_xdp::lifecycle::for_reading(paths, &mut |note| eprintln!("{note}"))
        .map_err(Failure::operational)?
        .ok_or_else(|| {
            Failure::operational(format!(
                "nothing is attached (no state in {}); run `mirror-xdp attach` first",
                paths.state_dir.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use mirror_xdp::{observe::stats::PortStats, state::PolicyRecord};

    use super::*;

    fn stats(allowed: u64, port_pass: u64) -> Stats {
        let mut reasons = serde_json::Map::new();
        reasons.insert(
            "allowed".into(),
            serde_json::json!({"packets": allowed, "bytes": allowed * 100,
                "drop_packets": 0, "drop_bytes": 0}),
        );
        Stats {
            mode: "enforce",
            interfaces: vec![],
            policy: PolicyRecord {
                path: PathBuf::from("p.toml"),
                generation: 1,
            },
            reasons,
            ports: vec![PortStats {
                proto: "udp",
                port: 53,
                pass_packets: port_pass,
                drop_packets: 0,
            }],
            limiter: Default::default(),
        }
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let text = rate_table(&stats(10, 4), &stats(30, 10), Duration::from_secs(2));
        assert!(text.starts_with("rates per second over 2.00 s"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["allowed", "10.0", "1000.0", "0.0"]),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["udp", "53", "3.0", "0.0"]),
            "{text}"
        );
        // A reset in between: no negative or wrapped rates.
        let text = rate_table(&stats(30, 10), &stats(5, 0), Duration::from_secs(1));
        assert!(text.contains("allowed"), "{text}");
        assert!(!text.contains('-'), "{text}");
    }
}
