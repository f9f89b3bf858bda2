//! `mirror-xdp audit`: runs a corpus of evasive frames (VLAN tags, IP options, fragments,
//! IPv6 extension chains, bogus TCP headers, scans, odd addresses, tunnels) through the
//! program attached to each interface with BPF_PROG_TEST_RUN, and reports every frame
//! whose verdict differs from what the live policy intends; also the NIC offloads that
//! hide headers from XDP (judged in [`crate::kernel::nic`], as `attach` does).
//! docs/audit.md describes each class and its intent.

pub mod corpus;
pub mod frame;
pub mod intent;
pub mod program;
pub mod report;
pub mod targets;

use std::collections::{HashMap, hash_map::Entry};

use crate::kernel::nic::Offloads;
use crate::live::ports::LivePorts;
use crate::live::sources::LiveSet;
use crate::state::{Paths, Record, in_force};
use intent::PolicyView;
use program::{Action, AttachedProgram};
use report::{ClassReport, Finding, InterfaceAudit, Report};
use targets::Targets;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("nothing is attached (no state in {0}); run `mirror-xdp attach` first")]
    NotAttached(std::path::PathBuf),
    #[error("interface {iface} is not attached (attached: {attached})")]
    UnknownInterface { iface: String, attached: String },
    #[error(
        "the policy in force ({path}) cannot be read any more, so its intent is unknown: {message}"
    )]
    Policy {
        path: std::path::PathBuf,
        message: String,
    },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Live(#[from] crate::live::sources::LiveError),
    #[error(transparent)]
    Program(#[from] program::ProgramOpenError),
    #[error(transparent)]
    TestRun(#[from] crate::observe::testrun::TestRunError),
}

/// Audits the enforcer on `iface`, or on every interface it is attached to.
pub fn audit(paths: &Paths, iface: Option<&str>) -> Result<Report, AuditError> {
    let record =
        Record::load(paths)?.ok_or_else(|| AuditError::NotAttached(paths.state_dir.clone()))?;
    let interfaces: Vec<_> = match iface {
        Some(name) => {
            let found = record.interfaces.iter().filter(|i| i.name == name).cloned();
            let found: Vec<_> = found.collect();
            if found.is_empty() {
                return Err(AuditError::UnknownInterface {
                    iface: name.to_string(),
                    attached: record.interface_names(),
                });
            }
            found
        }
        None => record.interfaces.clone(),
    };
    let view = policy_view(paths, &record)?;
    let targets = Targets::pick(&view);
    let probes = corpus::build(&view, &targets);
    let mut notes = targets.missing();
    notes.extend(policy_notes(&view, &record));

    // Interfaces that share a program (the usual case) share its results: each frame runs
    // once per program, not once per interface.
    let mut verdicts: HashMap<u32, Vec<Action>> = HashMap::new();
    let mut frames_run = 0;
    let mut audits = Vec::new();
    for iface in &interfaces {
        let program = AttachedProgram::open(&paths.xdp_link_pin(&iface.name))?;
        let actions = match verdicts.entry(program.id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => {
                let actions = probes
                    .iter()
                    .map(|p| program.run(&p.frame))
                    .collect::<Result<Vec<_>, _>>()?;
                frames_run += actions.len();
                slot.insert(actions)
            }
        };
        let (offloads, warnings) = match Offloads::read(&iface.name) {
            Ok(o) => {
                let warnings = o.warnings(&iface.name, &iface.xdp_mode);
                (Some(o), warnings)
            }
            Err(e) => (None, vec![e.to_string()]),
        };
        audits.push(InterfaceAudit {
            name: iface.name.clone(),
            xdp_mode: iface.xdp_mode.clone(),
            prog_id: program.id,
            classes: judge(&probes, actions),
            offloads,
            warnings,
        });
    }
    notes.push(format!(
        "the {frames_run} audit frames ran through the live program and are in its counters \
         (`mirror-xdp stats`) as received packets would be, and the daemon's drop log may \
         sample some; nothing else changes unless a limit is on"
    ));
    Ok(Report {
        policy: record.policy.clone(),
        mode: record.mode.clone(),
        targets,
        interfaces: audits,
        notes,
    })
}

/// The policy in force (the texts its generation was compiled from) with the live port
/// rules merged in, and the live sources.
fn policy_view(paths: &Paths, record: &Record) -> Result<PolicyView, AuditError> {
    let unreadable = |message: String| AuditError::Policy {
        path: record.policy.path.clone(),
        message,
    };
    let policy = in_force::policy(paths, record).map_err(|e| unreadable(e.to_string()))?;
    let live_ports = LivePorts::load(paths)?;
    let policy = policy
        .with_live_ports(&live_ports)
        .map_err(|e| unreadable(e.to_string()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(PolicyView::new(policy, &LiveSet::load(paths)?, now))
}

/// What the reader must know to trust the result: policy files edited since they were
/// applied, monitor mode, limits that the audit frames count against.
fn policy_notes(view: &PolicyView, record: &Record) -> Vec<String> {
    let policy = &view.policy;
    let mut notes = Vec::new();
    let changed = policy.files.changed_on_disk();
    if !changed.is_empty() {
        let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        notes.push(format!(
            "{} changed on disk since generation {} was applied: the audit judges the policy \
             in force; `mirror-xdp diff` shows what a reload would change",
            names.join(", "),
            record.policy.generation
        ));
    }
    if record.mode == "monitor" {
        notes.push(
            "monitor mode: the program passes every frame by design, so the audit can only \
             confirm that; attach in enforce mode to audit what gets past"
                .into(),
        );
    }
    let limits = policy.limits.enabled();
    if !limits.is_empty() {
        notes.push(format!(
            "limits are on ({}): the audit frames count against their sources' budgets; a \
             pass control dropped by a limit shows as a finding",
            limits.join(", ")
        ));
    }
    notes
}

/// Groups the verdicts by class; a frame whose verdict is not the intended one is a
/// finding. Classes with no frame for this policy are listed with zero frames.
fn judge(probes: &[corpus::Probe], actions: &[Action]) -> Vec<ClassReport> {
    corpus::Class::ALL
        .iter()
        .map(|&class| {
            let mine: Vec<_> = probes
                .iter()
                .zip(actions)
                .filter(|(p, _)| p.class == class)
                .collect();
            let findings = mine
                .iter()
                .filter(|(p, action)| p.intent.drop == action.passes())
                .map(|(p, action)| Finding {
                    frame: p.label.clone(),
                    intended: if p.intent.drop { "drop" } else { "pass" },
                    why: p.intent.why,
                    verdict: action.name().into_owned(),
                })
                .collect();
            ClassReport {
                class,
                frames: mine.len(),
                findings,
            }
        })
        .collect()
}
