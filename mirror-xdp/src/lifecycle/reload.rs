//! Atomic reload: the policy is compiled into a new generation of policy maps, a new copy
//! of the programs is loaded to read them (sharing the counters, flows, limiter state and
//! live entries), and BPF_LINK_UPDATE swaps it in behind each pinned link. A packet meets
//! the old program with the old maps or the new program with the new ones: never half a
//! policy. Until the swap, nothing that is in force changes; a policy that does not
//! validate changes nothing at all.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{
    LifecycleError,
    compat::{self, Scope},
    fault,
    object::{self, Sizes},
    pending,
    pins::create_pin_dir,
    recover::{Recovery, recover},
    spare,
    swap::{promote_staging, swap_links},
    teardown::remove_generation,
};
use crate::{
    compile::{MapImage, compile, possible_cpus},
    kernel::{maps::Maps, syncookie_sysctl},
    live::ports::LivePorts,
    live::sources as live,
    policy::diff::{Change, diff},
    policy::{Policy, PolicyFiles},
    state::{Paths, Record, in_force, rule_records},
};

/// A reload that went through.
#[derive(Clone, Debug)]
pub struct Reloaded {
    pub record: Record,
    /// From reading the policy to the last link swapped.
    pub elapsed: Duration,
    /// What changed against the policy that was in force; `None` when that one is unknown
    /// (an older build attached it and kept no copy).
    pub changes: Option<Vec<Change>>,
    /// The new policy's `[crowdsec]`, for `run`'s bouncer.
    pub crowdsec: Option<crate::policy::crowdsec::Crowdsec>,
}

/// Re-reads the policy of the attached enforcer (or `policy_path`, which then becomes its
/// policy) and swaps it in, unless it would lock out the admin's session (`force`
/// overrides, see [`crate::lifecycle::lockout`]). Counts the outcome in the state record. What an
/// earlier reload left half-done is finished or thrown away first ([`super::recover`]), and
/// pins this build cannot read are refused ([`super::compat`]).
pub fn reload(
    paths: &Paths,
    policy_path: Option<&Path>,
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Reloaded, LifecycleError> {
    // No live `source` change, and no other reload, between reading and swapping.
    let lock = crate::state::dir::lock(&paths.state_dir)?;
    recover(paths, &lock, Recovery::FinishOnly, progress)?;
    let mut record = Record::load(paths)?
        .ok_or_else(|| LifecycleError::NothingToReload(paths.state_dir.clone()))?;
    // The shared maps are reused: they must be in this build's layout. A generation of
    // another version is fine: it is replaced (migrated) here.
    compat::check_pins(paths, Scope::Shared, record.limiter_entries)?;
    let started = Instant::now();
    let path = policy_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| record.policy.path.clone());
    // Live `port` rules survive the reload: compiled with the new policy's, or, if they no
    // longer fit it, the reload is refused like an invalid policy.
    // And a policy that would cut the admin's session is refused unless forced.
    // The host's sessions are read (for the lock-out check) while the policy is parsed.
    let (loaded, sessions, notes) = std::thread::scope(|scope| {
        let sessions = scope.spawn(|| {
            let mut notes = Vec::new();
            let sessions =
                crate::lifecycle::lockout::collect(&mut |note| notes.push(note.to_string()));
            (sessions, notes)
        });
        let loaded = Policy::load(&path)
            .map_err(LifecycleError::from)
            .and_then(|policy| {
                let live = LivePorts::load(paths)?;
                Ok((policy.with_live_ports(&live)?, live))
            });
        let (sessions, notes) = sessions
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (loaded, sessions, notes)
    });
    for note in &notes {
        progress(note);
    }
    let (policy, live) = match loaded.and_then(|(policy, live)| {
        crate::lifecycle::lockout::refuse_lockout_of(&policy, paths, force, &sessions, progress)?;
        Ok((policy, live))
    }) {
        Ok(loaded) => loaded,
        Err(e) => {
            record.reloads.error += 1;
            record.save(paths)?;
            return Err(e);
        }
    };
    let old = record.policy.generation;
    // Only read here: it is parsed and compared after the swap, off the reload's path.
    let kept = in_force::files(paths, &record).ok();
    match build_and_swap(paths, &record, &policy, progress) {
        Ok((next, image)) => {
            fault::point("reload:state-written");
            // The old programs are unreferenced now; unpinning them and their maps frees them.
            remove_generation(paths, old);
            let elapsed = started.elapsed();
            // The new policy is in force: now the next reload's spare (not needed to succeed).
            let sizes = Sizes {
                limiter_entries: next.limiter_entries,
            };
            if let Err(e) = spare::prepare(paths, next.policy.generation + 1, sizes, &image) {
                progress(&format!(
                    "note: no spare generation for the next reload: {e}"
                ));
            }
            Ok(Reloaded {
                record: next,
                elapsed,
                changes: changes(kept.as_ref(), &live, &policy),
                crowdsec: policy.crowdsec.clone(),
            })
        }
        Err(e) => {
            // What the failed swap left is thrown away (or, should a link run it after all,
            // finished): quietly, the error says what happened.
            let _ = recover(paths, &lock, Recovery::FinishOnly, &mut |_| {});
            if let Some(mut now) = Record::load(paths)? {
                now.reloads.error += 1;
                now.save(paths)?;
            }
            Err(e)
        }
    }
}

/// What the reload changed: the kept policy that was in force against the new one, both
/// with the live `port` rules merged in (so those cancel out); `None` when the old one is
/// unknown.
fn changes(kept: Option<&PolicyFiles>, live: &LivePorts, new: &Policy) -> Option<Vec<Change>> {
    let old = Policy::from_files(kept?).ok()?.with_live_ports(live).ok()?;
    Some(diff(&old, new))
}

/// Builds the next generation in its staging folder (from the spare, if one fits), swaps
/// every link to it and commits the new record; returns it, and the compiled policy. On an
/// error no link runs the new generation.
fn build_and_swap(
    paths: &Paths,
    record: &Record,
    policy: &Policy,
    progress: &mut dyn FnMut(&str),
) -> Result<(Record, MapImage), LifecycleError> {
    if policy.limits.syn_cookies && record.tcp_syncookies_before.is_none() {
        progress(
            "note: syn_cookies needs net.ipv4.tcp_syncookies=2, which only attach sets: detach and attach to turn cookies on",
        );
    }
    let next = record.policy.generation + 1;
    let mut image = compile(policy, possible_cpus())?;
    if policy.limits.syn_cookies {
        // What the sysctls allow now (attach set them; an admin may have changed them since).
        let proc_sys = Path::new(syncookie_sysctl::PROC_SYS);
        let timestamps = syncookie_sysctl::timestamps(proc_sys)?;
        (image.config.cookie_options, image.config.cookie_wscale) =
            syncookie_sysctl::cookie_options(proc_sys, &timestamps)?;
    }
    let staging = paths.staging_dir(next);
    let sizes = Sizes {
        limiter_entries: record.limiter_entries,
    };
    let need = object::MapSizes::new(sizes, &image);
    let mut updated = record.clone();
    updated.policy.generation = next;
    updated.policy.path = std::path::absolute(&policy.path).unwrap_or(policy.path.clone());
    updated.mode = policy.settings.mode.name().to_string();
    (updated.ports, updated.protocols) = rule_records(policy);
    updated.reloads.ok += 1;
    // The spare is this build's too (its folder is named by the build).
    updated.ebpf_object = Some(crate::build_info::EBPF_OBJECT_SHA256.to_owned());
    // A spare generation has its programs verified already: the policy is in force as
    // soon as its maps are filled. Without one, the programs are loaded here.
    let prog_id = if spare::take(paths, next, &need, &staging) {
        from_spare(paths, &staging, &mut updated, policy, &image)?
    } else {
        fresh(paths, &staging, need, &mut updated, policy, &image)?
    };
    debug_assert!(updated.interfaces.iter().all(|i| i.prog_id == prog_id));

    if let Err(failed) = swap_links(paths, record, &staging) {
        // Back to the old programs where they are pinned (a generation of an older build
        // pinned none): no link may stay on a generation that is thrown away.
        let generation = record.policy.generation;
        if let Err(back) = swap_links(paths, record, &paths.generation_dir(generation)) {
            return Err(LifecycleError::SwapBack {
                failed: Box::new(failed),
                generation,
                back: Box::new(back),
            });
        }
        return Err(failed);
    }
    promote_staging(paths, next)?;
    fault::point("reload:generation-renamed");
    pending::commit(paths)?;
    Ok((updated, image))
}

/// The spare taken into `staging`: fills its maps while the pending record (what the next
/// command commits if this process dies once the first link is swapped; it does not depend
/// on the maps) is written. Returns the XDP program's id.
fn from_spare(
    paths: &Paths,
    staging: &Path,
    updated: &mut Record,
    policy: &Policy,
    image: &MapImage,
) -> Result<u32, LifecycleError> {
    fault::point("reload:spare-taken");
    let prog_id = object::pinned_program_id(staging)?;
    set_program(updated, prog_id);
    let updated = &*updated;
    std::thread::scope(|scope| {
        let pending = scope.spawn(|| {
            pending::write(paths, updated, policy)?;
            fault::point("reload:spare-pending-written");
            Ok::<(), LifecycleError>(())
        });
        let filled = Maps::open_in(paths, staging)
            .map_err(LifecycleError::from)
            .and_then(|mut maps| fill(paths, &mut maps, image));
        if filled.is_ok() {
            fault::point("reload:spare-maps-filled");
        }
        let written = pending
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        filled.and(written)
    })?;
    Ok(prog_id)
}

/// No spare: loads the object with its maps pinned in `staging`, fills them, loads and pins
/// the programs, and writes the pending record. Returns the XDP program's id.
fn fresh(
    paths: &Paths,
    staging: &Path,
    need: object::MapSizes,
    updated: &mut Record,
    policy: &Policy,
    image: &MapImage,
) -> Result<u32, LifecycleError> {
    create_pin_dir(staging)?;
    let mut ebpf = object::load(Some((paths, staging)), need)?;
    fault::point("reload:fresh-maps-pinned");
    // Held until the programs are loaded: they refer to the maps by these descriptors.
    let mut maps = Maps::from_ebpf(&mut ebpf)?;
    fill(paths, &mut maps, image)?;
    fault::point("reload:fresh-maps-filled");
    let prog_id = object::load_and_pin_xdp(&mut ebpf, staging)?;
    fault::point("reload:fresh-xdp-program-pinned");
    object::load_and_pin_egress(&mut ebpf, staging)?;
    fault::point("reload:fresh-egress-program-pinned");
    set_program(updated, prog_id);
    pending::write(paths, updated, policy)?;
    fault::point("reload:fresh-pending-written");
    Ok(prog_id)
}

/// Records the program every interface is to run.
fn set_program(updated: &mut Record, prog_id: u32) {
    for iface in &mut updated.interfaces {
        iface.prog_id = prog_id;
    }
}

/// Writes the compiled policy and the live entries into a generation's empty maps and
/// enables them.
fn fill(paths: &Paths, maps: &mut Maps, image: &MapImage) -> Result<(), LifecycleError> {
    let mut config = maps.write_fresh(image)?;
    config.flags |= live::restore_locked(paths, maps)?;
    maps.enable(&config)?;
    Ok(())
}
