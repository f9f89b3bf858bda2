//! Linking the programs of a generation to an interface (egress hook first, then XDP) and
//! recording what was linked: shared by `attach` and by adding an interface to a running
//! enforcer ([`super::add`]).

use std::path::{Path, PathBuf};

use aya::programs::{SchedClassifier, Xdp, XdpMode, links::FdLink};

use super::{
    LifecycleError,
    egress::{self, EgressChoice},
    fault, pending,
};
use crate::kernel::nic::{Nic, advice};
use crate::state::{EgressHook, InterfaceRecord, Paths, Record};

/// How to attach XDP: `auto` tries native (driver) mode and falls back to skb (generic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    Auto,
    Native,
    Skb,
}

/// The interface's entry with its egress hook (added, or updated when the hook's record
/// changes). Its XDP mode is filled in once XDP is linked.
pub fn set_egress(record: &mut Record, iface: &str, prog_id: u32, egress: EgressHook) {
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

/// Links the egress program to `iface` and records the hook in `record`'s entry for it; the
/// pending record is written before a tc filter or qdisc exists (what recovery has to
/// remove).
pub fn link_egress_recorded(
    egress: &mut SchedClassifier,
    iface: &str,
    choice: EgressChoice,
    paths: &Paths,
    record: &mut Record,
    prog_id: u32,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LifecycleError> {
    let hook = link_egress(egress, iface, choice, paths, progress, &mut |hook| {
        set_egress(record, iface, prog_id, hook);
        pending::write_record(paths, record)
    })?;
    set_egress(record, iface, prog_id, hook);
    Ok(())
}

/// Links XDP to `iface` (in the mode `mode` allows), pins the link and records the mode in
/// `record`'s entry for it: from here on the interface enforces the policy.
pub fn link_xdp(
    xdp: &mut Xdp,
    iface: &str,
    mode: AttachMode,
    paths: &Paths,
    record: &mut Record,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LifecycleError> {
    // Read before XDP is linked: virtio-net's queue count changes once it is.
    let (nic, notes) = Nic::read(iface);
    let (link, mode_name) = attach_xdp(xdp, iface, mode, &nic, progress)?;
    pin_link(link, &paths.xdp_link_pin(iface))?;
    warn_about_nic(iface, mode_name, &nic, &notes, progress);
    if let Some(entry) = record.interfaces.iter_mut().find(|i| i.name == iface) {
        entry.xdp_mode = mode_name.to_string();
    }
    Ok(())
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

/// What `attach` warns about on stderr once XDP is linked: offloads that hide headers from
/// the program, and too few queues for lock-free XDP_TX ([`advice`]).
fn warn_about_nic(
    iface: &str,
    mode_name: &str,
    nic: &Nic,
    notes: &[String],
    progress: &mut dyn FnMut(&str),
) {
    let mut warnings = advice::offloads(iface, &nic.offloads, mode_name);
    if mode_name == "native" {
        let cpus = crate::compile::possible_cpus();
        warnings.extend(advice::xdp_tx_queues(
            iface,
            nic.driver.as_deref(),
            nic.channels,
            cpus,
        ));
    }
    for note in notes {
        progress(&format!("warning: {note} (the NIC checks are left out)"));
    }
    for warning in warnings {
        progress(&format!("warning: {warning}"));
    }
}

fn attach_xdp(
    xdp: &mut Xdp,
    iface: &str,
    mode: AttachMode,
    nic: &Nic,
    progress: &mut dyn FnMut(&str),
) -> Result<(FdLink, &'static str), LifecycleError> {
    let try_mode = |xdp: &mut Xdp, xdp_mode, name: &'static str| {
        let fail = |source| LifecycleError::AttachXdp {
            iface: iface.to_string(),
            mode: name,
            source: Box::new(source),
            why: None,
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
        AttachMode::Native => try_mode(xdp, XdpMode::Driver, "native").map_err(|e| match e {
            LifecycleError::AttachXdp { source, .. } => LifecycleError::AttachXdp {
                why: Some(why_not_native(iface, nic, &source)),
                iface: iface.to_string(),
                mode: "native",
                source,
            },
            e => e,
        }),
        AttachMode::Skb => try_mode(xdp, XdpMode::Skb, "skb"),
        AttachMode::Auto => match try_mode(xdp, XdpMode::Driver, "native") {
            Ok(found) => Ok(found),
            Err(LifecycleError::AttachXdp { source, .. }) => {
                let why = why_not_native(iface, nic, &source);
                progress(&format!(
                    "warning: {}",
                    advice::skb_fallback(iface, &super::chain(&source), &why)
                ));
                try_mode(xdp, XdpMode::Skb, "skb")
            }
            Err(e) => Err(e),
        },
    }
}

fn why_not_native(iface: &str, nic: &Nic, refusal: &aya::programs::ProgramError) -> String {
    advice::why_not_native(
        iface,
        nic.driver.as_deref(),
        nic.vlan_parent.as_deref(),
        errno(refusal),
    )
}

/// The errno somewhere in an error's cause chain (the failed bpf or netlink call's).
fn errno(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cause = Some(err);
    while let Some(c) = cause {
        if let Some(code) = c
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            return Some(code);
        }
        cause = c.source();
    }
    None
}

fn pin_link(link: FdLink, path: &Path) -> Result<(), LifecycleError> {
    link.pin(path).map(drop).map_err(|e| LifecycleError::Pin {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Asks the kernel of this network namespace (/sys may show another one's interfaces).
pub fn interface_exists(iface: &str) -> bool {
    nix::net::if_::if_nametoindex(iface).is_ok()
}
