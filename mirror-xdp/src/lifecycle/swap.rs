//! The swap at the heart of a reload: BPF_LINK_UPDATE points each pinned link at another
//! generation's programs, atomically per link (a tc egress filter: a netlink replace of the
//! same priority and handle, as atomic), and the staging folder then becomes the
//! generation's folder. A reload swaps forwards; recovery finishes a swap a killed reload
//! began ([`super::recover`]); both tell by program ids which generation a link runs.

use std::path::Path;

use aya::programs::{
    ProgramInfo,
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};

use super::{
    LifecycleError, egress, fault,
    object::pinned_programs,
    pins::{EGRESS_PROGRAM_PIN, XDP_PROGRAM_PIN},
};
use crate::state::{Paths, Record};

/// The programs pinned in a generation's folder, by id.
#[derive(Clone, Copy, Debug)]
pub struct Programs {
    xdp: u32,
    egress: u32,
}

impl Programs {
    /// `None` for a folder without program pins (one of a build that pinned none).
    pub fn read(dir: &Path) -> Option<Programs> {
        let id = |name| ProgramInfo::from_pin(dir.join(name)).ok().map(|i| i.id());
        Some(Programs {
            xdp: id(XDP_PROGRAM_PIN)?,
            egress: id(EGRESS_PROGRAM_PIN)?,
        })
    }

    pub fn run_by_any(&self, running: &[u32]) -> bool {
        running.contains(&self.xdp) || running.contains(&self.egress)
    }
}

/// The ids of the programs the links of `record`'s interfaces run.
pub fn running(paths: &Paths, record: &Record) -> Vec<u32> {
    record
        .interfaces
        .iter()
        .flat_map(|i| {
            [
                link_program(&paths.xdp_link_pin(&i.name)),
                egress::program(paths, i),
            ]
        })
        .flatten()
        .collect()
}

fn link_program(pin: &Path) -> Option<u32> {
    let link = FdLink::from(PinnedLink::from_pin(pin).ok()?);
    link.info().ok().map(|i| i.program_id())
}

/// Points every link of `record`'s interfaces at the programs pinned in `dir` (BPF_LINK_UPDATE,
/// atomic per link; tc filters replaced in place): egress hooks first, so each interface records its own connections by the
/// new policy before it judges by it. Links that run them already are left alone.
pub fn swap_links(paths: &Paths, record: &Record, dir: &Path) -> Result<(), LifecycleError> {
    let programs_err = |e: &dyn std::fmt::Display| LifecycleError::SwapPrograms {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    };
    let wanted = Programs::read(dir).ok_or_else(|| programs_err(&"no programs pinned there"))?;
    let (mut egress_prog, mut xdp) = pinned_programs(dir)?;
    let swap_err = |iface: &str| {
        let iface = iface.to_string();
        move |e: &dyn std::fmt::Display| LifecycleError::Swap {
            iface: iface.clone(),
            message: e.to_string(),
        }
    };
    for iface in &record.interfaces {
        if egress::program(paths, iface) == Some(wanted.egress) {
            continue;
        }
        egress::swap(&mut egress_prog, paths, iface).map_err(|e| swap_err(&iface.name)(&e))?;
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

/// Renames the staging folder of `generation` to its folder: the last step of a swap.
pub fn promote_staging(paths: &Paths, generation: u64) -> Result<(), LifecycleError> {
    let renamed = paths.generation_dir(generation);
    std::fs::rename(paths.staging_dir(generation), &renamed).map_err(|source| {
        LifecycleError::Bpffs {
            path: renamed,
            source,
        }
    })
}
