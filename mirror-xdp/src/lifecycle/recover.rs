//! Recovery from an attach, reload or detach that died half-way (the steps are named in
//! [`super::fault`]). Commands run it first, holding the lock that attach, reload and detach
//! hold throughout, so what it finds half-done was left by a process that is gone, never by
//! one still at work. What each crash leaves, and what becomes of it:
//! - attach: nothing is in force before the first link; after it, each linked interface
//!   enforces the new policy entirely (the program is linked only once its maps are complete).
//!   The pending record tells an attach was under way, and names each tc filter (and clsact
//!   qdisc) before it is added: `attach`, `detach` and `run` roll it back (unlink, delete our
//!   tc filters and the qdiscs we added, unpin, put the sysctl back) and go on; other
//!   commands say what to run.
//! - reload: until the first link update the old generation is in force, and the half-built
//!   `gen-N-new` is thrown away; from the first update on, the swap is finished with the
//!   programs pinned in `gen-N-new`, which is then renamed `gen-N`, and the pending record is
//!   committed. Each link runs one generation's program with that generation's maps.
//! - adding an interface (`attach --iface` with an enforcer attached): the pending record of
//!   the generation in force names the new interfaces before anything is linked; an add that
//!   did not finish is rolled back (their links unpinned, their tc filters deleted), the
//!   interfaces attached before untouched. Once an XDP link is pinned, only `attach`,
//!   `detach` and `run` roll it back; other commands say what to run.
//! - detach: an interface whose XDP link pin is gone is no longer attached: its egress hook
//!   goes too (TCX link, or tc filter and the qdisc we added); with none left, the detach is
//!   finished (pins, sysctl, state file).
//!
//! Generations no link runs are removed, with the pending state of a reload that never began
//! its swap.

use super::{
    LifecycleError,
    compat::{self, Scope},
    egress, pending,
    pins::{self, file_name, generation_dirs, link_pins, remove_dir_pins},
    spare,
    swap::{Programs, promote_staging, running, swap_links},
    teardown::{finish_detach, remove_egress_hooks, remove_pins, restore_sysctls},
};
use crate::state::{EgressHook, InterfaceRecord, Paths, Record, dir::Lock};

/// How far recovery may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Finish or throw away only what changes no protection in force; an unfinished attach
    /// that linked interfaces is reported, not touched (reading commands, `reload`).
    FinishOnly,
    /// Also roll back an unfinished attach, unlinking what it linked (`attach`, `detach`,
    /// `run`).
    RollBackAttach,
}

/// Recovers what a crashed command left; returns whether there was anything. Holding the
/// live lock is the caller's proof that no other command is at work.
pub fn recover(
    paths: &Paths,
    _lock: &Lock,
    level: Recovery,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, LifecycleError> {
    let pending = pending::load(paths)?;
    match Record::load(paths)? {
        None => unattached(paths, pending, level, progress),
        Some(record) => attached(paths, record, pending, level, progress),
    }
}

/// No state file: an attach that did not finish, or leftovers.
fn unattached(
    paths: &Paths,
    pending: Option<Record>,
    level: Recovery,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, LifecycleError> {
    let mut links: Vec<String> = link_pins(paths).iter().map(|p| file_name(p)).collect();
    if pending.is_none() && !pins::has_pins(paths) {
        return Ok(false);
    }
    let pending_interfaces = pending
        .as_ref()
        .map(|p| p.interfaces.as_slice())
        .unwrap_or_default();
    for iface in pending_interfaces {
        if let EgressHook::Tc(filter) = &iface.egress
            && egress::tc_linked(paths, &iface.name, filter)
        {
            links.push(format!("the tc filter on {}", iface.name));
        }
    }
    if !links.is_empty() && level == Recovery::FinishOnly {
        return Err(LifecycleError::Unfinished(format!(
            "an attach did not finish (the process ended half-way): {} in {} hold it in part. \
             Run `mirror-xdp attach` again (it rolls the unfinished one back first) or \
             `mirror-xdp detach` to remove it",
            links.join(", "),
            paths.bpffs.display()
        )));
    }
    // Our tc filters and qdiscs first: the programs' pins tell them from others'.
    remove_egress_hooks(paths, pending_interfaces, progress)?;
    remove_pins(paths);
    let restored = match &pending {
        Some(record) => restore_sysctls(record)?,
        None => false,
    };
    pending::discard(paths);
    let what = if pending.is_some() {
        "an attach did not finish (the process ended half-way): rolled it back"
    } else {
        "found pins that no attached enforcer uses (an attach or detach did not finish): removed them"
    };
    let sysctl = if restored {
        ", the syn_cookies sysctls restored"
    } else {
        ""
    };
    let unlinked = if links.is_empty() {
        String::new()
    } else {
        format!(" (unlinked {})", links.join(", "))
    };
    progress(&format!("note: {what}{unlinked}{sysctl}"));
    Ok(true)
}

/// A state file: a detach or reload that did not finish, or dead generations.
fn attached(
    paths: &Paths,
    mut record: Record,
    pending: Option<Record>,
    level: Recovery,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, LifecycleError> {
    let added = unfinished_add(paths, &record, pending.as_ref(), level, progress)?;
    let pending = if added { None } else { pending };
    let gone: Vec<String> = record
        .interfaces
        .iter()
        .filter(|i| !paths.xdp_link_pin(&i.name).exists())
        .map(|i| i.name.clone())
        .collect();
    if !gone.is_empty() {
        for iface in record.interfaces.iter().filter(|i| gone.contains(&i.name)) {
            egress::remove(paths, iface, progress)?;
        }
        record.interfaces.retain(|i| !gone.contains(&i.name));
        if record.interfaces.is_empty() {
            finish_detach(paths, &record)?;
            progress(&format!(
                "note: a detach from {} did not finish (the process ended half-way): finished it",
                gone.join(", ")
            ));
            return Ok(true);
        }
        record.save(paths)?;
        progress(&format!(
            "note: {} is no longer attached (its link is gone: a detach did not finish): \
             removed it from the state file",
            gone.join(", ")
        ));
    }
    let finished = finish_reload(paths, &mut record, pending, progress)?;
    let removed = remove_dead_generations(paths, &record, progress)?;
    Ok(added || !gone.is_empty() || finished || removed)
}

/// An add of interfaces that did not finish: rolled back, unless it linked XDP somewhere
/// and `level` only finishes.
fn unfinished_add(
    paths: &Paths,
    record: &Record,
    pending: Option<&Record>,
    level: Recovery,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, LifecycleError> {
    let new = added_interfaces(record, pending);
    let linked: Vec<&str> = new
        .iter()
        .filter(|i| paths.xdp_link_pin(&i.name).exists())
        .map(|i| i.name.as_str())
        .collect();
    if !linked.is_empty() && level == Recovery::FinishOnly {
        return Err(LifecycleError::Unfinished(format!(
            "adding {} to the enforcer did not finish (the process ended half-way). Run \
             `mirror-xdp attach` again (it rolls the unfinished add back first) or \
             `mirror-xdp detach`",
            linked.join(", ")
        )));
    }
    roll_back_add(paths, record, pending, progress)
}

/// The interfaces a pending record of the generation in force names and `record` does not:
/// an add under way.
fn added_interfaces<'a>(record: &Record, pending: Option<&'a Record>) -> Vec<&'a InterfaceRecord> {
    let Some(pending) = pending.filter(|p| p.policy.generation == record.policy.generation) else {
        return Vec::new();
    };
    pending
        .interfaces
        .iter()
        .filter(|p| !record.interfaces.iter().any(|r| r.name == p.name))
        .collect()
}

/// Unlinks the interfaces an add did not finish adding (XDP first, then the egress hook)
/// and throws its pending record away; returns whether there were any.
pub fn roll_back_add(
    paths: &Paths,
    record: &Record,
    pending: Option<&Record>,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, LifecycleError> {
    let new = added_interfaces(record, pending);
    if new.is_empty() {
        return Ok(false);
    }
    for iface in &new {
        pins::unpin_link(&paths.xdp_link_pin(&iface.name));
    }
    for iface in &new {
        egress::remove(paths, iface, progress)?;
    }
    pending::discard(paths);
    let names: Vec<&str> = new.iter().map(|i| i.name.as_str()).collect();
    progress(&format!(
        "note: adding {} to the enforcer did not finish: rolled it back (the interfaces \
         attached before were not touched)",
        names.join(", ")
    ));
    Ok(true)
}

/// Finishes a reload that swapped at least one link, or commits one that swapped them all.
fn finish_reload(
    paths: &Paths,
    record: &mut Record,
    pending: Option<Record>,
    progress: &mut dyn FnMut(&str),
) -> Result<bool, LifecycleError> {
    let target = record.policy.generation + 1;
    let running = running(paths, record);
    let staging = paths.staging_dir(target);
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
    progress(&format!(
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
    progress: &mut dyn FnMut(&str),
) -> Result<bool, LifecycleError> {
    let running = running(paths, record);
    let mut removed = Vec::new();
    for dir in generation_dirs(paths) {
        let in_force = dir == paths.generation_dir(record.policy.generation);
        let linked = Programs::read(&dir).is_some_and(|p| p.run_by_any(&running));
        if !in_force && !linked {
            remove_dir_pins(&dir);
            removed.push(file_name(&dir));
        }
    }
    // A spare of another generation or build, or one whose build did not finish.
    spare::tidy(paths, record.policy.generation + 1);
    let stale = pending::load(paths)?.is_some();
    pending::discard(paths);
    if !removed.is_empty() {
        progress(&format!(
            "note: removed {} of a reload that did not finish (no link runs it)",
            removed.join(", ")
        ));
    }
    Ok(!removed.is_empty() || stale)
}

/// For a command that reads the attached enforcer: recovers what a crashed command left
/// (its notes go to `progress`), then checks that this build reads its pins. The record, if
/// an enforcer is attached.
pub fn for_reading(
    paths: &Paths,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<Record>, LifecycleError> {
    locked_in_force(paths, progress).map(|(_lock, record)| record)
}

/// [`for_reading`] for a command that changes the generation in force: the command lock
/// comes back with the record, so no attach or reload can retire that generation until
/// the caller drops it.
pub fn locked_in_force(
    paths: &Paths,
    progress: &mut dyn FnMut(&str),
) -> Result<(Lock, Option<Record>), LifecycleError> {
    let lock = crate::state::dir::lock(&paths.state_dir)?;
    recover(paths, &lock, Recovery::FinishOnly, progress)?;
    let Some(record) = Record::load(paths)? else {
        return Ok((lock, None));
    };
    let scope = Scope::Reading(record.policy.generation);
    compat::check_pins(paths, scope, record.limiter_entries)?;
    Ok((lock, Some(record)))
}
