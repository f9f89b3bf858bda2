//! Recovery from an attach, reload or detach that died half-way (the steps are named in
//! [`crate::fault`]). Commands run it first, holding the lock that attach, reload and detach
//! hold throughout, so what it finds half-done was left by a process that is gone, never by
//! one still at work. What each crash leaves, and what becomes of it:
//! - attach: nothing is in force before the first link; after it, each linked interface
//!   enforces the new policy entirely (the program is linked only once its maps are complete).
//!   The pending record tells an attach was under way: `attach`, `detach` and `run` roll it
//!   back (unlink, unpin, put the sysctl back) and go on; other commands say what to run.
//! - reload: until the first link update the old generation is in force, and the half-built
//!   `gen-N-new` is thrown away; from the first update on, the swap is finished with the
//!   programs pinned in `gen-N-new`, which is then renamed `gen-N`, and the pending record is
//!   committed. Each link runs one generation's program with that generation's maps.
//! - detach: an interface whose XDP link pin is gone is no longer attached; with none left,
//!   the detach is finished (pins, sysctl, state file).
//!
//! Generations no link runs are removed, with the pending state of a reload that never began
//! its swap.

use std::path::{Path, PathBuf};

use aya::programs::{
    ProgramInfo, SchedClassifier, Xdp,
    links::{FdLink, PinnedLink},
    tc::SchedClassifierLink,
    xdp::XdpLink,
};

use crate::{
    enforcer::{self, EnforcerError},
    fault,
    object::{EGRESS_PIN, XDP_PIN},
    pending,
    state::{Paths, Record},
};

/// How far recovery may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Finish or throw away what changes no protection in force; report an unfinished attach
    /// that linked interfaces (reading commands, `reload`).
    Complete,
    /// Also roll back an unfinished attach (`attach`, `detach`, `run`).
    RollBack,
}

/// Recovers what a crashed command left; returns whether there was anything. Holding the
/// command lock is the caller's proof that no other command is at work.
pub fn recover(
    paths: &Paths,
    _lock: &crate::statedir::Lock,
    level: Level,
    say: &mut dyn FnMut(&str),
) -> Result<bool, EnforcerError> {
    let pending = pending::load(paths)?;
    match Record::load(paths)? {
        None => unattached(paths, pending, level, say),
        Some(record) => attached(paths, record, pending, say),
    }
}

/// The folder a reload builds generation `generation` in, invisible to readers until the
/// links run it.
pub fn staging_dir(paths: &Paths, generation: u64) -> PathBuf {
    paths.bpffs.join(format!("gen-{generation}-new"))
}

/// Renames the staging folder of `generation` to its folder: the last step of a swap.
pub fn promote_staging(paths: &Paths, generation: u64) -> Result<(), EnforcerError> {
    let renamed = paths.generation_dir(generation);
    std::fs::rename(staging_dir(paths, generation), &renamed).map_err(|source| {
        EnforcerError::Bpffs {
            path: renamed,
            source,
        }
    })
}

/// No state file: an attach that did not finish, or leftovers.
fn unattached(
    paths: &Paths,
    pending: Option<Record>,
    level: Level,
    say: &mut dyn FnMut(&str),
) -> Result<bool, EnforcerError> {
    let links = enforcer::link_pins(paths);
    if pending.is_none() && !enforcer::has_pins(paths) {
        return Ok(false);
    }
    if !links.is_empty() && level == Level::Complete {
        return Err(EnforcerError::Unfinished(format!(
            "an attach did not finish (the process ended half-way): {} in {} hold it in part. \
             Run `mirror-xdp attach` again (it rolls the unfinished one back first) or \
             `mirror-xdp detach` to remove it",
            names(&links),
            paths.bpffs.display()
        )));
    }
    enforcer::remove_pins(paths);
    let before = pending
        .as_ref()
        .and_then(|p| p.tcp_syncookies_before.clone());
    if let Some(before) = &before {
        crate::syncookies::restore(Path::new(crate::syncookies::SYSCTL), before)?;
    }
    pending::discard(paths);
    let what = if pending.is_some() {
        "an attach did not finish (the process ended half-way): rolled it back"
    } else {
        "found pins that no attached enforcer uses (an attach or detach did not finish): removed them"
    };
    let sysctl = if before.is_some() {
        ", net.ipv4.tcp_syncookies restored"
    } else {
        ""
    };
    let unlinked = if links.is_empty() {
        String::new()
    } else {
        format!(" (unlinked {})", names(&links))
    };
    say(&format!("note: {what}{unlinked}{sysctl}"));
    Ok(true)
}

/// A state file: a detach or reload that did not finish, or dead generations.
fn attached(
    paths: &Paths,
    mut record: Record,
    pending: Option<Record>,
    say: &mut dyn FnMut(&str),
) -> Result<bool, EnforcerError> {
    let gone: Vec<String> = record
        .interfaces
        .iter()
        .filter(|i| !paths.xdp_link_pin(&i.name).exists())
        .map(|i| i.name.clone())
        .collect();
    if !gone.is_empty() {
        for name in &gone {
            enforcer::unpin_link(&paths.egress_link_pin(name));
        }
        record.interfaces.retain(|i| !gone.contains(&i.name));
        if record.interfaces.is_empty() {
            enforcer::finish_detach(paths, &record)?;
            say(&format!(
                "note: a detach from {} did not finish (the process ended half-way): finished it",
                gone.join(", ")
            ));
            return Ok(true);
        }
        record.save(paths)?;
        say(&format!(
            "note: {} is no longer attached (its link is gone: a detach did not finish): \
             removed it from the state file",
            gone.join(", ")
        ));
    }
    let finished = finish_reload(paths, &mut record, pending, say)?;
    let removed = remove_dead_generations(paths, &record, say)?;
    Ok(!gone.is_empty() || finished || removed)
}

/// Finishes a reload that swapped at least one link, or commits one that swapped them all.
fn finish_reload(
    paths: &Paths,
    record: &mut Record,
    pending: Option<Record>,
    say: &mut dyn FnMut(&str),
) -> Result<bool, EnforcerError> {
    let target = record.policy.generation + 1;
    let running = running(paths, record);
    let staging = staging_dir(paths, target);
    let renamed = paths.generation_dir(target);
    let step = if Programs::read(&staging).is_some_and(|p| p.run_by_any(&running)) {
        swap_links(paths, record, &staging)?;
        promote_staging(paths, target)?;
        "its swap began: finished the swap"
    } else if Programs::read(&renamed).is_some_and(|p| p.run_by_any(&running)) {
        "its links were swapped: wrote the state file"
    } else {
        return Ok(false);
    };
    match pending.filter(|p| p.policy.generation == target) {
        Some(next) => {
            pending::commit(paths)?;
            *record = next;
        }
        None => {
            // The pending record is gone (removed by hand): the generation, at least, is known.
            record.policy.generation = target;
            record.save(paths)?;
        }
    }
    say(&format!(
        "note: a reload to generation {target} did not finish (the process ended half-way), \
         but {step}"
    ));
    Ok(true)
}

/// Removes every generation that is not `record`'s and that no link runs, and the pending
/// state of a reload that never swapped a link.
fn remove_dead_generations(
    paths: &Paths,
    record: &Record,
    say: &mut dyn FnMut(&str),
) -> Result<bool, EnforcerError> {
    let running = running(paths, record);
    let mut removed = Vec::new();
    for dir in enforcer::generation_dirs(paths) {
        let in_force = dir == paths.generation_dir(record.policy.generation);
        let linked = Programs::read(&dir).is_some_and(|p| p.run_by_any(&running));
        if !in_force && !linked {
            enforcer::remove_dir_pins(&dir);
            removed.push(enforcer::file_name(&dir));
        }
    }
    // A spare of another generation or build, or one whose build did not finish.
    crate::spare::tidy(paths, record.policy.generation + 1);
    let stale = pending::load(paths)?.is_some();
    pending::discard(paths);
    if !removed.is_empty() {
        say(&format!(
            "note: removed {} of a reload that did not finish (no link runs it)",
            removed.join(", ")
        ));
    }
    Ok(!removed.is_empty() || stale)
}

/// The programs pinned in a generation's folder, by id.
#[derive(Clone, Copy, Debug)]
struct Programs {
    xdp: u32,
    egress: u32,
}

impl Programs {
    /// `None` for a folder without program pins (one of a build that pinned none).
    fn read(dir: &Path) -> Option<Programs> {
        let id = |name| ProgramInfo::from_pin(dir.join(name)).ok().map(|i| i.id());
        Some(Programs {
            xdp: id(XDP_PIN)?,
            egress: id(EGRESS_PIN)?,
        })
    }

    fn run_by_any(&self, running: &[u32]) -> bool {
        running.contains(&self.xdp) || running.contains(&self.egress)
    }
}

/// The ids of the programs the links of `record`'s interfaces run.
fn running(paths: &Paths, record: &Record) -> Vec<u32> {
    record
        .interfaces
        .iter()
        .flat_map(|i| [paths.xdp_link_pin(&i.name), paths.egress_link_pin(&i.name)])
        .filter_map(|pin| link_program(&pin))
        .collect()
}

fn link_program(pin: &Path) -> Option<u32> {
    let link = FdLink::from(PinnedLink::from_pin(pin).ok()?);
    link.info().ok().map(|i| i.program_id())
}

/// Points every link of `record`'s interfaces at the programs pinned in `dir` (BPF_LINK_UPDATE,
/// atomic per link): egress links first, so each interface records its own connections by the
/// new policy before it judges by it. Links that run them already are left alone.
pub fn swap_links(paths: &Paths, record: &Record, dir: &Path) -> Result<(), EnforcerError> {
    let swap_err = |iface: &str| {
        let iface = iface.to_string();
        move |e: &dyn std::fmt::Display| EnforcerError::Swap {
            iface: iface.clone(),
            message: e.to_string(),
        }
    };
    let wanted = Programs::read(dir).ok_or_else(|| EnforcerError::Swap {
        iface: String::new(),
        message: format!("no programs pinned in {}", dir.display()),
    })?;
    let mut egress =
        SchedClassifier::from_pin(dir.join(EGRESS_PIN)).map_err(|e| swap_err("")(&e))?;
    let mut xdp = Xdp::from_pin(
        dir.join(XDP_PIN),
        aya_obj::programs::XdpAttachType::Interface,
    )
    .map_err(|e| swap_err("")(&e))?;
    for iface in &record.interfaces {
        let pin = paths.egress_link_pin(&iface.name);
        if link_program(&pin) == Some(wanted.egress) {
            continue;
        }
        let err = swap_err(&iface.name);
        let link = open_link(&pin).map_err(|e| err(&e))?;
        let link = SchedClassifierLink::try_from(link).map_err(|e| err(&e))?;
        let id = egress.attach_to_link(link).map_err(|e| err(&e))?;
        // The pin keeps the link; this process's handle can go.
        drop(egress.take_link(id).map_err(|e| err(&e))?);
        fault::point("reload:egress-swapped");
    }
    for iface in &record.interfaces {
        let pin = paths.xdp_link_pin(&iface.name);
        if link_program(&pin) == Some(wanted.xdp) {
            continue;
        }
        let err = swap_err(&iface.name);
        let link = open_link(&pin).map_err(|e| err(&e))?;
        let link = XdpLink::try_from(link).map_err(|e| err(&e))?;
        let id = xdp.attach_to_link(link).map_err(|e| err(&e))?;
        drop(xdp.take_link(id).map_err(|e| err(&e))?);
        fault::point("reload:xdp-swapped");
    }
    Ok(())
}

/// The pinned link as a handle that BPF_LINK_UPDATE can use (the pin stays).
fn open_link(pin: &Path) -> Result<FdLink, aya::programs::links::LinkError> {
    // `FdLink::from` keeps the pin (`unpin` would remove it).
    Ok(FdLink::from(PinnedLink::from_pin(pin)?))
}

fn names(pins: &[PathBuf]) -> String {
    pins.iter()
        .map(|p| enforcer::file_name(p))
        .collect::<Vec<_>>()
        .join(", ")
}

/// For a command that reads the attached enforcer: recovers what a crashed command left
/// (notes go to `say`), then checks that this build reads its pins. The record, if an
/// enforcer is attached.
pub fn for_reading(
    paths: &Paths,
    say: &mut dyn FnMut(&str),
) -> Result<Option<Record>, EnforcerError> {
    let lock = crate::statedir::lock(&paths.state_dir)?;
    recover(paths, &lock, Level::Complete, say)?;
    let Some(record) = Record::load(paths)? else {
        return Ok(None);
    };
    let scope = crate::layout::Scope::Reading(record.policy.generation);
    crate::layout::check(paths, scope, record.limiter_entries)?;
    Ok(Some(record))
}
