//! A CrowdSec-sized feed: 100,000 ban decisions (90% IPv4 addresses, 10% IPv6 ranges)
//! imported into a real LAPI (Debian's crowdsec, on the server namespace's loopback), then
//! pulled by `mirror-xdp run` in full at its start, RUNS times from no CrowdSec entries; then
//! RUNS deltas of 1,000 new decisions on top of them. The daemon logs each pull: its time in
//! the LAPI and on the wire, and how much later its entries were in force (written to the
//! kernel and the state file).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mirror_xdp_tests::crowdsec::{self, Lapi, feed_csv, pull_line};
use mirror_xdp_tests::testbed::{SERVER_IF, Testbed};
use mirror_xdp_tests::wait::poll_until;

use crate::end_to_end::stats;

pub const DECISIONS: u32 = 100_000;
const DELTA: u32 = 1_000;
const RUNS: usize = 3;

pub struct Outcome {
    /// Each full pull of [`DECISIONS`]: ms in the pull, ms from its answer to in force.
    pub full_pull_ms: Vec<f64>,
    pub full_apply_ms: Vec<f64>,
    /// Each delta of [`DELTA`] new decisions among them.
    pub delta_pull_ms: Vec<f64>,
    pub delta_apply_ms: Vec<f64>,
}

impl Outcome {
    /// The median pull plus the median apply of the full state: until in force.
    pub fn full_ms(&self) -> f64 {
        stats(&self.full_pull_ms).0 + stats(&self.full_apply_ms).0
    }
}

pub fn run() -> Result<Outcome> {
    let cli = std::env::current_exe()?.with_file_name("mirror-xdp");
    let bed = Testbed::new()?;
    let dir = bed.work_dir();
    let lapi = Lapi::start(&bed.server, &dir.join("crowdsec"))?;
    let key = crowdsec::key_file(&lapi, dir)?;
    let feed = dir.join("feed.csv");
    std::fs::write(&feed, feed_csv("192.0.2.100", DECISIONS, 0))?;
    lapi.cscli(&["decisions", "import", "-i", path(&feed)?])?;
    let with = dir.join("with.toml");
    std::fs::write(&with, crowdsec::policy(&lapi, &key, 80, "1s"))?;
    let without = dir.join("without.toml");
    std::fs::write(
        &without,
        "version = 1\n\n[[ports]]\nproto = \"tcp\"\nports = [80]\n",
    )?;

    let mut out = Outcome {
        full_pull_ms: Vec::new(),
        full_apply_ms: Vec::new(),
        delta_pull_ms: Vec::new(),
        delta_apply_ms: Vec::new(),
    };
    let mut daemon = None;
    for _ in 0..RUNS {
        drop(daemon.take());
        // A daemon without [crowdsec] removes the entries of the run before.
        let (mut cleaner, log) = bed.spawn_cli(&cli, &daemon_args(&without)?)?;
        wait_for(&log, "running (pid", 0, &mut cleaner)?;
        cleaner.stop()?;
        let (mut pulling, log) = bed.spawn_cli(&cli, &daemon_args(&with)?)?;
        let (new, pull, apply) = wait_for_pull(&log, "crowdsec: full state", 0, &mut pulling)?;
        if new != u64::from(DECISIONS) {
            bail!("the full pull brought {new} decisions, not {DECISIONS}");
        }
        out.full_pull_ms.push(pull as f64);
        out.full_apply_ms.push(apply as f64);
        daemon = Some((pulling, log));
    }
    // Deltas on top of the last run's entries, each of values new to the LAPI.
    let (mut pulling, log) = daemon.context("no run")?;
    for salt in 1..=RUNS as u32 {
        let delta = dir.join(format!("delta-{salt}.csv"));
        std::fs::write(&delta, feed_csv(&format!("192.0.2.{salt}"), DELTA, salt))?;
        // Stopped while the LAPI takes the import, so that one pull brings it all.
        pulling.signal(libc::SIGSTOP)?;
        let imported = lapi.cscli(&["decisions", "import", "-i", path(&delta)?]);
        pulling.signal(libc::SIGCONT)?;
        imported?;
        let nth = salt as usize - 1;
        let (new, pull, apply) = wait_for_pull(&log, "crowdsec: delta", nth, &mut pulling)?;
        if new != u64::from(DELTA) {
            bail!("the delta brought {new} decisions, not {DELTA}");
        }
        out.delta_pull_ms.push(pull as f64);
        out.delta_apply_ms.push(apply as f64);
    }
    pulling.stop()?;
    Ok(out)
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("UTF-8 path")
}

fn daemon_args(policy: &Path) -> Result<Vec<&str>> {
    Ok(vec![
        "run",
        "--iface",
        SERVER_IF,
        "--policy",
        path(policy)?,
        "--metrics",
        "127.0.0.1:19474",
    ])
}

/// Waits (bounded) until the daemon's log has `nth + 1` lines (from 0) containing `what`;
/// returns the last.
fn wait_for(
    log: &Path,
    what: &str,
    nth: usize,
    daemon: &mut mirror_xdp_tests::netns::ChildGuard,
) -> Result<String> {
    let mut found = None;
    poll_until(Duration::from_secs(120), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        found = text
            .lines()
            .filter(|l| l.contains(what))
            .nth(nth)
            .map(str::to_string);
        found.is_some() || daemon.ensure_running().is_err()
    });
    daemon.ensure_running()?;
    found.with_context(|| {
        format!(
            "`run` logged no {what:?} (number {}) within 120 s:\n{}",
            nth + 1,
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

fn wait_for_pull(
    log: &Path,
    what: &str,
    nth: usize,
    daemon: &mut mirror_xdp_tests::netns::ChildGuard,
) -> Result<(u64, u64, u64)> {
    let line = wait_for(log, what, nth, daemon)?;
    pull_line(&line).with_context(|| format!("cannot read the pull line {line:?}"))
}

pub fn table(o: &Outcome) -> String {
    let row = |what: &str, pull: &[f64], apply: &[f64]| {
        let (p, pmin, pmax) = stats(pull);
        let (a, amin, amax) = stats(apply);
        format!(
            "| {what} | {p:.0} ({pmin:.0}-{pmax:.0}) | {a:.0} ({amin:.0}-{amax:.0}) | {:.0} |\n",
            p + a
        )
    };
    format!(
        "| pull | LAPI and transfer, ms (min-max) | until in force, ms (min-max) | total, ms |\n\
         |---|---:|---:|---:|\n{}{}",
        row(
            "full state: 100,000 decisions, none in force before",
            &o.full_pull_ms,
            &o.full_apply_ms
        ),
        row(
            "delta: 1,000 new decisions among 100,000 or more",
            &o.delta_pull_ms,
            &o.delta_apply_ms
        ),
    )
}
