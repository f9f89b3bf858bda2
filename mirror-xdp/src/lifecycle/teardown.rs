//! Taking an enforcer down: its egress hooks and pins (links and tc filters first, so no
//! program runs with its maps half gone), the sysctl attach set, and the state file. Detach,
//! recovery and a failed attach's rollback end this way.

use std::path::Path;

use super::{
    LifecycleError, egress, fault, pending,
    pins::{entries, generation_dirs, is_ours, link_pins, remove_dir_pins, spare_dirs, unpin_link},
};
use crate::state::{InterfaceRecord, Paths, Record};

/// Removes every pin of ours in the bpffs folder (links first, so no program runs with maps
/// half gone), and the folder if it is then empty. Pins of other versions (`mx_*_vN`) too.
pub fn remove_pins(paths: &Paths) {
    for link in link_pins(paths) {
        unpin_link(&link);
    }
    for dir in generation_dirs(paths).into_iter().chain(spare_dirs(paths)) {
        remove_dir_pins(&dir);
    }
    for path in entries(&paths.bpffs) {
        if is_ours(&path) && path.is_file() {
            let _ = std::fs::remove_file(path);
        }
    }
    let _ = std::fs::remove_dir(&paths.bpffs);
}

/// Removes the egress hooks of `interfaces` (TCX link pins; our tc filters, and the clsact
/// qdiscs we added), before [`remove_pins`] takes the programs' pins that tell our filters
/// from others'. Tries every interface; the first error is returned.
pub fn remove_egress_hooks(
    paths: &Paths,
    interfaces: &[InterfaceRecord],
    progress: &mut dyn FnMut(&str),
) -> Result<(), LifecycleError> {
    let mut first = Ok(());
    for iface in interfaces {
        if let Err(e) = egress::remove(paths, iface, progress) {
            first = first.and(Err(e));
        }
    }
    first
}

/// Removes one generation's pins.
pub fn remove_generation(paths: &Paths, generation: u64) {
    remove_dir_pins(&paths.generation_dir(generation));
}

/// The end of a detach from every interface: the pins, the sysctl, the state file (last:
/// while it is there, the next command knows there is something to finish).
pub fn finish_detach(paths: &Paths, record: &Record) -> Result<(), LifecycleError> {
    remove_pins(paths);
    fault::point("detach:pins-removed");
    if restore_sysctls(record)? {
        fault::point("detach:sysctl-restored");
    }
    pending::discard(paths);
    Record::remove(paths)?;
    Ok(())
}

/// Puts the sysctls that attach set for `syn_cookies` (`net.ipv4.tcp_syncookies`,
/// `net.ipv4.tcp_timestamps`) back to what the record says they were; true if it named any.
pub fn restore_sysctls(record: &Record) -> Result<bool, LifecycleError> {
    use crate::kernel::syncookie_sysctl::{PROC_SYS, SYSCTL, restore, restore_timestamps};
    if let Some(before) = &record.tcp_syncookies_before {
        restore(Path::new(SYSCTL), before)?;
    }
    if let Some(before) = &record.tcp_timestamps_before {
        restore_timestamps(Path::new(PROC_SYS), before)?;
    }
    Ok(record.tcp_syncookies_before.is_some() || record.tcp_timestamps_before.is_some())
}
