//! `mirror-xdp stats`: the counters per reason and per port, once, refreshed as rates
//! (`--watch`, also as one JSON object a line), or read and zeroed (`--reset`); all rows or
//! only the busy ones (`--nonzero`, `--top`).

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::Failure;
use mirror_xdp::{
    compile::proto_slot,
    kernel::maps::Maps,
    observe::{
        clock,
        stats::{Rates, Rows, Stats},
    },
    policy::Proto,
    state::{Paths, Record},
};
use mirror_xdp_common::{port_index, protocol_index};

/// Show packet and byte counters per verdict reason and per rule port.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output; with --watch, one JSON object a line.
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECS seconds with per-second rates (the first screen shows totals);
    /// Ctrl-C stops.
    #[arg(long, value_name = "SECS", value_parser = watch_secs)]
    pub watch: Option<u64>,
    /// With --watch: stop after N screens.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Only rows with a nonzero number: reasons and ports that saw packets (with --watch,
    /// in the numbers on each screen: totals first, then rates).
    #[arg(long)]
    pub nonzero: bool,
    /// Only the N port rows with the most packets (passed + dropped), busiest first (with
    /// --watch, ranked by the rates over each interval). Reasons are all shown.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub top: Option<u64>,
    /// Print the counters, then zero them all (with --json the JSON shows them as they were).
    #[arg(long, conflicts_with = "watch")]
    pub reset: bool,
}

/// `--watch`: a whole number of seconds, at least 1.
fn watch_secs(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("the interval must be at least 1 second".to_string()),
        Ok(secs) => Ok(secs),
        Err(_) => Err("expected a whole number of seconds, at least 1".to_string()),
    }
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let rows = Rows {
        nonzero: args.nonzero,
        top: args.top.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    };
    if let Some(secs) = args.watch {
        return watch(
            paths,
            Duration::from_secs(secs),
            args.count,
            args.json,
            rows,
        );
    }
    let record = attached(paths)?;
    let mut maps = Maps::open_pinned(&paths.bpffs).map_err(Failure::operational)?;
    let mut stats = Stats::read(&maps, &record).map_err(Failure::operational)?;
    stats.select(rows);
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

/// The counter slots of every port and protocol a rule lists. Only these need zeroing: the
/// kernel counts a slot only when the ports array marks it listed (`verdict.rs` sets
/// `port_slot` after the `LISTED` check), and the record lists the same rules. Sweeping all
/// 131,328 slots would cost a syscall each for slots that are always zero.
fn listed_port_slots(record: &Record) -> impl Iterator<Item = u32> + '_ {
    let ports = record.ports.iter().flat_map(|rule| {
        let slot = proto_slot(Proto::from(rule.proto));
        (rule.lo..=rule.hi).map(move |port| port_index(slot, port))
    });
    ports.chain(record.protocols.iter().map(|p| protocol_index(*p)))
}

/// Reads the counters every `every`, printing totals first and then rates over each
/// measured interval. On a terminal each screen replaces the last; into a pipe or file the
/// screens follow each other, a blank line apart. With `json`, one object a line, never
/// cleared.
fn watch(
    paths: &Paths,
    every: Duration,
    count: Option<u64>,
    json: bool,
    rows: Rows,
) -> Result<(), Failure> {
    let terminal = std::io::stdout().is_terminal() && !json;
    let mut last: Option<(Stats, Instant)> = None;
    let mut shown = 0u64;
    loop {
        // Re-read record and pins each time: a reload may change the rules or the maps.
        let record = attached(paths)?;
        let maps = Maps::open_pinned(&paths.bpffs).map_err(Failure::operational)?;
        let stats = Stats::read(&maps, &record).map_err(Failure::operational)?;
        let (now, wall) = (Instant::now(), SystemTime::now());
        let prev = last.as_ref().map(|(s, at)| (s, now.duration_since(*at)));
        let screen = if json {
            json_line(&stats, prev, rows, wall)
        } else {
            text_screen(&stats, prev, rows)
        };
        let mut out = std::io::stdout().lock();
        let sep = if terminal {
            "\x1b[H\x1b[2J"
        } else if shown > 0 && !json {
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

/// The rates since `prev` (the reading before, and how long ago), with the rows `rows`
/// selects by them.
fn rates(cur: &Stats, prev: Option<(&Stats, Duration)>, rows: Rows) -> Option<Rates> {
    let (before, elapsed) = prev?;
    let mut rates = Rates::between(before, cur, elapsed);
    rates.select(rows);
    Some(rates)
}

/// A watch screen for people: the totals first, then the rates.
fn text_screen(cur: &Stats, prev: Option<(&Stats, Duration)>, rows: Rows) -> String {
    match rates(cur, prev, rows) {
        Some(rates) => rate_table(cur, &rates),
        None => {
            let mut totals = cur.clone();
            totals.select(rows);
            format!("totals since attach or reset\n{}", totals.table())
        }
    }
}

/// A `--watch --json` line: `stats --json`'s object, with the time of the reading and the
/// rates since the last (null on the first line); totals and rates list the same rows.
#[derive(Serialize)]
struct WatchLine<'a> {
    time: String,
    #[serde(flatten)]
    totals: &'a Stats,
    rates: Option<&'a Rates>,
}

fn json_line(
    cur: &Stats,
    prev: Option<(&Stats, Duration)>,
    rows: Rows,
    wall: SystemTime,
) -> String {
    let rates = rates(cur, prev, rows);
    let mut totals = cur.clone();
    match &rates {
        Some(r) => totals.select_like(r),
        None => totals.select(rows),
    }
    let line = WatchLine {
        time: clock::rfc3339(wall),
        totals: &totals,
        rates: rates.as_ref(),
    };
    format!("{}\n", serde_json::to_string(&line).expect("json"))
}

/// The rates as a table, under `cur`'s mode and policy.
fn rate_table(cur: &Stats, rates: &Rates) -> String {
    let drop_word = if cur.mode == "monitor" {
        "would drop/s"
    } else {
        "dropped/s"
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rates per second over {:.2} s  mode {}  policy {} (generation {})",
        rates.interval_secs,
        cur.mode,
        cur.policy.path.display(),
        cur.policy.generation
    );
    let _ = writeln!(
        out,
        "\n{:<20} {:>12} {:>14} {:>12}",
        "reason", "packets/s", "bytes/s", drop_word
    );
    for name in rates.reasons.keys() {
        let r = |field| rates.reason_rate(name, field);
        let _ = writeln!(
            out,
            "{:<20} {:>12.1} {:>14.1} {:>12.1}",
            name,
            r("packets"),
            r("bytes"),
            r("drop_packets")
        );
    }
    let _ = writeln!(
        out,
        "\n{:<6} {:>6} {:>12} {:>12}",
        "proto", "port", "passed/s", drop_word
    );
    for p in &rates.ports {
        let _ = writeln!(
            out,
            "{:<6} {:>6} {:>12.1} {:>12.1}",
            p.proto, p.port, p.pass_packets, p.drop_packets
        );
    }
    if !rates.protocols.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<13} {:>12} {:>12}",
            "protocol", "passed/s", drop_word
        );
        for p in &rates.protocols {
            let _ = writeln!(
                out,
                "{:<13} {:>12.1} {:>12.1}",
                p.protocol, p.pass_packets, p.drop_packets
            );
        }
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

    use clap::Parser;
    use mirror_xdp::{observe::stats::PortStats, state::PolicyRecord};

    use super::*;

    fn port(proto: &'static str, port: u16, pass_packets: u64, drop_packets: u64) -> PortStats {
        PortStats {
            proto,
            port,
            pass_packets,
            drop_packets,
        }
    }

    /// `allowed` packets (100 bytes each) and one udp/53 port with `port_pass` passed;
    /// `port_closed` and tcp/80 stay zero, tcp/443 has 7 dropped.
    fn stats(allowed: u64, port_pass: u64) -> Stats {
        let mut reasons = serde_json::Map::new();
        reasons.insert(
            "allowed".into(),
            serde_json::json!({"packets": allowed, "bytes": allowed * 100,
                "drop_packets": 0, "drop_bytes": 0}),
        );
        reasons.insert(
            "port_closed".into(),
            serde_json::json!({"packets": 0, "bytes": 0, "drop_packets": 0, "drop_bytes": 0}),
        );
        Stats {
            mode: "enforce",
            interfaces: vec![],
            policy: PolicyRecord {
                path: PathBuf::from("p.toml"),
                generation: 1,
            },
            reasons,
            ports: vec![
                port("tcp", 80, 0, 0),
                port("udp", 53, port_pass, 0),
                port("tcp", 443, 0, 7),
            ],
            protocols: vec![],
            limiter: Default::default(),
        }
    }

    fn words(text: &str) -> Vec<Vec<&str>> {
        text.lines()
            .map(|l| l.split_whitespace().collect())
            .collect()
    }

    fn all() -> Rows {
        Rows::default()
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let prev = stats(10, 4);
        let text = text_screen(&stats(30, 10), Some((&prev, Duration::from_secs(2))), all());
        assert!(text.starts_with("rates per second over 2.00 s"), "{text}");
        let rows = words(&text);
        assert!(
            rows.contains(&vec!["allowed", "10.0", "1000.0", "0.0"]),
            "{text}"
        );
        assert!(rows.contains(&vec!["udp", "53", "3.0", "0.0"]), "{text}");
        // A reset in between: no negative or wrapped rates.
        let prev = stats(30, 10);
        let text = text_screen(&stats(5, 0), Some((&prev, Duration::from_secs(1))), all());
        assert!(text.contains("allowed"), "{text}");
        assert!(!text.contains('-'), "{text}");
    }

    #[test]
    fn nonzero_keeps_rows_with_a_count() {
        let rows = Rows {
            nonzero: true,
            top: None,
        };
        let text = text_screen(&stats(10, 4), None, rows);
        let table = words(&text);
        assert!(
            table.contains(&vec!["allowed", "10", "1000", "0"]),
            "{text}"
        );
        assert!(table.contains(&vec!["udp", "53", "4", "0"]), "{text}");
        assert!(table.contains(&vec!["tcp", "443", "0", "7"]), "{text}");
        assert!(!text.contains("port_closed"), "{text}");
        assert!(
            !table.iter().any(|w| w.starts_with(&["tcp", "80"])),
            "{text}"
        );
        // Rates: the rows busy over the interval.
        let prev = stats(10, 4);
        let text = text_screen(&stats(20, 4), Some((&prev, Duration::from_secs(1))), rows);
        assert!(text.contains("allowed"), "{text}");
        assert!(!text.contains("udp"), "{text}");
    }

    #[test]
    fn top_keeps_the_busiest_ports_first() {
        let top = |n| Rows {
            nonzero: false,
            top: Some(n),
        };
        let ports = |text: &str| -> Vec<String> {
            words(text)
                .into_iter()
                .filter(|w| w.len() == 4 && ["tcp", "udp"].contains(&w[0]))
                .map(|w| format!("{}/{}", w[0], w[1]))
                .collect()
        };
        // 443 has 7 dropped, 53 has 4 passed: ranked by both.
        let text = text_screen(&stats(10, 4), None, top(2));
        assert_eq!(ports(&text), ["tcp/443", "udp/53"], "{text}");
        assert!(
            text.contains("port_closed"),
            "reasons are all shown: {text}"
        );
        // Over an interval: by rate (53 gets 20 more, 443 none).
        let prev = stats(10, 4);
        let text = text_screen(
            &stats(10, 24),
            Some((&prev, Duration::from_secs(1))),
            top(1),
        );
        assert_eq!(ports(&text), ["udp/53"], "{text}");
    }

    #[test]
    fn watch_json_is_one_complete_object_a_line() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_741_064_767);
        let first = json_line(&stats(10, 4), None, all(), wall);
        let prev = stats(10, 4);
        let second = json_line(
            &stats(30, 10),
            Some((&prev, Duration::from_secs(2))),
            all(),
            wall,
        );
        for line in [&first, &second] {
            assert!(line.ends_with('\n'), "{line:?}");
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        }
        let first: serde_json::Value = serde_json::from_str(&first).expect("JSON");
        let second: serde_json::Value = serde_json::from_str(&second).expect("JSON");
        // `stats --json`'s shape, with the time and the rates.
        assert_eq!(first["time"], "2025-03-04T05:06:07.000Z");
        assert_eq!(first["mode"], "enforce");
        assert_eq!(first["reasons"]["allowed"]["packets"], 10);
        assert_eq!(first["ports"].as_array().map(Vec::len), Some(3), "{first}");
        assert!(first["rates"].is_null(), "{first}");
        assert_eq!(second["reasons"]["allowed"]["packets"], 30);
        let rates = &second["rates"];
        assert_eq!(rates["interval_secs"], 2.0, "{second}");
        assert_eq!(rates["reasons"]["allowed"]["packets"], 10.0, "{second}");
        assert_eq!(rates["reasons"]["allowed"]["bytes"], 1000.0, "{second}");
        assert_eq!(rates["ports"][1]["port"], 53, "{second}");
        assert_eq!(rates["ports"][1]["pass_packets"], 3.0, "{second}");
        // Filtered by the rates: totals and rates list the same rows.
        let rows = Rows {
            nonzero: true,
            top: None,
        };
        let line = json_line(
            &stats(30, 10),
            Some((&prev, Duration::from_secs(2))),
            rows,
            wall,
        );
        let line: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        let listed = |v: &serde_json::Value| -> Vec<u64> {
            v["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["port"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(listed(&line), [53], "{line}");
        assert_eq!(listed(&line["rates"]), [53], "{line}");
        assert!(line["reasons"].get("port_closed").is_none(), "{line}");
    }

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn watch_takes_whole_seconds_from_one() {
        let err = |argv: &[&str]| {
            Cli::try_parse_from([&["stats"], argv].concat())
                .expect_err("refused")
                .to_string()
        };
        let zero = err(&["--watch", "0"]);
        assert!(
            zero.contains("the interval must be at least 1 second"),
            "{zero}"
        );
        assert!(!zero.contains("18446744073709551615"), "{zero}");
        let half = err(&["--watch", "0.5"]);
        assert!(half.contains("a whole number of seconds"), "{half}");
        let cli = Cli::try_parse_from(["stats", "--watch", "2", "--json", "--top", "3"])
            .expect("--watch with --json");
        assert_eq!(
            (cli.args.watch, cli.args.json, cli.args.top),
            (Some(2), true, Some(3))
        );
        assert!(err(&["--top", "0"]).contains("--top"));
    }
}
