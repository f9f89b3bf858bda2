//! Attaching the enforcer: load, fill the maps, attach XDP and egress to each interface, and
//! pin everything so protection outlives this process; on failure, undo it all again.

use std::path::{Path, PathBuf};

use aya::programs::{SchedClassifier, Xdp, XdpMode, links::FdLink};

use super::{
    LifecycleError,
    egress::{self, EgressChoice},
    fault,
    object::{self, Sizes},
    pending,
    pins::create_pin_dir,
    recover::{Recovery, recover},
    spare,
    teardown::{remove_egress_hooks, remove_pins, restore_syncookies},
};
use crate::{
    compile::{compile, possible_cpus},
    kernel::maps::Maps,
    policy::Policy,
    state::{EgressHook, InterfaceRecord, Paths, PolicyRecord, PortRecord, Record},
};

/// How to attach XDP: `auto` tries native (driver) mode and falls back to skb (generic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    Auto,
    Native,
    Skb,
}

/// Attaches a policy to interfaces. Everything is pinned under `paths.bpffs`; on any failure
/// what was done so far is undone, so the host is left as it was. Crash-safe: each interface
/// is linked only once the maps are complete and enabled, so it enforces nothing or the whole
/// policy; the pending record lets the next command roll an unfinished attach back
/// ([`super::recover`]).
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
        return Err(LifecycleError::AlreadyAttached {
            interfaces: record.interface_names(),
        });
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
    let image = compile(policy, possible_cpus())?;
    let generation_dir = paths.generation_dir(1);
    create_pin_dir(&generation_dir)?;
    let mut rollback = Rollback {
        paths,
        armed: true,
        syncookies_before: None,
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

    let syncookies = Path::new(crate::kernel::syncookie_sysctl::SYSCTL);
    let mut record = Record {
        mode: policy.settings.mode.name().to_string(),
        interfaces: Vec::new(),
        policy: PolicyRecord {
            path: absolute(&policy.path),
            generation: 1,
        },
        ports: policy
            .rules
            .iter()
            .flat_map(|r| r.ports.iter().map(|p| PortRecord::new(r.proto, *p)))
            .collect(),
        tcp_syncookies_before: match policy.limits.syn_cookies {
            true => Some(crate::kernel::syncookie_sysctl::read(syncookies)?),
            false => None,
        },
        limiter_entries: sizes.limiter_entries,
        reloads: Default::default(),
    };
    // Before anything outside the pin folder changes: what to undo if this process dies.
    pending::write(paths, &record, policy)?;
    fault::point("attach:pending-written");
    if policy.limits.syn_cookies {
        // Before the first cookie goes out: the kernel must accept the ACKs that answer it.
        let before = crate::kernel::syncookie_sysctl::enable(syncookies)?;
        progress(&format!(
            "syn_cookies: net.ipv4.tcp_syncookies set to {} in this network namespace \
             (was {before}; detach restores it)",
            crate::kernel::syncookie_sysctl::REQUIRED
        ));
        rollback.syncookies_before = Some(before);
        fault::point("attach:sysctl-set");
    }

    // Egress first: an interface records the connections it opens before XDP judges the
    // replies. XDP last, with every map complete: from its link on the policy is in force.
    {
        let egress: &mut SchedClassifier =
            object::program_mut(&mut ebpf, mirror_xdp_common::program_name::EGRESS)?;
        for iface in ifaces {
            let hook = link_egress(egress, iface, egress_choice, paths, progress, &mut |hook| {
                // Before a tc filter or qdisc exists: what recovery has to remove.
                set_egress(&mut record, iface, prog_id, hook);
                pending::write_record(paths, &record)
            })?;
            set_egress(&mut record, iface, prog_id, hook);
            fault::point("attach:egress-linked");
        }
    }
    {
        let xdp: &mut Xdp = object::program_mut(&mut ebpf, mirror_xdp_common::program_name::XDP)?;
        for (iface, entry) in ifaces.iter().zip(record.interfaces.iter_mut()) {
            let (link, mode_name) = attach_xdp(xdp, iface, mode, progress)?;
            pin_link(link, &paths.xdp_link_pin(iface))?;
            entry.xdp_mode = mode_name.to_string();
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

/// The interface's entry with its egress hook (added, or updated when the hook's record
/// changes). Its XDP mode is filled in once XDP is linked.
fn set_egress(record: &mut Record, iface: &str, prog_id: u32, egress: EgressHook) {
    match record.interfaces.iter_mut().find(|i| i.name == iface) {
        Some(entry) => entry.egress = egress,
        None => record.interfaces.push(InterfaceRecord {
            name: iface.to_string(),
            xdp_mode: String::new(),
            prog_id,
            egress,
        }),
    }
}

/// Links the egress program to `iface` by the hook `choice` asks for (`auto`: TCX if the
/// kernel accepts it, else tc) and says which and why. Before a tc filter or qdisc is
/// added, `record` writes the pending record that names them.
fn link_egress(
    egress: &mut SchedClassifier,
    iface: &str,
    choice: EgressChoice,
    paths: &Paths,
    progress: &mut dyn FnMut(&str),
    record: &mut dyn FnMut(EgressHook) -> Result<(), LifecycleError>,
) -> Result<EgressHook, LifecycleError> {
    let why = match choice {
        EgressChoice::Tcx | EgressChoice::Auto => match egress::attach_tcx(egress, iface, paths) {
            Ok(()) => {
                progress(&format!("egress on {iface}: TCX link"));
                return Ok(EgressHook::Tcx);
            }
            Err(e) if choice == EgressChoice::Tcx => return Err(e),
            Err(LifecycleError::AttachEgress { source, .. }) => {
                format!("this kernel refused TCX: {}", super::chain(&source))
            }
            Err(e) => return Err(e),
        },
        EgressChoice::Tc => "--egress-hook tc".to_string(),
    };
    let mut filter = egress::plan_tc(iface)?;
    record(EgressHook::Tc(filter))?;
    fault::point("attach:tc-pending-written");
    if filter.clsact_created && !egress::add_clsact(iface)? {
        // Someone else added it meanwhile: it is not ours to remove.
        filter.clsact_created = false;
        record(EgressHook::Tc(filter))?;
    }
    egress::create_tc(egress, iface, &filter)?;
    progress(&format!(
        "egress on {iface}: tc clsact filter pref {} handle {:#x} ({why})",
        filter.priority, filter.handle
    ));
    Ok(EgressHook::Tc(filter))
}

fn attach_xdp(
    xdp: &mut Xdp,
    iface: &str,
    mode: AttachMode,
    progress: &mut dyn FnMut(&str),
) -> Result<(FdLink, &'static str), LifecycleError> {
    let try_mode = |xdp: &mut Xdp, xdp_mode, name: &'static str| {
        let fail = |source| LifecycleError::AttachXdp {
            iface: iface.to_string(),
            mode: name,
            source,
        };
        let id = xdp.attach(iface, xdp_mode).map_err(fail)?;
        let link = xdp.take_link(id).map_err(fail)?;
        FdLink::try_from(link)
            .map(|l| (l, name))
            .map_err(|e| LifecycleError::Pin {
                path: PathBuf::from(iface),
                message: format!("the XDP attachment is not a bpf_link ({e})"),
            })
    };
    match mode {
        AttachMode::Native => try_mode(xdp, XdpMode::Driver, "native"),
        AttachMode::Skb => try_mode(xdp, XdpMode::Skb, "skb"),
        AttachMode::Auto => match try_mode(xdp, XdpMode::Driver, "native") {
            Ok(found) => Ok(found),
            Err(e) => {
                progress(&format!(
                    "{e}\nfalling back to skb (generic) mode on {iface}"
                ));
                try_mode(xdp, XdpMode::Skb, "skb")
            }
        },
    }
}

fn pin_link(link: FdLink, path: &Path) -> Result<(), LifecycleError> {
    link.pin(path).map(drop).map_err(|e| LifecycleError::Pin {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Undoes a half-done attach when dropped armed.
struct Rollback<'a> {
    paths: &'a Paths,
    armed: bool,
    /// `net.ipv4.tcp_syncookies` before this attach changed it.
    syncookies_before: Option<String>,
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
            if let Some(before) = &self.syncookies_before {
                let _ = restore_syncookies(before);
            }
        }
    }
}

/// Asks the kernel of this network namespace (/sys may show another one's interfaces).
fn interface_exists(iface: &str) -> bool {
    nix::net::if_::if_nametoindex(iface).is_ok()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
