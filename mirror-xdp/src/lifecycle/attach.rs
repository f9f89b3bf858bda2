//! Attaching the enforcer: load, fill the maps, attach XDP and egress to each interface, and
//! pin everything so protection outlives this process; on failure, undo it all again.

use std::path::{Path, PathBuf};

use aya::programs::{SchedClassifier, Xdp};

use super::{
    LifecycleError, add,
    egress::EgressChoice,
    fault,
    link::{AttachMode, interface_exists, link_egress_recorded, link_xdp},
    object::{self, Sizes},
    pending,
    pins::create_pin_dir,
    recover::{Recovery, recover},
    spare,
    teardown::{remove_egress_hooks, remove_pins, restore_sysctls},
};
use crate::{
    compile::{compile, possible_cpus},
    kernel::{maps::Maps, syncookie_sysctl},
    policy::Policy,
    state::{Paths, PolicyRecord, Record, rule_records},
};

/// Attaches a policy to interfaces. Everything is pinned under `paths.bpffs`; on any failure
/// what was done so far is undone, so the host is left as it was. Crash-safe: each interface
/// is linked only once the maps are complete and enabled, so it enforces nothing or the whole
/// policy; the pending record lets the next command roll an unfinished attach back
/// ([`super::recover`]). With an enforcer attached already, the interfaces are added to it
/// ([`add`]): the policy must then be the one in force.
pub fn attach(
    paths: &Paths,
    ifaces: &[String],
    policy: &Policy,
    mode: AttachMode,
    egress_choice: EgressChoice,
    sizes: Sizes,
    progress: &mut dyn FnMut(&str),
) -> Result<Record, LifecycleError> {
    // Held to the end: a `port` or `source` command waits until the maps hold what it
    // would change, and recovery sees no attach at work.
    let live_lock = crate::state::dir::lock(&paths.state_dir)?;
    recover(paths, &live_lock, Recovery::RollBackAttach, progress)?;
    if let Some(record) = Record::load(paths)? {
        return add::add_interfaces(paths, record, ifaces, policy, mode, egress_choice, progress);
    }
    for iface in ifaces {
        if !interface_exists(iface) {
            return Err(LifecycleError::NoSuchInterface(iface.clone()));
        }
    }
    // Live `port` rules outlive attachments: compiled with the policy's.
    let live_ports = crate::live::ports::LivePorts::load(paths)?;
    let merged;
    let policy = if live_ports.rules.is_empty() {
        policy
    } else {
        merged = policy.clone().with_live_ports(&live_ports)?;
        &merged
    };
    let mut image = compile(policy, possible_cpus())?;
    // Attach turns the timestamp offsets off (`tcp_timestamps` 1 to 2) before the first
    // cookie goes out: the cookies may carry what that value allows.
    let proc_sys = Path::new(syncookie_sysctl::PROC_SYS);
    let timestamps_before = match policy.limits.syn_cookies {
        true => Some(syncookie_sysctl::timestamps(proc_sys)?),
        false => None,
    };
    if let Some(now) = &timestamps_before {
        let will_be = if now == "1" { "2" } else { now };
        (image.config.cookie_options, image.config.cookie_wscale) =
            syncookie_sysctl::cookie_options(proc_sys, will_be)?;
    }
    let generation_dir = paths.generation_dir(1);
    create_pin_dir(&generation_dir)?;
    let mut rollback = Rollback {
        paths,
        armed: true,
        sysctls_before: None,
    };

    let mut ebpf = object::load(
        Some((paths, &generation_dir)),
        object::MapSizes::new(sizes, &image),
    )?;
    fault::point("attach:maps-pinned");
    // Held until the programs are loaded: they refer to the maps by these descriptors.
    let mut maps = Maps::from_ebpf(&mut ebpf)?;
    let mut config = maps.write_fresh(&image)?;
    // Live `source` entries outlive attachments: in force before the program judges a packet.
    config.flags |= crate::live::sources::restore_locked(paths, &mut maps)?;
    maps.enable(&config)?;
    fault::point("attach:maps-filled");
    let prog_id = object::load_and_pin_xdp(&mut ebpf, &generation_dir)?;
    fault::point("attach:xdp-program-pinned");
    object::load_and_pin_egress(&mut ebpf, &generation_dir)?;
    drop(maps);
    fault::point("attach:egress-program-pinned");

    let syncookies = Path::new(syncookie_sysctl::SYSCTL);
    let (ports, protocols) = rule_records(policy);
    let mut record = Record {
        mode: policy.settings.mode.name().to_string(),
        interfaces: Vec::new(),
        policy: PolicyRecord {
            path: absolute(&policy.path),
            generation: 1,
        },
        ports,
        protocols,
        tcp_syncookies_before: match policy.limits.syn_cookies {
            true => Some(syncookie_sysctl::read(syncookies)?),
            false => None,
        },
        // What attach will change: offsets on (1) go off.
        tcp_timestamps_before: timestamps_before.filter(|v| v == "1"),
        limiter_entries: sizes.limiter_entries,
        reloads: Default::default(),
        ebpf_object: Some(crate::build_info::EBPF_OBJECT_SHA256.to_owned()),
    };
    // Before anything outside the pin folder changes: what to undo if this process dies.
    pending::write(paths, &record, policy)?;
    fault::point("attach:pending-written");
    if policy.limits.syn_cookies {
        // Before the first cookie goes out: the kernel must accept the ACKs that answer it.
        // From here the rollback puts back what the record says was there.
        rollback.sysctls_before = Some(record.clone());
        let before = syncookie_sysctl::enable(syncookies)?;
        progress(&format!(
            "syn_cookies: net.ipv4.tcp_syncookies set to {} in this network namespace \
             (was {before}; detach restores it)",
            syncookie_sysctl::REQUIRED
        ));
        if syncookie_sysctl::timestamps_without_offsets(proc_sys)?.is_some() {
            progress(
                "syn_cookies: net.ipv4.tcp_timestamps set to 2 (timestamps without \
                 per-connection offsets, so that cookies carry window scaling and SACK; was 1; \
                 detach restores it)",
            );
        }
        fault::point("attach:sysctl-set");
    }

    // Egress first: an interface records the connections it opens before XDP judges the
    // replies. XDP last, with every map complete: from its link on the policy is in force.
    {
        let egress: &mut SchedClassifier =
            object::program_mut(&mut ebpf, mirror_xdp_common::program_name::EGRESS)?;
        for iface in ifaces {
            link_egress_recorded(
                egress,
                iface,
                egress_choice,
                paths,
                &mut record,
                prog_id,
                progress,
            )?;
            fault::point("attach:egress-linked");
        }
    }
    {
        let xdp: &mut Xdp = object::program_mut(&mut ebpf, mirror_xdp_common::program_name::XDP)?;
        for iface in ifaces {
            link_xdp(xdp, iface, mode, paths, &mut record, progress)?;
            fault::point("attach:xdp-linked");
        }
    }

    pending::write_record(paths, &record)?;
    pending::commit(paths)?;
    fault::point("attach:state-written");
    rollback.armed = false;
    // In force: now the first reload's spare (see [`spare`]; not needed to succeed).
    if let Err(e) = spare::prepare(paths, 2, sizes, &image) {
        progress(&format!(
            "note: no spare generation for the next reload: {e}"
        ));
    }
    Ok(record)
}

/// Undoes a half-done attach when dropped armed.
struct Rollback<'a> {
    paths: &'a Paths,
    armed: bool,
    /// Once this attach changes sysctls: the record that says what they were.
    sysctls_before: Option<Record>,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if self.armed {
            // The pending record names the tc filters and qdiscs this attach added.
            if let Ok(Some(pending)) = pending::load(self.paths) {
                let _ = remove_egress_hooks(self.paths, &pending.interfaces, &mut |_| {});
            }
            remove_pins(self.paths);
            pending::discard(self.paths);
            if let Some(record) = &self.sysctls_before {
                let _ = restore_sysctls(record);
            }
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
