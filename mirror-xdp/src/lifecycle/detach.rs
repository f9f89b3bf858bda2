//! Detaching the enforcer from one interface or from all (its XDP link, then its egress
//! hook: TCX link or tc filter); with none left, its pins, the sysctl and the state file go
//! too.

use super::{
    LifecycleError, egress, fault,
    pins::unpin_link,
    recover::{Recovery, recover},
    teardown::finish_detach,
};
use crate::state::{Paths, Record};

/// Detaches from one interface, or from all. When no interface is left, the maps, pins and
/// state file go too. Crash-safe: XDP links go first, so an interface enforces the policy or
/// nothing; an interface whose XDP link is gone counts as detached, and the next command
/// finishes the rest ([`super::recover`]). Returns the interfaces detached; empty when only
/// what an unfinished command left was cleaned up.
pub fn detach(
    paths: &Paths,
    iface: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<String>, LifecycleError> {
    let lock = crate::state::dir::lock(&paths.state_dir)?;
    let recovered = recover(paths, &lock, Recovery::RollBackAttach, progress)?;
    let Some(mut record) = Record::load(paths)? else {
        return match recovered {
            true => Ok(Vec::new()),
            false => Err(LifecycleError::NotAttached(paths.state_dir.clone())),
        };
    };
    let targets: Vec<String> = match iface {
        Some(name) => {
            if !record.interfaces.iter().any(|i| i.name == name) {
                return Err(LifecycleError::UnknownInterface {
                    iface: name.to_string(),
                    attached: record.interface_names(),
                });
            }
            vec![name.to_string()]
        }
        None => record.interfaces.iter().map(|i| i.name.clone()).collect(),
    };
    for name in &targets {
        unpin_link(&paths.xdp_link_pin(name));
        fault::point("detach:xdp-unpinned");
    }
    for iface in record
        .interfaces
        .iter()
        .filter(|i| targets.contains(&i.name))
    {
        // The TCX link, or our tc filter (and the clsact qdisc if we added it).
        egress::remove(paths, iface, progress)?;
        fault::point("detach:egress-unpinned");
    }
    record.interfaces.retain(|i| !targets.contains(&i.name));
    if record.interfaces.is_empty() {
        finish_detach(paths, &record)?;
    } else {
        record.save(paths)?;
    }
    Ok(targets)
}
