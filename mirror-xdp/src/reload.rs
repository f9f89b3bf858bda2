//! Atomic reload: the policy is compiled into a new generation of policy maps, a new copy
//! of the programs is loaded to read them (sharing the counters, flows, limiter state and
//! live entries), and BPF_LINK_UPDATE swaps it in behind each pinned link. A packet meets
//! the old program with the old maps or the new program with the new ones: never half a
//! policy. Until the swap, nothing that is in force changes; a policy that does not
//! validate changes nothing at all.

use std::path::Path;
use std::time::{Duration, Instant};

use aya::programs::{
    links::{FdLink, PinnedLink},
    tc::SchedClassifierLink,
    xdp::XdpLink,
};

use crate::{
    compile::{compile, possible_cpus},
    enforcer::{EnforcerError, Sizes, remove_generation},
    live,
    live_ports::{LivePorts, LivePortsError},
    maps::Maps,
    object,
    policy::{Policy, PolicyError},
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
/// overrides, see [`crate::lockout`]). Counts the outcome in the state record.
pub fn reload(
    paths: &Paths,
    policy_path: Option<&Path>,
    force: bool,
    say: &mut dyn FnMut(&str),
) -> Result<Reloaded, ReloadError> {
    // No live `source` change, and no other reload, between reading and swapping.
    let _lock = live::lock(paths)?;
    let mut record =
        Record::load(paths)?.ok_or_else(|| ReloadError::NotAttached(paths.state_dir.clone()))?;
    let started = Instant::now();
    let path = policy_path
        .map(Path::to_path_buf)
        .unwrap_or_else(|| record.policy.path.clone());
    // Live `port` rules survive the reload: compiled with the new policy's, or, if they no
    // longer fit it, the reload is refused like an invalid policy.
    // And a policy that would cut the admin's session is refused unless forced.
    let policy = match Policy::load(&path)
        .map_err(ReloadError::from)
        .and_then(|policy| {
            let live = LivePorts::load(paths)?;
            let policy = policy.with_live_ports(&live)?;
            crate::lockout::refuse_lockout(&policy, paths, force, say)?;
            Ok(policy)
        }) {
        Ok(policy) => policy,
        Err(e) => {
            record.reloads.error += 1;
            record.save(paths)?;
            return Err(e);
        }
    };
    match swap(paths, &record, &policy, say) {
        Ok(prog_id) => {
            let old = record.policy.generation;
            record.policy.generation += 1;
            record.policy.path = std::path::absolute(&policy.path).unwrap_or(policy.path.clone());
            record.mode = policy.settings.mode.name().to_string();
            record.ports = policy
                .rules
                .iter()
                .flat_map(|r| r.ports.iter().map(|p| PortRecord::new(r.proto, *p)))
                .collect();
            for iface in &mut record.interfaces {
                iface.prog_id = prog_id;
            }
            record.reloads.ok += 1;
            record.save(paths)?;
            live::save_policy_sources(paths, &policy.allow, &policy.deny)?;
            // The old program is unreferenced now; unpinning its maps frees them.
            remove_generation(paths, old);
            Ok(Reloaded {
                record,
                elapsed: started.elapsed(),
            })
        }
        Err(e) => {
            remove_generation(paths, record.policy.generation + 1);
            record.reloads.error += 1;
            record.save(paths)?;
            Err(e)
        }
    }
}

/// Fills the next generation and swaps every link to it; returns the new program's id.
fn swap(
    paths: &Paths,
    record: &Record,
    policy: &Policy,
    say: &mut dyn FnMut(&str),
) -> Result<u32, ReloadError> {
    if policy.limits.syn_cookies && record.tcp_syncookies_before.is_none() {
        say(
            "note: syn_cookies needs net.ipv4.tcp_syncookies=2, which only attach sets: detach and attach to turn cookies on",
        );
    }
    let next = record.policy.generation + 1;
    let image = compile(policy, possible_cpus()).map_err(EnforcerError::from)?;
    let dir = paths.generation_dir(next);
    crate::state::create_private_dir(&dir).map_err(|source| EnforcerError::Bpffs {
        path: dir.clone(),
        source,
    })?;
    let sizes = Sizes {
        limiter_entries: record.limiter_entries,
    };
    let mut ebpf = object::load(Some((paths, next)), object::MapSizes::new(sizes, &image))
        .map_err(EnforcerError::from)?;
    // Held until the programs are loaded: they refer to the maps by these descriptors.
    let mut maps = Maps::from_ebpf(&mut ebpf).map_err(EnforcerError::from)?;
    let mut config = maps.write_fresh(&image).map_err(EnforcerError::from)?;
    config.flags |= live::restore_locked(paths, &mut maps)?;
    maps.enable(&config).map_err(EnforcerError::from)?;

    let xdp = object::xdp_program(&mut ebpf).map_err(EnforcerError::from)?;
    let prog_id = xdp.info().map(|i| i.id()).unwrap_or(0);
    for iface in &record.interfaces {
        let link = open_link(&paths.xdp_link_pin(&iface.name), &iface.name)?;
        let link = XdpLink::try_from(link).map_err(|e| swap_error(&iface.name, e))?;
        let id = xdp
            .attach_to_link(link)
            .map_err(|e| swap_error(&iface.name, e))?;
        // The pin keeps the link; this process's handle can go.
        drop(xdp.take_link(id).map_err(|e| swap_error(&iface.name, e))?);
    }
    let egress = object::egress_program(&mut ebpf).map_err(EnforcerError::from)?;
    for iface in &record.interfaces {
        let link = open_link(&paths.egress_link_pin(&iface.name), &iface.name)?;
        let link = SchedClassifierLink::try_from(link).map_err(|e| swap_error(&iface.name, e))?;
        let id = egress
            .attach_to_link(link)
            .map_err(|e| swap_error(&iface.name, e))?;
        drop(
            egress
                .take_link(id)
                .map_err(|e| swap_error(&iface.name, e))?,
        );
    }
    drop(maps);
    Ok(prog_id)
}

/// The pinned link as a handle that BPF_LINK_UPDATE can use (the pin stays).
fn open_link(pin: &Path, iface: &str) -> Result<FdLink, ReloadError> {
    // `FdLink::from` keeps the pin (`unpin` would remove it).
    let pinned = PinnedLink::from_pin(pin).map_err(|e| swap_error(iface, e))?;
    Ok(FdLink::from(pinned))
}

fn swap_error(iface: &str, e: impl std::fmt::Display) -> ReloadError {
    ReloadError::Swap {
        iface: iface.to_string(),
        message: e.to_string(),
    }
}
