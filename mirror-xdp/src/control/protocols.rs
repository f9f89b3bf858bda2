//! `protocol allow` and `protocol remove` as transactions, as `port allow|remove` are
//! ([`super::ports`]): under the command lock, check the rule against the policy in force,
//! write the protocol's slot of the generation in force, then the state file and the
//! record's protocol list; if a step fails, the slot gets back what it said.

use ipnet::IpNet;
use mirror_xdp_common::protocol_index;

use super::ports::{attached, commit, in_force_if_attached};
use crate::live::ports::kernel::SlotWant;
use crate::live::ports::{
    Added, LivePorts, LivePortsError, LiveProtocol, from_key, merge_protocols,
};
use crate::live::sources;
use crate::policy::Policy;
use crate::policy::protocols::{ProtocolRule, name};
use crate::state::dir;
use crate::state::{Paths, in_force};

/// What `allow` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    pub added: Added,
    /// The line of the policy rule that lists the protocol already with the same sources
    /// and destinations.
    pub policy_line: Option<usize>,
}

/// What `remove` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    pub rule: LiveProtocol,
    /// False: nothing is attached, only the state file changed.
    pub attached: bool,
    /// The policy lists the protocol too, so it stays open.
    pub still_listed: bool,
}

/// Adds a live protocol rule (or gives the protocol's rule new sources) and opens the
/// protocol in the enforcer at once.
pub fn allow(paths: &Paths, rule: LiveProtocol) -> Result<Allowed, LivePortsError> {
    let _lock = dir::lock(&paths.state_dir)?;
    let mut record = attached(paths)?;
    let policy = in_force::policy(paths, &record)?;
    let before = LivePorts::load(paths)?;
    let (after, added) = before.with_protocol(rule.clone());
    let (extra, mut problems) = merge_protocols(&policy, &after, Some(rule.protocol));
    if !problems.is_empty() {
        return Err(problems.remove(0));
    }
    let (extra_before, _) = merge_protocols(&policy, &before, None);
    let want = [slot(&policy, &extra, rule.protocol)];
    let undo = [slot(&policy, &extra_before, rule.protocol)];
    let mut maps = sources::open_in_force(paths, &record)?;
    commit(&mut maps, &want, &undo, || after.save(paths))?;
    if !record.protocols.contains(&rule.protocol) {
        record.protocols.push(rule.protocol);
        record.save(paths)?;
    }
    let mine = extra.iter().find(|r| r.protocols == [rule.protocol]);
    let lists = |r: &ProtocolRule| {
        let key = |nets: &Option<Vec<IpNet>>| nets.as_deref().map(from_key);
        (key(&r.from), key(&r.to))
    };
    let policy_line = policy
        .protocols
        .iter()
        .filter(|r| r.protocols.contains(&rule.protocol))
        .find(|r| mine.is_some_and(|m| lists(m) == lists(r)))
        .map(|r| r.line);
    Ok(Allowed { added, policy_line })
}

/// Removes the protocol's live rule; the protocol closes unless the policy lists it.
pub fn remove(paths: &Paths, protocol: u8) -> Result<Removed, LivePortsError> {
    let _lock = dir::lock(&paths.state_dir)?;
    let (record, policy) = in_force_if_attached(paths)?;
    let before = LivePorts::load(paths)?;
    let Some(index) = before.protocol_position(protocol) else {
        let line = policy.as_ref().and_then(|p| {
            let rule = p
                .protocols
                .iter()
                .find(|r| r.protocols.contains(&protocol))?;
            Some(format!(
                "; it comes from the policy file (the rule at line {} of {}), change it there",
                rule.line,
                p.path.display()
            ))
        });
        return Err(LivePortsError::NotLiveProtocol {
            protocol: name(protocol),
            hint: line.unwrap_or_default(),
        });
    };
    let mut after = before.clone();
    let rule = after.protocols.remove(index);
    let (Some(mut record), Some(policy)) = (record, policy) else {
        after.save(paths)?;
        return Ok(Removed {
            rule,
            attached: false,
            still_listed: false,
        });
    };
    let (extra, _) = merge_protocols(&policy, &after, None);
    let (extra_before, _) = merge_protocols(&policy, &before, None);
    let want = [slot(&policy, &extra, protocol)];
    let undo = [slot(&policy, &extra_before, protocol)];
    let still_listed = !want[0].1.is_closed();
    let mut maps = sources::open_in_force(paths, &record)?;
    commit(&mut maps, &want, &undo, || after.save(paths))?;
    if !still_listed && let Some(i) = record.protocols.iter().position(|p| *p == protocol) {
        record.protocols.remove(i);
        record.save(paths)?;
    }
    Ok(Removed {
        rule,
        attached: true,
        still_listed,
    })
}

/// What the protocol's slot should say: what the policy's rules and then the live one
/// that list it make of it ([`SlotWant::of_rules`]).
fn slot(policy: &Policy, live: &[ProtocolRule], protocol: u8) -> (u32, SlotWant) {
    let rules = policy
        .protocols
        .iter()
        .chain(live)
        .filter(|r| r.protocols.contains(&protocol))
        .map(|r| (&r.from, &r.to));
    (protocol_index(protocol), SlotWant::of_rules(rules))
}
