//! The egress program's hook on an interface: a TCX link where the kernel has TCX (pinned as
//! `link_egress_IFACE`), otherwise a cls_bpf filter (direct action) on the clsact qdisc's
//! egress hook, at a priority and handle that are ours ([`TC_PRIORITY`], [`TC_HANDLE`]).
//! Both stay in force without this process: the pin keeps the TCX link; a tc filter lives
//! on the interface until it is deleted. Here: creating either, the in-place program swap
//! of a reload, which program each runs, and removing exactly what we added.

use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
};

use super::{
    LifecycleError, fault,
    pins::{EGRESS_PROGRAM_PIN, generation_dirs, spare_dirs, unpin_link},
};
use crate::{
    kernel::tc,
    state::{EgressHook, InterfaceRecord, Paths, TcFilter},
};

/// Our filter's priority (`tc filter show` calls it `pref`) on the clsact egress hook: ahead
/// of the filters `tc` numbers by itself (49152 and down), so the program sees every packet
/// another filter does not take first. The program returns TC_ACT_UNSPEC: the filters after
/// it still run.
pub const TC_PRIORITY: u16 = 0x4d58;
/// Our filter's handle ("MX").
pub const TC_HANDLE: u32 = 0x4d58;

/// Which hook `attach` uses for the egress program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EgressChoice {
    /// TCX if the kernel accepts it, else a tc clsact filter.
    Auto,
    /// A TCX link (Linux 6.6+).
    Tcx,
    /// A tc clsact egress filter (any supported kernel).
    Tc,
}

/// Links the egress program to `iface` with TCX and pins the link. The error is the
/// kernel's refusal (`auto` then falls back to tc).
pub fn attach_tcx(
    egress: &mut SchedClassifier,
    iface: &str,
    paths: &Paths,
) -> Result<(), LifecycleError> {
    let fail = |source| LifecycleError::AttachEgress {
        iface: iface.to_string(),
        hook: "TCX",
        source: Box::new(source),
    };
    let id = egress
        .attach_with_options(
            iface,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(fail)?;
    let link = egress.take_link(id).map_err(fail)?;
    let pin = paths.egress_link_pin(iface);
    let link = FdLink::try_from(link).map_err(|e| LifecycleError::Pin {
        path: pin.clone(),
        message: e.to_string(),
    })?;
    link.pin(&pin).map(drop).map_err(|e| LifecycleError::Pin {
        path: pin,
        message: e.to_string(),
    })
}

/// Our filter for `iface`, before anything changes: refused if another filter holds our
/// priority; `clsact_created` says whether the qdisc is to be added.
pub fn plan_tc(iface: &str) -> Result<TcFilter, LifecycleError> {
    if let Some(other) = tc::egress_filters(iface)?
        .into_iter()
        .find(|f| f.priority == TC_PRIORITY)
    {
        return Err(LifecycleError::TcTaken {
            iface: iface.to_string(),
            priority: TC_PRIORITY,
            holder: describe(&other),
        });
    }
    Ok(TcFilter {
        priority: TC_PRIORITY,
        handle: TC_HANDLE,
        clsact_created: !tc::clsact_exists(iface)?,
    })
}

/// Adds the clsact qdisc `plan` says is missing; `false` if it turned out to be there (added
/// by someone else meanwhile: then it is not ours).
pub fn add_clsact(iface: &str) -> Result<bool, LifecycleError> {
    match aya::programs::tc::qdisc_add_clsact(iface) {
        Ok(()) => {
            fault::point("attach:clsact-added");
            Ok(true)
        }
        Err(aya::programs::tc::TcError::NetlinkError(e))
            if e.raw_os_error() == Some(libc::EEXIST) =>
        {
            Ok(false)
        }
        Err(e) => Err(LifecycleError::AttachEgress {
            iface: iface.to_string(),
            hook: "tc: adding the clsact qdisc",
            source: Box::new(e.into()),
        }),
    }
}

/// Creates our filter on `iface`'s egress hook (exclusively: it fails if the priority and
/// handle are taken). It stays when this process ends.
pub fn create_tc(
    egress: &mut SchedClassifier,
    iface: &str,
    filter: &TcFilter,
) -> Result<(), LifecycleError> {
    let options = TcAttachOptions::Netlink(NlOptions {
        priority: filter.priority,
        handle: TcHandle::from(filter.handle),
        classid: None,
    });
    let fail = |source| LifecycleError::AttachEgress {
        iface: iface.to_string(),
        hook: "tc clsact filter",
        source: Box::new(source),
    };
    let id = egress
        .attach_with_options(iface, TcAttachType::Egress, options)
        .map_err(fail)?;
    keep(egress.take_link(id).map_err(fail)?);
    Ok(())
}

/// A SchedClassifierLink deletes its filter when dropped; ours must outlive the process. It
/// holds no descriptor, so forgetting it leaks nothing.
fn keep(link: SchedClassifierLink) {
    std::mem::forget(link);
}

/// Points `iface`'s egress hook at `egress` (pinned in the generation swapped to): the TCX
/// link by BPF_LINK_UPDATE, our tc filter by a netlink replace of the same priority and
/// handle. Both are atomic: every packet meets the old program or the new one.
pub fn swap(
    egress: &mut SchedClassifier,
    paths: &Paths,
    iface: &InterfaceRecord,
) -> Result<(), String> {
    let link = match iface.egress {
        EgressHook::Tcx => {
            // `FdLink::from` keeps the pin (`unpin` would remove it).
            let pinned = PinnedLink::from_pin(paths.egress_link_pin(&iface.name))
                .map_err(|e| e.to_string())?;
            SchedClassifierLink::try_from(FdLink::from(pinned)).map_err(|e| e.to_string())?
        }
        EgressHook::Tc(filter) => {
            match tc::egress_filter(&iface.name, filter.priority, filter.handle)
                .map_err(|e| e.to_string())?
            {
                None => return Err(format!("our tc filter is gone ({})", at(&filter))),
                Some(found) if !runs_ours(paths, &found) => {
                    return Err(format!("{} now holds {}", describe(&found), at(&filter)));
                }
                Some(_) => {}
            }
            SchedClassifierLink::attached(
                &iface.name,
                TcAttachType::Egress,
                filter.priority,
                TcHandle::from(filter.handle),
                None,
            )
            .map_err(|e| e.to_string())?
        }
    };
    let id = egress.attach_to_link(link).map_err(|e| e.to_string())?;
    let link = egress.take_link(id).map_err(|e| e.to_string())?;
    match iface.egress {
        // The pin keeps the link; this process's handle can go.
        EgressHook::Tcx => drop(link),
        EgressHook::Tc(_) => keep(link),
    }
    Ok(())
}

/// The id of the program `iface`'s egress hook runs; `None` if it is gone.
pub fn program(paths: &Paths, iface: &InterfaceRecord) -> Option<u32> {
    match iface.egress {
        EgressHook::Tcx => {
            let link = FdLink::from(PinnedLink::from_pin(paths.egress_link_pin(&iface.name)).ok()?);
            link.info().ok().map(|i| i.program_id())
        }
        EgressHook::Tc(filter) => {
            tc::egress_filter(&iface.name, filter.priority, filter.handle)
                .ok()??
                .program_id
        }
    }
}

/// Whether our tc filter is on `iface` (for recovery's report of what an attach left).
pub fn tc_linked(paths: &Paths, iface: &str, filter: &TcFilter) -> bool {
    tc::egress_filter(iface, filter.priority, filter.handle)
        .ok()
        .flatten()
        .is_some_and(|f| runs_ours(paths, &f))
}

/// Removes `iface`'s egress hook, exactly what we added: the TCX link pin; or our tc filter
/// (only if it runs one of our programs) and the clsact qdisc if we added it and no other
/// filter is on it. Repeatable: what is gone already is skipped, so recovery can finish a
/// removal a crash cut short. An interface that no longer exists took everything with it.
pub fn remove(
    paths: &Paths,
    iface: &InterfaceRecord,
    progress: &mut dyn FnMut(&str),
) -> Result<(), LifecycleError> {
    let filter = match iface.egress {
        EgressHook::Tcx => {
            unpin_link(&paths.egress_link_pin(&iface.name));
            return Ok(());
        }
        EgressHook::Tc(filter) => filter,
    };
    let name = &iface.name;
    match tc::egress_filter(name, filter.priority, filter.handle) {
        Err(tc::TcError::NoSuchInterface(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
        Ok(None) => {}
        Ok(Some(found)) if runs_ours(paths, &found) => {
            tc::delete_egress_filter(name, filter.priority, filter.handle)?;
            fault::point("detach:tc-filter-deleted");
        }
        Ok(Some(found)) => progress(&format!(
            "note: left {} on {name} ({}): it is not ours",
            describe(&found),
            at(&filter)
        )),
    }
    if filter.clsact_created && tc::clsact_exists(name)? {
        let others = tc::clsact_filters(name)?;
        if others.is_empty() {
            tc::delete_clsact(name)?;
        } else {
            progress(&format!(
                "note: left the clsact qdisc on {name} (mirror-xdp added it): {} other \
                 filter(s) use it",
                others.len()
            ));
        }
    }
    Ok(())
}

/// Whether a filter runs one of the egress programs pinned in our pin folder (any
/// generation, half-built or spare): ours, not a filter someone else put at our priority.
fn runs_ours(paths: &Paths, filter: &tc::Filter) -> bool {
    let Some(id) = filter.program_id else {
        return false;
    };
    generation_dirs(paths)
        .into_iter()
        .chain(spare_dirs(paths))
        .filter_map(|dir| aya::programs::ProgramInfo::from_pin(dir.join(EGRESS_PROGRAM_PIN)).ok())
        .any(|info| info.id() == id)
}

fn at(filter: &TcFilter) -> String {
    format!("pref {} handle {:#x}", filter.priority, filter.handle)
}

fn describe(filter: &tc::Filter) -> String {
    let mut text = format!(
        "a {} filter (pref {} handle {:#x}",
        filter.kind, filter.priority, filter.handle
    );
    if let Some(id) = filter.program_id {
        text.push_str(&format!(", program {id}"));
    }
    if let Some(name) = &filter.program_name {
        text.push_str(&format!(" {name}"));
    }
    text.push(')');
    text
}
