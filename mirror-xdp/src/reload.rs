//! Atomic reload: the policy is compiled into a new generation of policy maps, a new copy
//! of the programs is loaded to read them (sharing the counters, flows, limiter state and
//! live entries), and BPF_LINK_UPDATE swaps it in behind each pinned link. A packet meets
//! the old program with the old maps or the new program with the new ones: never half a
//! policy. Until the swap, nothing that is in force changes; a policy that does not
//! validate changes nothing at all.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::{
    compile::{MapImage, compile, possible_cpus},
    enforcer::{EnforcerError, Sizes, remove_generation},
    fault, layout, live,
    live_ports::{LivePorts, LivePortsError},
    maps::Maps,
    object, pending,
    policy::{Policy, PolicyError},
    recover, spare,
    state::{Paths, PortRecord, Record},
};

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("nothing is attached (no state in {0}); run `mirror-xdp attach` first")]
    NotAttached(std::path::PathBuf),
    /// The policy does not validate: nothing changed.
    #[error("{0}")]
    Invalid(#[from] PolicyError),
    /// The policy would cut the admin's session: nothing changed.
    #[error(transparent)]
    Lockout(#[from] crate::lockout::LockoutRefused),
    #[error("swapping the program on {iface}: {message}")]
    Swap { iface: String, message: String },
    #[error(transparent)]
    Enforcer(#[from] EnforcerError),
    #[error(transparent)]
    LivePorts(#[from] LivePortsError),
}

impl ReloadError {
    /// Invalid input (exit 2) rather than an operational failure (exit 1) or a refused
    /// lock-out (exit 3, [`ReloadError::Lockout`]).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            ReloadError::Invalid(_) => true,
            ReloadError::LivePorts(e) => e.is_invalid_input(),
            // The policy does not fit this machine (a limit below the CPU count).
            ReloadError::Enforcer(EnforcerError::Compile(_)) => true,
            _ => false,
        }
    }
}

impl From<live::LiveError> for ReloadError {
    fn from(e: live::LiveError) -> Self {
        ReloadError::Enforcer(EnforcerError::Live(e))
    }
}

impl From<crate::state::StateError> for ReloadError {
    fn from(e: crate::state::StateError) -> Self {
        ReloadError::Enforcer(EnforcerError::State(e))
    }
}

/// A reload that went through.
#[derive(Clone, Debug)]
pub struct Reloaded {
    pub record: Record,
    /// From reading the policy to the last link swapped.
    pub elapsed: Duration,
}

/// Re-reads the policy of the attached enforcer (or `policy_path`, which then becomes its
/// policy) and swaps it in, unless it would lock out the admin's session (`force`
/// overrides, see [`crate::lockout`]). Counts the outcome in the state record. What an
/// earlier reload left half-done is finished or thrown away first ([`crate::recover`]), and
/// pins this build cannot read are refused ([`crate::layout`]).
pub fn reload(
    paths: &Paths,
    policy_path: Option<&Path>,
    force: bool,
    say: &mut dyn FnMut(&str),
) -> Result<Reloaded, ReloadError> {
    // No live `source` change, and no other reload, between reading and swapping.
    let lock = crate::statedir::lock(&paths.state_dir).map_err(EnforcerError::from)?;
    recover::recover(paths, &lock, recover::Level::Complete, say)?;
    let mut record =
        Record::load(paths)?.ok_or_else(|| ReloadError::NotAttached(paths.state_dir.clone()))?;
    // The shared maps are reused: they must be in this build's layout. A generation of
    // another version is fine: it is replaced (migrated) here.
    layout::check(paths, layout::Scope::Shared, record.limiter_entries)
        .map_err(EnforcerError::from)?;
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
            let sessions = crate::lockout::collect(&mut |note| notes.push(note.to_string()));
            (sessions, notes)
        });
        let loaded = Policy::load(&path)
            .map_err(ReloadError::from)
            .and_then(|policy| {
                let live = LivePorts::load(paths)?;
                Ok(policy.with_live_ports(&live)?)
            });
        let (sessions, notes) = sessions
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (loaded, sessions, notes)
    });
    for note in &notes {
        say(note);
    }
    let policy = match loaded.and_then(|policy| {
        crate::lockout::refuse_lockout_of(&policy, paths, force, &sessions, say)?;
        Ok(policy)
    }) {
        Ok(policy) => policy,
        Err(e) => {
            record.reloads.error += 1;
            record.save(paths)?;
            return Err(e);
        }
    };
    let old = record.policy.generation;
    match swap(paths, &record, &policy, say) {
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
                say(&format!(
                    "note: no spare generation for the next reload: {e}"
                ));
            }
            Ok(Reloaded {
                record: next,
                elapsed,
            })
        }
        Err(e) => {
            // What the failed swap left is thrown away (or, should a link run it after all,
            // finished): quietly, the error says what happened.
            let _ = recover::recover(paths, &lock, recover::Level::Complete, &mut |_| {});
            if let Some(mut now) = Record::load(paths)? {
                now.reloads.error += 1;
                now.save(paths)?;
            }
            Err(e)
        }
    }
}

/// Builds the next generation in its staging folder (from the spare, if one fits), swaps
/// every link to it and commits the new record; returns it, and the compiled policy. On an
/// error no link runs the new generation.
fn swap(
    paths: &Paths,
    record: &Record,
    policy: &Policy,
    say: &mut dyn FnMut(&str),
) -> Result<(Record, MapImage), ReloadError> {
    if policy.limits.syn_cookies && record.tcp_syncookies_before.is_none() {
        say(
            "note: syn_cookies needs net.ipv4.tcp_syncookies=2, which only attach sets: detach and attach to turn cookies on",
        );
    }
    let next = record.policy.generation + 1;
    let image = compile(policy, possible_cpus()).map_err(EnforcerError::from)?;
    let staging = recover::staging_dir(paths, next);
    let sizes = Sizes {
        limiter_entries: record.limiter_entries,
    };
    let need = object::MapSizes::new(sizes, &image);
    let mut updated = record.clone();
    updated.policy.generation = next;
    updated.policy.path = std::path::absolute(&policy.path).unwrap_or(policy.path.clone());
    updated.mode = policy.settings.mode.name().to_string();
    updated.ports = policy
        .rules
        .iter()
        .flat_map(|r| r.ports.iter().map(|p| PortRecord::new(r.proto, *p)))
        .collect();
    updated.reloads.ok += 1;
    let set_program = |updated: &mut Record, prog_id: u32| {
        for iface in &mut updated.interfaces {
            iface.prog_id = prog_id;
        }
    };
    // A spare generation has its programs verified already: the policy is in force as
    // soon as its maps are filled. Without one, the programs are loaded here.
    if spare::take(paths, next, &need, &staging) {
        fault::point("reload:maps-pinned");
        let prog_id = object::pinned_program_id(&staging).map_err(EnforcerError::from)?;
        set_program(&mut updated, prog_id);
        // The pending record (what the next command commits if this process dies once the
        // first link is swapped) does not depend on the maps: written while they fill.
        std::thread::scope(|scope| {
            let pending =
                scope.spawn(|| pending::write(paths, &updated, &policy.allow, &policy.deny));
            let filled = Maps::open_in(paths, &staging)
                .map_err(|e| ReloadError::from(EnforcerError::from(e)))
                .and_then(|mut maps| fill(paths, &mut maps, &image));
            let written = pending
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            filled.and(written.map_err(ReloadError::from))
        })?;
        fault::point("reload:maps-filled");
        fault::point("reload:programs-pinned");
        fault::point("reload:pending-written");
    } else {
        crate::enforcer::create_pin_dir(&staging)?;
        let mut ebpf = object::load(Some((paths, &staging)), need).map_err(EnforcerError::from)?;
        fault::point("reload:maps-pinned");
        // Held until the programs are loaded: they refer to the maps by these descriptors.
        let mut maps = Maps::from_ebpf(&mut ebpf).map_err(EnforcerError::from)?;
        fill(paths, &mut maps, &image)?;
        fault::point("reload:maps-filled");
        let prog_id =
            object::load_and_pin_programs(&mut ebpf, &staging).map_err(EnforcerError::from)?;
        fault::point("reload:programs-pinned");
        set_program(&mut updated, prog_id);
        pending::write(paths, &updated, &policy.allow, &policy.deny)?;
        fault::point("reload:pending-written");
    }

    if let Err(e) = recover::swap_links(paths, record, &staging) {
        // Back to the old programs where they are pinned (a generation of an older build
        // pinned none): no link may stay on a generation that is thrown away.
        let old = paths.generation_dir(record.policy.generation);
        if let Err(back) = recover::swap_links(paths, record, &old) {
            return Err(ReloadError::Swap {
                iface: String::new(),
                message: format!(
                    "{e}; and going back to generation {} failed too ({back}): run `mirror-xdp reload` again",
                    record.policy.generation
                ),
            });
        }
        return Err(e.into());
    }
    recover::promote_staging(paths, next)?;
    fault::point("reload:generation-renamed");
    pending::commit(paths)?;
    Ok((updated, image))
}

/// Writes the compiled policy and the live entries into a generation's empty maps and
/// enables them.
fn fill(paths: &Paths, maps: &mut Maps, image: &MapImage) -> Result<(), ReloadError> {
    let mut config = maps.write_fresh(image).map_err(EnforcerError::from)?;
    config.flags |= live::restore_locked(paths, maps)?;
    maps.enable(&config).map_err(EnforcerError::from)?;
    Ok(())
}
