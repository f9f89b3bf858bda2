//! `mirror-xdp run`: the enforcer as a foreground daemon. It attaches, or adopts an enforcer
//! that is attached already by swapping this binary's programs and the policy in behind the
//! pinned links (no gap, maps kept); then it reloads on SIGHUP and on policy file changes,
//! serves Prometheus metrics and logs sampled drops. Stopping it never detaches: the pins
//! keep the protection in force, and the next start adopts it.

mod drops;
mod watch;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::signal::unix::{SignalKind, signal};

use crate::{
    crowdsec::{self, Bouncer},
    lifecycle::lockout::{self, LockoutRefused},
    lifecycle::{self, AttachMode, EgressChoice, LifecycleError, Sizes},
    observe::metrics,
    policy::{Policy, crowdsec::Crowdsec},
    state::{Paths, Record},
};

/// Where metrics are served unless `--metrics` says otherwise: loopback only.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9472";

/// What `run` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    pub ifaces: Vec<String>,
    pub policy: PathBuf,
    pub metrics: SocketAddr,
    pub xdp_mode: AttachMode,
    /// The egress program's hook for a new attachment.
    pub egress_hook: EgressChoice,
    /// Apply policies that would cut the admin's session (warn instead of refusing).
    pub force: bool,
}

/// Why the daemon did not start; each maps to an exit code (README, "Command line").
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The policy does not validate (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The policy would lock out the admin (exit 3).
    #[error(transparent)]
    Lockout(#[from] LockoutRefused),
    /// Anything else (exit 1).
    #[error("{0}")]
    Operational(String),
}

/// Any failure but bad input or a refused lock-out, as its message.
fn operational(e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Operational(e.to_string())
}

/// One log line on stderr (journald, or the file a supervisor points it at).
fn log(line: &str) {
    eprintln!("{line}");
}

/// Runs until SIGTERM or SIGINT. Errors only at start; later failures are logged.
pub fn run(paths: Paths, opts: Options) -> Result<(), DaemonError> {
    // One thread is plenty: reloads run on tokio's blocking pool, metrics on their own thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(operational)?;
    runtime.block_on(daemon(paths, opts))
}

async fn daemon(paths: Paths, opts: Options) -> Result<(), DaemonError> {
    // Drop events stamped before this are from before the daemon: the log marks them.
    let started_ns = crate::kernel::maps::monotonic_ns();
    // First of all: a SIGHUP or SIGTERM during the start must not kill the process half-way.
    let mut hup = signal(SignalKind::hangup()).map_err(operational)?;
    let mut term = signal(SignalKind::terminate()).map_err(operational)?;
    let mut int = signal(SignalKind::interrupt()).map_err(operational)?;

    let policy_path = std::path::absolute(&opts.policy).map_err(operational)?;
    // Taken before the policy is read: a change made while starting is then seen as one.
    let mut seen = watch::fingerprint(&policy_path);
    let policy = Policy::load(&policy_path).map_err(|e| DaemonError::Invalid(e.to_string()))?;
    // A CrowdSec key that others can read is refused before anything changes.
    let key = match &policy.crowdsec {
        Some(c) => Some(crowdsec::read_key(&c.api_key_file).map_err(DaemonError::Invalid)?),
        None => None,
    };
    // Bound before anything changes: a port in use fails the start, not the metrics later.
    let listener = TcpListener::bind(opts.metrics)
        .map_err(|e| operational(format!("cannot serve metrics on {}: {e}", opts.metrics)))?;
    // Watching before the policy is applied: a change from then on is not missed.
    let mut watcher = watch::Watcher::new(&policy_path).map_err(operational)?;
    let mut watched = Vec::new();
    refresh(&mut watcher, &mut watched);
    start(&paths, &opts, &policy_path, &policy)?;

    let crowdsec_stats = Arc::new(Mutex::new(crowdsec::Stats::default()));
    let mut bouncer = match (policy.crowdsec.clone(), key) {
        (Some(config), Some(key)) => Some(start_bouncer(&paths, config, key, &crowdsec_stats)),
        _ => {
            clear_crowdsec(&paths);
            None
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let metrics_thread = serve_metrics(listener, &paths, stop.clone(), crowdsec_stats.clone())?;
    log(&format!("metrics on http://{}/metrics", opts.metrics));
    if !opts.metrics.ip().is_loopback() {
        log(&format!(
            "note: {} is not a loopback address: whoever reaches it can read the counters",
            opts.metrics.ip()
        ));
    }
    match drops::open(&paths) {
        Ok(ring) => {
            tokio::spawn(drops::run(ring, started_ns, log));
            log(&format!(
                "drop log: sampled in the kernel (at most {} events a second per CPU), at most {} lines a second here",
                mirror_xdp_common::events::DROP_EVENTS_PER_SEC,
                drops::LINES_PER_SEC
            ));
        }
        Err(e) => log(&format!("drop log off: {e}")),
    }
    log(&format!(
        "running (pid {}): SIGHUP or a change of the policy reloads it; SIGTERM stops the daemon, not the protection",
        std::process::id()
    ));

    let stopped_by = loop {
        tokio::select! {
            _ = hup.recv() => {
                seen = watch::fingerprint(&policy_path);
                if let Some(config) = reload_now(&paths, &policy_path, opts.force, "SIGHUP").await {
                    bouncer = follow(&paths, bouncer, config, &crowdsec_stats);
                }
            }
            () = watcher.changed() => {
                let now = watch::fingerprint(&policy_path);
                // Saved unchanged, touched, or a neighbour in the folder changed: no reload.
                if now != seen {
                    seen = now;
                    if let Some(config) =
                        reload_now(&paths, &policy_path, opts.force, "policy changed").await
                    {
                        bouncer = follow(&paths, bouncer, config, &crowdsec_stats);
                    }
                }
            }
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
        }
        // The policy may name other set files now, and a replaced folder needs a new watch.
        refresh(&mut watcher, &mut watched);
    };

    drop(bouncer);
    stop.store(true, Ordering::Relaxed);
    let _ = metrics_thread.join();
    let left = match Record::load(&paths) {
        Ok(Some(r)) => format!(
            "the enforcer stays attached to {} with generation {}",
            r.interface_names(),
            r.policy.generation
        ),
        _ => "the enforcer, if attached, stays attached".to_string(),
    };
    log(&format!(
        "{stopped_by}: stopping the daemon; {left} (`mirror-xdp detach` removes it)"
    ));
    Ok(())
}

/// Attaches, or adopts the enforcer already attached (its link pins exist).
fn start(
    paths: &Paths,
    opts: &Options,
    policy_path: &Path,
    policy: &Policy,
) -> Result<(), DaemonError> {
    let mut progress = |m: &str| log(m);
    let record = Record::load(paths).map_err(operational)?;
    match record.filter(|r| {
        r.interfaces
            .iter()
            .any(|i| paths.xdp_link_pin(&i.name).exists())
    }) {
        Some(record) => adopt(paths, opts, policy_path, &record),
        None => {
            // (An adoption's reload makes this check itself.)
            lockout::refuse_lockout(policy, paths, opts.force, &mut progress)?;
            let record = lifecycle::attach(
                paths,
                &opts.ifaces,
                policy,
                opts.xdp_mode,
                opts.egress_hook,
                Sizes::default(),
                &mut progress,
            )
            .map_err(operational)?;
            for i in &record.interfaces {
                log(&format!(
                    "attached to {} ({} mode, program {}, egress {}): policy {} in {} mode, generation {}",
                    i.name,
                    i.xdp_mode,
                    i.prog_id,
                    i.egress.name(),
                    record.policy.path.display(),
                    record.mode,
                    record.policy.generation
                ));
            }
            Ok(())
        }
    }
}

/// Takes over a running enforcer without a gap: BPF_LINK_UPDATE swaps this binary's
/// programs, reading the given policy, in behind the pinned links; the shared maps
/// (counters, flows, limiter state, live entries) stay as they are.
fn adopt(
    paths: &Paths,
    opts: &Options,
    policy_path: &Path,
    record: &Record,
) -> Result<(), DaemonError> {
    let mut have: Vec<&str> = record.interfaces.iter().map(|i| i.name.as_str()).collect();
    let mut want: Vec<&str> = opts.ifaces.iter().map(String::as_str).collect();
    have.sort_unstable();
    want.sort_unstable();
    want.dedup();
    if have != want {
        log(&format!(
            "note: the attached enforcer protects {}, not {} as --iface says: adopting it as it is, nothing is detached \
             (`mirror-xdp attach --iface IF --policy FILE` adds an interface to it, \
             `mirror-xdp detach --iface IF` removes one)",
            have.join(", "),
            want.join(", ")
        ));
    }
    let before = record.policy.generation;
    let done =
        lifecycle::reload(paths, Some(policy_path), opts.force, &mut |m| log(m)).map_err(|e| {
            match e {
                LifecycleError::Lockout(refused) => DaemonError::Lockout(refused),
                e if e.is_invalid_input() => DaemonError::Invalid(e.to_string()),
                e => operational(format!("adopting the attached enforcer: {e}")),
            }
        })?;
    let r = &done.record;
    log(&format!(
        "adopted the enforcer attached to {} ({}) without detaching: this binary's programs and policy {} \
         swapped in behind the pinned links in {} ms (generation {before} -> {}, program {}); counters, \
         flows, limiter state and live entries kept",
        r.interface_names(),
        modes(r),
        r.policy.path.display(),
        done.elapsed.as_millis(),
        r.policy.generation,
        r.interfaces.first().map_or(0, |i| i.prog_id)
    ));
    Ok(())
}

/// Reloads off the async thread (a large set file takes seconds to compile), so the drop
/// log keeps running; signals that arrive meanwhile wait their turn. Returns the new
/// policy's `[crowdsec]` when the reload succeeded.
async fn reload_now(
    paths: &Paths,
    policy: &Path,
    force: bool,
    why: &str,
) -> Option<Option<Crowdsec>> {
    log(&format!("{why}: reloading {}", policy.display()));
    let (paths, policy) = (paths.clone(), policy.to_path_buf());
    tokio::task::spawn_blocking(move || reload_blocking(&paths, &policy, force))
        .await
        .unwrap_or_else(|e| {
            log(&format!("reload failed: {e}"));
            None
        })
}

/// A policy that does not validate, or would lock out the admin, is refused by `reload`,
/// which counts the failure (`mirror_xdp_reloads_total{result="error"}`).
fn reload_blocking(paths: &Paths, policy: &Path, force: bool) -> Option<Option<Crowdsec>> {
    match lifecycle::reload(paths, Some(policy), force, &mut |m| log(m)) {
        Ok(done) => {
            log(&format!(
                "reloaded {} in {} ms: generation {}, {} mode",
                done.record.policy.path.display(),
                done.elapsed.as_millis(),
                done.record.policy.generation,
                done.record.mode
            ));
            // The same summary as `mirror-xdp diff` and `reload`.
            for line in crate::policy::diff::summary(done.changes.as_deref()) {
                log(&format!("  {line}"));
            }
            Some(done.crowdsec)
        }
        Err(e) => {
            log(&format!("reload failed: {e}\n{}", unchanged(paths)));
            None
        }
    }
}

fn start_bouncer(
    paths: &Paths,
    config: Crowdsec,
    key: String,
    stats: &Arc<Mutex<crowdsec::Stats>>,
) -> Bouncer {
    log(&format!(
        "crowdsec: pulling ban decisions ({}) from {} every {} s",
        config
            .scopes
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        config.url,
        config.poll_interval.as_secs_f64()
    ));
    Bouncer::start(paths.clone(), config, key, stats.clone(), log)
}

/// The bouncer the reloaded policy asks for: the running one if `[crowdsec]` is unchanged,
/// a new one if it changed (the old one kept if the new key cannot be read), none if it
/// is gone (and its entries with it).
fn follow(
    paths: &Paths,
    running: Option<Bouncer>,
    wanted: Option<Crowdsec>,
    stats: &Arc<Mutex<crowdsec::Stats>>,
) -> Option<Bouncer> {
    if running.as_ref().map(|b| &b.config) == wanted.as_ref() {
        return running;
    }
    let Some(config) = wanted else {
        drop(running);
        clear_crowdsec(paths);
        // No bouncer: no CrowdSec metrics either.
        stats.lock().unwrap_or_else(|p| p.into_inner()).enabled = false;
        return None;
    };
    match crowdsec::read_key(&config.api_key_file) {
        Ok(key) => {
            drop(running);
            Some(start_bouncer(paths, config, key, stats))
        }
        Err(e) => {
            let kept = if running.is_some() {
                "the previous [crowdsec] keeps running"
            } else {
                "no CrowdSec bouncer runs"
            };
            log(&format!("crowdsec: {e}; {kept}"));
            running
        }
    }
}

/// Without `[crowdsec]`, no CrowdSec entries stay (a policy that dropped it, or a daemon
/// started without it).
fn clear_crowdsec(paths: &Paths) {
    match crowdsec::clear(paths, log) {
        Ok(0) => {}
        Ok(n) => log(&format!(
            "crowdsec: the policy has no [crowdsec]: its {n} denied prefixes removed"
        )),
        Err(e) => log(&format!("crowdsec: removing its entries failed: {e}")),
    }
}

fn unchanged(paths: &Paths) -> String {
    match Record::load(paths) {
        Ok(Some(r)) => format!(
            "the policy in force is unchanged (generation {})",
            r.policy.generation
        ),
        _ => "the policy in force is unchanged".to_string(),
    }
}

/// Metrics rendered on every scrape from the pins and the state record (reload counts
/// included, whether this daemon or `mirror-xdp reload` did them).
fn serve_metrics(
    listener: TcpListener,
    paths: &Paths,
    stop: Arc<AtomicBool>,
    crowdsec: Arc<Mutex<crowdsec::Stats>>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let paths = paths.clone();
    let source = move || {
        let pinned = metrics::scrape_pinned(&paths)?;
        let stats = crowdsec.lock().unwrap_or_else(|p| p.into_inner()).render();
        Ok(pinned + &stats)
    };
    metrics::serve_listener(listener, source, stop).map_err(operational)
}

fn refresh(watcher: &mut watch::Watcher, watched: &mut Vec<PathBuf>) {
    let (dirs, problems) = watcher.refresh();
    for p in problems {
        log(&format!(
            "note: {p}; policy changes there are seen only on SIGHUP"
        ));
    }
    if dirs != *watched {
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        log(&format!(
            "watching {} for changes of the policy and its set files",
            shown.join(", ")
        ));
        *watched = dirs;
    }
}

fn modes(record: &Record) -> String {
    let modes: Vec<String> = record
        .interfaces
        .iter()
        .map(|i| format!("{} mode, egress {}", i.xdp_mode, i.egress.name()))
        .collect();
    modes.join(", ")
}
