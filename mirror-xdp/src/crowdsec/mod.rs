//! `[crowdsec]` under `run`: a bouncer that keeps the CrowdSec LAPI's ban decisions as live
//! deny entries (README, "CrowdSec"). It pulls the decision stream on a thread of its own
//! (a pull blocks), the whole state at start and after every failure, deltas in between,
//! and hands each pull to [`control::sources::sync_crowdsec`]. While the LAPI is away
//! nothing changes: the entries expire by their own TTL in the kernel.
//!
//! Above the control layer; only the daemon imports it.

mod lapi;
mod stream;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::control::sources::{self as control, CrowdsecPull};
use crate::live::sources::LiveSet;
use crate::policy::crowdsec::Crowdsec;
use crate::state::Paths;

pub use lapi::read_key;
use lapi::{Lapi, PullError};

/// Retries after a failure wait the poll interval, doubled each time up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What the bouncer did, for the metrics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// A bouncer runs (or ran): the metrics include these.
    pub enabled: bool,
    /// Prefixes CrowdSec has in force after the last pull.
    pub in_force: usize,
    pub pulls: u64,
    /// Failed pulls by kind: connect, auth, http, garbage, apply (the kernel or the
    /// state file refused the entries).
    pub errors: BTreeMap<&'static str, u64>,
    /// Decisions not enforced: `type` (not ban), `scope`, `invalid`.
    pub ignored: BTreeMap<&'static str, u64>,
    /// Unix seconds of the last pull applied.
    pub last_success: Option<f64>,
    pub up: bool,
}

impl Stats {
    /// Prometheus text, appended to the daemon's metrics.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.enabled {
            return out;
        }
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "mirror_xdp_crowdsec_decisions",
            "gauge",
            "Prefixes denied by CrowdSec decisions, as of the last pull.",
            &[(String::new(), self.in_force as f64)],
        );
        metric(
            "mirror_xdp_crowdsec_up",
            "gauge",
            "1 when the last pull of the CrowdSec LAPI succeeded.",
            &[(String::new(), f64::from(u8::from(self.up)))],
        );
        metric(
            "mirror_xdp_crowdsec_pulls_total",
            "counter",
            "Pulls of the CrowdSec decision stream applied.",
            &[(String::new(), self.pulls as f64)],
        );
        let by = |label: &str, map: &BTreeMap<&'static str, u64>, keys: &[&'static str]| {
            keys.iter()
                .map(|k| {
                    let n = map.get(k).copied().unwrap_or(0);
                    (format!("{{{label}=\"{k}\"}}"), n as f64)
                })
                .collect::<Vec<_>>()
        };
        metric(
            "mirror_xdp_crowdsec_errors_total",
            "counter",
            "Failed pulls of the CrowdSec decision stream, by kind.",
            &by(
                "kind",
                &self.errors,
                &["connect", "auth", "http", "garbage", "apply"],
            ),
        );
        metric(
            "mirror_xdp_crowdsec_ignored_total",
            "counter",
            "CrowdSec decisions not enforced: not a ban, another scope, or invalid.",
            &by("why", &self.ignored, &["type", "scope", "invalid"]),
        );
        if let Some(at) = self.last_success {
            metric(
                "mirror_xdp_crowdsec_last_success_timestamp_seconds",
                "gauge",
                "When a pull of the CrowdSec LAPI was last applied (Unix seconds).",
                &[(String::new(), at)],
            );
        }
        out
    }
}

/// The bouncer's thread; dropping it stops the thread (at once, even mid-wait) and waits
/// for it.
pub struct Bouncer {
    pub config: Crowdsec,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Bouncer {
    /// Starts pulling; the first pull asks for the whole state.
    pub fn start(
        paths: Paths,
        config: Crowdsec,
        key: String,
        stats: Arc<Mutex<Stats>>,
        log: fn(&str),
    ) -> Bouncer {
        stats.lock().unwrap_or_else(|p| p.into_inner()).enabled = true;
        let (stop, stopped) = mpsc::channel();
        let lapi = Lapi::new(&config, key);
        let cfg = config.clone();
        let thread =
            std::thread::spawn(move || pull_loop(&paths, &cfg, &lapi, &stats, &stopped, log));
        Bouncer {
            config,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Removes every CrowdSec entry (the policy has no `[crowdsec]` any more); returns how many
/// prefixes were denied.
pub fn clear(paths: &Paths, log: fn(&str)) -> Result<usize, String> {
    let had = LiveSet::load(paths)
        .map_err(|e| e.to_string())?
        .crowdsec_nets()
        .len();
    if had > 0 {
        let pull = CrowdsecPull {
            replace: true,
            ..CrowdsecPull::default()
        };
        control::sync_crowdsec(paths, &pull, &mut |m| log(m)).map_err(|e| e.to_string())?;
    }
    Ok(had)
}

fn pull_loop(
    paths: &Paths,
    config: &Crowdsec,
    lapi: &Lapi,
    stats: &Mutex<Stats>,
    stopped: &mpsc::Receiver<()>,
    log: fn(&str),
) {
    let mut startup = true;
    let mut backoff = config.poll_interval;
    // The kind of failure last logged: each is logged once, until a pull succeeds.
    let mut failing: Option<&'static str> = None;
    loop {
        let started = Instant::now();
        let answer = lapi.pull(startup);
        // The LAPI's work and the transfer; reading the answer is ours.
        let pulled = started.elapsed();
        let result = answer.and_then(|body| {
            stream::read(&body, startup, &config.scopes).map_err(PullError::Garbage)
        });
        let outcome = result
            .map_err(|e| (e.kind(), e.to_string()))
            .and_then(|(pull, ignored)| {
                control::sync_crowdsec(paths, &pull, &mut |m| log(m))
                    .map(|in_force| (pull, ignored, in_force))
                    .map_err(|e| ("apply", format!("the entries could not be applied: {e}")))
            });
        let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
        let wait = match outcome {
            Ok((pull, ignored, in_force)) => {
                s.in_force = in_force;
                s.pulls += 1;
                s.up = true;
                s.last_success = Some(unix_now());
                for (why, n) in [
                    ("type", ignored.kind),
                    ("scope", ignored.scope),
                    ("invalid", ignored.invalid),
                ] {
                    *s.ignored.entry(why).or_default() += n;
                }
                let back = failing.take().map_or("", |_| " (the LAPI answers again)");
                if startup || !pull.new.is_empty() || !pull.deleted.is_empty() {
                    log(&format!(
                        "crowdsec: {} {} new, {} deleted: {in_force} prefixes denied{back} \
                         (pull {} ms, applied {} ms later)",
                        if startup { "full state," } else { "delta," },
                        pull.new.len(),
                        pull.deleted.len(),
                        pulled.as_millis(),
                        (started.elapsed() - pulled).as_millis(),
                    ));
                }
                startup = false;
                backoff = config.poll_interval;
                config.poll_interval
            }
            Err((kind, message)) => {
                *s.errors.entry(kind).or_default() += 1;
                s.up = false;
                let wait = backoff;
                if failing != Some(kind) {
                    log(&format!(
                        "crowdsec: {message}; the entries in force stay until their own \
                         expiry; retrying with backoff (first in {} s), then resyncing in full",
                        wait.as_secs()
                    ));
                    failing = Some(kind);
                }
                // The LAPI may have counted a pull whose answer got lost: ask for everything.
                startup = true;
                backoff = (backoff * 2).min(MAX_BACKOFF.max(config.poll_interval));
                wait
            }
        };
        drop(s);
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            // The daemon dropped its end: stop.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
