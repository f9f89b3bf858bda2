//! `mirror-xdp source` as transactions. Each takes the command lock first (attach and reload
//! hold it throughout), then opens the maps of the generation in force, so a concurrent
//! reload can neither build its generation from the file without this change nor retire
//! the generation the change went into. The kernel is changed before the file; if either
//! fails, the kernel gets the previous entries back.
//!
//! Above the live store and the lifecycle (it runs recovery); nothing below imports it.

use std::path::PathBuf;

use ipnet::IpNet;

use crate::lifecycle::LifecycleError;
use crate::lifecycle::recover;
use crate::live::sources::{
    BadLine, Change, Clock, Expiry, Hits, LiveError, LiveSet, PolicySources, load_policy_sources,
    open_in_force,
};
use crate::state::dir::{self, LockError};
use crate::state::{Paths, Record, StateError};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    State(#[from] StateError),
    /// Recovering what a crashed command left, or pins this build cannot read.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error("nothing is attached (no state in {0}); run `mirror-xdp attach` first")]
    NotAttached(PathBuf),
}

impl SourceError {
    /// Whether the user's input is at fault (exit 2) rather than the system (exit 1).
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, SourceError::Live(e) if e.is_invalid_input())
    }
}

/// What a change does to the entries it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// For `ttl_secs` seconds, or for good.
    Deny {
        ttl_secs: Option<u64>,
    },
    Allow,
    /// Live entries only, every one named (or nothing is removed).
    Remove,
}

/// The prefixes a command names: from the command line (`file: None`, line 0) or from the
/// lines of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entries {
    pub file: Option<String>,
    pub nets: Vec<(usize, IpNet)>,
}

/// What a change did.
#[derive(Clone, Copy, Debug)]
pub struct Applied {
    pub change: Change,
    /// The expiry a deny gave its entries.
    pub expires: Option<Expiry>,
    /// Expired entries dropped on the way.
    pub pruned: usize,
    pub clock: Clock,
}

/// Applies `op` to `entries` in the generation in force, then in the state file. Notes
/// (recovery, a failed undo) go to `progress`.
pub fn change(
    paths: &Paths,
    op: Op,
    entries: &Entries,
    progress: &mut dyn FnMut(&str),
) -> Result<Applied, SourceError> {
    let nets: Vec<IpNet> = entries.nets.iter().map(|(_, net)| *net).collect();
    let ((change, expires, pruned), clock, _) =
        transaction(paths, true, progress, |after, clock| {
            let pruned = after.prune(clock);
            let (change, expires) = match op {
                Op::Deny { ttl_secs } => {
                    let expires = ttl_secs.map_or(Expiry::Never, |secs| clock.expiry_after(secs));
                    (after.deny(&nets, expires), Some(expires))
                }
                Op::Allow => (after.allow(&nets), None),
                Op::Remove => {
                    all_live(after, entries, paths)?;
                    (after.remove(&nets), None)
                }
            };
            Ok((change, expires, pruned))
        })?;
    Ok(Applied {
        change,
        expires,
        pruned,
        clock,
    })
}

/// Under the command lock, `edit`s the live set and brings the generation in force in line
/// with it, then the state file (`always`, or only if `edit` changed it); if either fails,
/// the kernel gets the previous entries back. Returns what `edit` returned, the clock it
/// was given and the set after.
fn transaction<T>(
    paths: &Paths,
    always: bool,
    progress: &mut dyn FnMut(&str),
    edit: impl FnOnce(&mut LiveSet, &Clock) -> Result<T, SourceError>,
) -> Result<(T, Clock, LiveSet), SourceError> {
    let (_lock, record) = recover::locked_in_force(paths, progress)?;
    let record = record.ok_or_else(|| SourceError::NotAttached(paths.state_dir.clone()))?;
    let mut maps = open_in_force(paths, &record).map_err(LiveError::from)?;
    let clock = Clock::now();
    let before = LiveSet::load(paths)?;
    let mut after = before.clone();
    let edited = edit(&mut after, &clock)?;
    if !always && after == before {
        return Ok((edited, clock, after));
    }
    let result = after
        .apply_at(&mut maps, &clock)
        .and_then(|_| after.save(paths));
    if let Err(e) = result {
        if let Err(again) = before.apply(&mut maps) {
            progress(&format!(
                "mirror-xdp: restoring the previous live entries failed too: {again}"
            ));
        }
        return Err(e.into());
    }
    Ok((edited, clock, after))
}

/// A remove names live entries only, every one of them.
fn all_live(set: &LiveSet, entries: &Entries, paths: &Paths) -> Result<(), LiveError> {
    let missing: Vec<&(usize, IpNet)> = entries
        .nets
        .iter()
        .filter(|(_, net)| !set.contains(net))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let policy = load_policy_sources(paths)?;
    let crowdsec = set.crowdsec_nets();
    let not_live = |prefix: IpNet| LiveError::NotLive {
        prefix,
        in_policy: policy.contains(&prefix),
        crowdsec: crowdsec.contains_key(&prefix),
    };
    let Some(file) = &entries.file else {
        return Err(not_live(missing[0].1));
    };
    let lines = missing
        .iter()
        .map(|(line, net)| BadLine {
            file: file.clone(),
            line: *line,
            message: not_live(*net).to_string(),
        })
        .collect();
    Err(LiveError::BadLines {
        file: file.clone(),
        lines,
    })
}

/// What `source list` shows.
#[derive(Clone, Debug)]
pub struct Listing {
    pub live: LiveSet,
    /// The kernel's hit counts; `None` when nothing is attached.
    pub hits: Option<Hits>,
    /// The attached policy's entries; empty when nothing is attached.
    pub policy: PolicySources,
    pub clock: Clock,
}

/// The live entries (expired ones pruned, in the kernel too) and, with an enforcer
/// attached, the policy's entries and the hit counts.
pub fn list(paths: &Paths) -> Result<Listing, SourceError> {
    let _lock = dir::lock(&paths.state_dir)?;
    let record = Record::load(paths)?;
    let clock = Clock::now();
    let mut live = LiveSet::load(paths)?;
    let pruned = live.prune(&clock);
    let (hits, policy) = match &record {
        Some(record) => {
            let mut maps = open_in_force(paths, record).map_err(LiveError::from)?;
            // Pruning reaches the kernel too, as after every command.
            live.apply_at(&mut maps, &clock)?;
            (Some(Hits::read(&maps)?), load_policy_sources(paths)?)
        }
        None => (None, PolicySources::default()),
    };
    if pruned > 0 {
        live.save(paths)?;
    }
    Ok(Listing {
        live,
        hits,
        policy,
        clock,
    })
}

/// What one CrowdSec pull changes: every decision (`replace`: the LAPI's full state, at
/// start and after an outage) or the new and deleted ones.
#[derive(Clone, Debug, Default)]
pub struct CrowdsecPull {
    pub replace: bool,
    /// (decision id, prefix, seconds left).
    pub new: Vec<(i64, IpNet, u64)>,
    pub deleted: Vec<i64>,
}

/// Applies a CrowdSec pull to the generation in force and the state file, like
/// [`change`] (but nothing is written when the pull changes nothing). Returns the prefixes
/// CrowdSec has in force.
pub fn sync_crowdsec(
    paths: &Paths,
    pull: &CrowdsecPull,
    progress: &mut dyn FnMut(&str),
) -> Result<usize, SourceError> {
    let ((), _, after) = transaction(paths, false, progress, |after, clock| {
        if pull.replace {
            after.crowdsec.clear();
        }
        for id in &pull.deleted {
            after.crowdsec.remove(id);
        }
        for &(id, net, secs) in &pull.new {
            after.crowdsec.insert(id, (net, clock.expiry_after(secs)));
        }
        after.prune(clock);
        Ok(())
    })?;
    Ok(after.crowdsec_nets().len())
}
