//! `port allow` and `port remove` as transactions: under the command lock (which attach and
//! reload hold too), check the rule against the policy in force (the texts its generation
//! was compiled from, not the policy file, which may have been edited since), write the
//! generation in force (opened only once the lock is held), then the state file and the
//! record's port list. If a step fails, the slots get back what they said before.

use ipnet::IpNet;

use crate::compile::proto_slot;
use crate::kernel::maps::Maps;
use crate::live::ports::kernel::{self, SlotWant};
use crate::live::ports::merge::merge;
use crate::live::ports::{
    Added, LivePorts, LivePortsError, LiveRule, PortSpec, from_key, live_rules,
};
use crate::live::sources;
use crate::policy::{Policy, PortRule};
use crate::state::dir;
use crate::state::{Paths, PortRecord, Record, in_force};
use mirror_xdp_common::port_index;

/// What `allow` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    pub added: Added,
    /// Lines of the policy rules that list some of these ports already with the same
    /// sources and destinations (other rules on them apply to other destinations, or the
    /// rule is refused).
    pub policy_lines: Vec<usize>,
    /// Port slots written in the kernel.
    pub slots: usize,
}

/// What `remove` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    pub rule: LiveRule,
    /// False: nothing is attached, only the state file changed.
    pub attached: bool,
    /// Ports of the rule that stay open because the policy or another live rule lists them.
    pub still_listed: usize,
    /// Other live rules that no longer fit the policy file (they stay in the file; the next
    /// reload refuses until they are fixed).
    pub warnings: Vec<String>,
}

/// Adds a live rule (or gives an existing one for the same ports new sources that mean
/// the same) and opens its ports in the enforcer at once.
pub fn allow(paths: &Paths, rule: LiveRule) -> Result<Allowed, LivePortsError> {
    let _lock = dir::lock(&paths.state_dir)?;
    let mut record = attached(paths)?;
    let policy = in_force::policy(paths, &record)?;
    let before = LivePorts::load(paths)?;
    let (after, added) = before.with(rule.clone());
    let extra = live_rules(&policy, &after, Some(&rule.spec))?;
    let (extra_before, _) = merge(&policy, &before, None);
    let mine = extra
        .iter()
        .find(|r| r.proto == rule.spec.proto && r.ports == [rule.spec.ports]);
    let lists = |r: &PortRule| {
        let key = |nets: &Option<Vec<IpNet>>| nets.as_deref().map(from_key);
        (key(&r.from), key(&r.to))
    };
    let policy_lines: Vec<usize> = policy
        .rules
        .iter()
        .filter(|r| r.proto == rule.spec.proto && lists_any(r, &rule.spec))
        .filter(|r| mine.is_some_and(|m| lists(m) == lists(r)))
        .map(|r| r.line)
        .collect();
    let want = wants(&policy, &extra, &rule.spec);
    let undo = wants(&policy, &extra_before, &rule.spec);
    let mut maps = sources::open_in_force(paths, &record)?;
    let slots = commit(&mut maps, &want, &undo, || after.save(paths))?;
    if added == Added::New {
        record
            .ports
            .push(PortRecord::new(rule.spec.proto, rule.spec.ports));
        record.save(paths)?;
    }
    Ok(Allowed {
        added,
        policy_lines,
        slots,
    })
}

/// Removes the live rule for exactly these ports; its ports close unless the policy or
/// another live rule lists them. With nothing attached, only the state file changes (so a
/// rule that keeps `attach` from accepting a changed policy can go).
pub fn remove(paths: &Paths, spec: PortSpec) -> Result<Removed, LivePortsError> {
    let _lock = dir::lock(&paths.state_dir)?;
    let (record, policy) = in_force_if_attached(paths)?;
    let before = LivePorts::load(paths)?;
    let Some(index) = before.position(&spec) else {
        return Err(not_live(&before, policy.as_ref(), spec));
    };
    let mut after = before.clone();
    let rule = after.rules.remove(index);
    let (Some(mut record), Some(policy)) = (record, policy) else {
        after.save(paths)?;
        return Ok(Removed {
            rule,
            attached: false,
            still_listed: 0,
            warnings: Vec::new(),
        });
    };
    let (extra, problems) = merge(&policy, &after, None);
    let (extra_before, _) = merge(&policy, &before, None);
    let want = wants(&policy, &extra, &spec);
    let undo = wants(&policy, &extra_before, &spec);
    let still_listed = want.iter().filter(|(_, w)| !w.is_closed()).count();
    let mut maps = sources::open_in_force(paths, &record)?;
    commit(&mut maps, &want, &undo, || after.save(paths))?;
    let record_entry = PortRecord::new(spec.proto, spec.ports);
    // Live rules follow the policy's in the record: the last equal entry is this one.
    if let Some(i) = record.ports.iter().rposition(|p| *p == record_entry) {
        record.ports.remove(i);
        record.save(paths)?;
    }
    Ok(Removed {
        rule,
        attached: true,
        still_listed,
        warnings: problems.iter().map(ToString::to_string).collect(),
    })
}

/// The policy in force (if anything is attached) and the live rules, read under the lock
/// so they belong together.
pub fn snapshot(paths: &Paths) -> Result<(Option<Policy>, LivePorts), LivePortsError> {
    let _lock = dir::lock(&paths.state_dir)?;
    let (_, policy) = in_force_if_attached(paths)?;
    Ok((policy, LivePorts::load(paths)?))
}

/// The record and the policy in force, if anything is attached (a removal works with
/// nothing attached too).
pub(super) fn in_force_if_attached(
    paths: &Paths,
) -> Result<(Option<Record>, Option<Policy>), LivePortsError> {
    let Some(record) = Record::load(paths)? else {
        return Ok((None, None));
    };
    let policy = in_force::policy(paths, &record)?;
    Ok((Some(record), Some(policy)))
}

pub(super) fn attached(paths: &Paths) -> Result<Record, LivePortsError> {
    Record::load(paths)?.ok_or_else(|| LivePortsError::NotAttached(paths.state_dir.clone()))
}

/// Writes `want`, then runs `save`; if either fails, writes `undo` (best effort).
pub(super) fn commit(
    maps: &mut Maps,
    want: &[(u32, SlotWant)],
    undo: &[(u32, SlotWant)],
    save: impl FnOnce() -> Result<(), sources::LiveError>,
) -> Result<usize, LivePortsError> {
    let result = kernel::apply(maps, want).and_then(|n| save().map(|()| n).map_err(Into::into));
    if result.is_err()
        && let Err(again) = kernel::apply(maps, undo)
    {
        eprintln!("mirror-xdp: restoring the previous port slots failed too: {again}");
    }
    result
}

/// What each slot of `spec` should say: what the policy's rules and then the live ones
/// that list the port make of it ([`SlotWant::of_rules`]).
fn wants(policy: &Policy, live: &[PortRule], spec: &PortSpec) -> Vec<(u32, SlotWant)> {
    let slot = proto_slot(spec.proto);
    (spec.ports.lo..=spec.ports.hi)
        .map(|port| {
            let rules = policy
                .rules
                .iter()
                .chain(live)
                .filter(|r| r.proto == spec.proto && r.ports.iter().any(|p| p.contains(port)))
                .map(|r| (&r.from, &r.to));
            (port_index(slot, port), SlotWant::of_rules(rules))
        })
        .collect()
}

fn lists_any(rule: &PortRule, spec: &PortSpec) -> bool {
    rule.ports
        .iter()
        .any(|r| r.lo <= spec.ports.hi && spec.ports.lo <= r.hi)
}

/// Why `spec` cannot be removed: a policy port, part of a wider live rule, or unknown.
fn not_live(live: &LivePorts, policy: Option<&Policy>, spec: PortSpec) -> LivePortsError {
    let in_policy = policy.and_then(|p| {
        p.rules
            .iter()
            .find(|r| r.proto == spec.proto && lists_any(r, &spec))
            .map(|r| (p, r.line))
    });
    let hint = if let Some((policy, line)) = in_policy {
        format!(
            "; it comes from the policy file (the rule at line {line} of {}), change it there",
            policy.path.display()
        )
    } else if let Some(wider) = live.rules.iter().find(|r| r.spec.overlaps(&spec)) {
        format!(
            "; it is part of the live rule {}, which is removed as a whole: mirror-xdp port remove {}",
            wider.spec, wider.spec
        )
    } else {
        String::new()
    };
    LivePortsError::NotLive { spec, hint }
}
