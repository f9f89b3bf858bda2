//! Adding interfaces to the enforcer in force (`attach --iface eth1` while it runs on eth0):
//! each new interface is linked to the programs of the generation in force, so it shares
//! its maps (counters, flows, limiter state, live entries), and the interfaces attached
//! already never stop enforcing. Crash-safe as attach is: the pending record names each
//! new interface before anything is linked, the egress hook goes first and XDP last, and
//! the next command rolls an add that did not finish back ([`super::recover`]).

use super::{
    LifecycleError,
    egress::EgressChoice,
    fault,
    link::{AttachMode, interface_exists, link_egress_recorded, link_xdp, set_egress},
    object::{pinned_program_id, pinned_programs},
    pending,
    recover::roll_back_add,
};
use crate::policy::Policy;
use crate::state::{EgressHook, Paths, Record, in_force};

/// Adds `ifaces` to the enforcer of `record` (the caller holds the command lock and has
/// recovered what a crash left). `policy` must be the policy in force: adding an interface
/// changes no policy.
pub fn add_interfaces(
    paths: &Paths,
    record: Record,
    ifaces: &[String],
    policy: &Policy,
    mode: AttachMode,
    egress_choice: EgressChoice,
    progress: &mut dyn FnMut(&str),
) -> Result<Record, LifecycleError> {
    check(paths, &record, ifaces, policy)?;
    let dir = paths.generation_dir(record.policy.generation);
    let (mut egress, mut xdp) = pinned_programs(&dir)?;
    let prog_id = pinned_program_id(&dir)?;

    let mut next = record.clone();
    let mut rollback = Rollback {
        paths,
        record: &record,
        armed: true,
    };
    // Named before anything is linked: a TCX link pinned a moment later is then known to
    // the recovery too (the tc hook updates the entry before its filter exists).
    for iface in ifaces {
        set_egress(&mut next, iface, prog_id, EgressHook::Tcx);
    }
    pending::write_record(paths, &next)?;
    fault::point("add:pending-written");
    for iface in ifaces {
        link_egress_recorded(
            &mut egress,
            iface,
            egress_choice,
            paths,
            &mut next,
            prog_id,
            progress,
        )?;
        fault::point("add:egress-linked");
    }
    for iface in ifaces {
        link_xdp(&mut xdp, iface, mode, paths, &mut next, progress)?;
        fault::point("add:xdp-linked");
    }
    pending::write_record(paths, &next)?;
    pending::commit(paths)?;
    fault::point("add:state-written");
    rollback.armed = false;
    Ok(next)
}

/// Refuses an interface that is attached already or does not exist, and a policy other
/// than the one in force (a reload changes policies; this keeps it).
fn check(
    paths: &Paths,
    record: &Record,
    ifaces: &[String],
    policy: &Policy,
) -> Result<(), LifecycleError> {
    for iface in ifaces {
        if record.interfaces.iter().any(|i| &i.name == iface) {
            return Err(LifecycleError::AlreadyAttached {
                interfaces: record.interface_names(),
            });
        }
        if !interface_exists(iface) {
            return Err(LifecycleError::NoSuchInterface(iface.clone()));
        }
    }
    let kept = in_force::files(paths, record)?;
    if policy.files.absolute() != kept {
        return Err(LifecycleError::NotThePolicyInForce {
            given: policy.path.clone(),
            in_force: record.policy.path.clone(),
            generation: record.policy.generation,
        });
    }
    Ok(())
}

/// Undoes a half-done add when dropped armed: the new interfaces are unlinked, the others
/// are not touched.
struct Rollback<'a> {
    paths: &'a Paths,
    record: &'a Record,
    armed: bool,
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Ok(pending) = pending::load(self.paths)
        {
            let _ = roll_back_add(self.paths, self.record, pending.as_ref(), &mut |_| {});
        }
    }
}
