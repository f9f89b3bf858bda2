//! The enforcer's lifecycle: attach, reload and detach, crash-safe, and the recovery that
//! finishes or rolls back what a killed command left.
//!
//! Layers, bottom to top; each file imports only from files below it (and this file's
//! error type):
//! - [`fault`]: crash points for the tests (a no-op without the `test-support` feature);
//! - [`pins`]: the names of everything in the pin folder, and bpffs folder helpers;
//! - [`object`]: the embedded eBPF object, loading it and pinning its programs;
//! - [`compat`]: whether this build can adopt or read the pins it finds;
//! - [`egress`]: the egress program's hook on an interface (TCX link or tc filter);
//! - [`spare`]: a next generation built ahead, so a reload need not verify the programs;
//! - [`swap`]: pointing the pinned links at another generation's programs;
//! - [`pending`]: the state files an attach or reload will commit;
//! - [`teardown`]: removing pins, the sysctl and the state file;
//! - [`link`]: linking a generation's programs to an interface;
//! - [`recover`]: finishing or rolling back what a killed command left;
//! - [`add`]: adding an interface to the enforcer in force;
//! - [`attach`], [`detach`], [`reload`]: the commands.
//!
//! Outside the module, [`crate::state`] (the folders and the state record) and
//! [`crate::kernel::maps`] (the maps' contents) sit below it.

pub mod add;
pub mod attach;
pub mod compat;
pub mod detach;
pub mod egress;
pub mod fault;
pub mod link;
pub mod lockout;
pub mod object;
pub mod pending;
pub mod pins;
pub mod recover;
pub mod reload;
pub mod spare;
pub mod swap;
pub mod teardown;

use std::path::PathBuf;

pub use add::add_interfaces;
pub use attach::attach;
pub use detach::detach;
pub use egress::EgressChoice;
pub use link::AttachMode;
pub use object::Sizes;
pub use recover::for_reading;
pub use reload::{Reloaded, reload};

/// What to do about pins this build cannot adopt ([`compat`]).
const ADOPT_ADVICE: &str = "this build cannot adopt the attached enforcer without misreading \
     its state. Run `mirror-xdp detach` (it removes every pin of ours; the interfaces are \
     unprotected until the next attach), then attach with this build; or go on with the \
     build that attached it";

/// What can go wrong in attaching, reloading, detaching or recovering.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(
        "already attached to {interfaces}: `attach --iface` adds other interfaces; \
         `mirror-xdp detach --iface` removes one"
    )]
    AlreadyAttached { interfaces: String },
    #[error(
        "the enforcer runs generation {generation} of {}, and adding an interface keeps that \
         policy: {} is not it (or has changed since). Add the interface with --policy {}, \
         or `mirror-xdp reload` first (`mirror-xdp diff` shows the difference)",
        in_force.display(), given.display(), in_force.display()
    )]
    NotThePolicyInForce {
        given: PathBuf,
        in_force: PathBuf,
        generation: u64,
    },
    #[error(transparent)]
    InForce(#[from] crate::state::in_force::InForceError),
    #[error("nothing is attached (no state in {0})")]
    NotAttached(PathBuf),
    #[error(
        "its maps would take {mib} MiB of kernel memory (a spare is made up to {limit} MiB); \
         the next reload verifies a program of its own (a few hundred ms more)"
    )]
    SpareTooBig { mib: u64, limit: u64 },
    #[error("nothing is attached (no state in {0}); run `mirror-xdp attach` first")]
    NothingToReload(PathBuf),
    #[error("interface {iface} is not attached (attached: {attached})")]
    UnknownInterface { iface: String, attached: String },
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error(
        "attaching XDP to {iface} in {mode} mode failed: {}{}{hint}",
        chain(source),
        why.as_ref().map_or(String::new(), |w| format!(": {w}")),
        hint = if *mode == "native" { " (or try --xdp-mode skb)" } else { "" }
    )]
    AttachXdp {
        iface: String,
        mode: &'static str,
        source: Box<aya::programs::ProgramError>,
        /// Why the driver refused native mode, and what to do ([`crate::kernel::nic::advice`]).
        why: Option<String>,
    },
    #[error(
        "attaching the egress program to {iface} ({hook}) failed: {}{hint}",
        chain(source),
        hint = if *hook == "TCX" { " (try --egress-hook tc)" } else { "" }
    )]
    AttachEgress {
        iface: String,
        hook: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error(
        "the egress filter priority {priority} on {iface} is taken by {holder}: mirror-xdp's \
         tc filter needs it (see the README, \"How it works\"); remove that filter or use \
         --egress-hook tcx"
    )]
    TcTaken {
        iface: String,
        priority: u16,
        holder: String,
    },
    #[error(transparent)]
    Tc(#[from] crate::kernel::tc::TcError),
    #[error("pinning {path} failed: {message}")]
    Pin { path: PathBuf, message: String },
    #[error("bpffs folder {path}: {source}")]
    Bpffs {
        path: PathBuf,
        source: std::io::Error,
    },

    // Loading the embedded object.
    #[error(
        "this binary was built without its eBPF programs (MIRROR_XDP_SKIP_EBPF); rebuild without it"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("program {name} is missing from the eBPF object")]
    MissingProgram { name: &'static str },
    #[error("pinning program {name} at {path}: {message}")]
    PinProgram {
        name: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the kernel refused program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },

    // Pins this build cannot adopt or read ([`compat`]).
    #[error(
        "{path} is a map of another mirror-xdp version (this build's is {expected}): {}",
        ADOPT_ADVICE
    )]
    OtherVersion { path: PathBuf, expected: String },
    #[error(
        "{path} does not have the layout this build expects ({found}; expected {expected}): {}",
        ADOPT_ADVICE
    )]
    LayoutMismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "generation {generation} of the attached enforcer was written by another mirror-xdp \
         version ({path}; this build reads {expected}): run `mirror-xdp reload` (or restart \
         `mirror-xdp run`) to migrate it to this build without a gap"
    )]
    OtherGeneration {
        generation: u64,
        path: PathBuf,
        expected: String,
    },
    #[error("reading pinned map {path}: {message}")]
    ReadMap { path: PathBuf, message: String },

    // Reloads.
    /// The policy does not validate: nothing changed.
    #[error("{0}")]
    Invalid(#[from] crate::policy::PolicyError),
    /// The policy would cut the admin's session: nothing changed.
    #[error(transparent)]
    Lockout(#[from] crate::lifecycle::lockout::LockoutRefused),
    #[error("swapping the program on {iface}: {message}")]
    Swap { iface: String, message: String },
    #[error("opening the programs pinned in {dir} to swap them in: {message}")]
    SwapPrograms { dir: PathBuf, message: String },
    #[error(
        "{failed}; and going back to generation {generation} failed too ({back}): run \
         `mirror-xdp reload` again"
    )]
    SwapBack {
        failed: Box<LifecycleError>,
        generation: u64,
        back: Box<LifecycleError>,
    },
    /// An earlier command died half-way, and this one may not finish it.
    #[error("{0}")]
    Unfinished(String),

    #[error(transparent)]
    Maps(#[from] crate::kernel::maps::MapsError),
    #[error(transparent)]
    Compile(#[from] crate::compile::CompileError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Lock(#[from] crate::state::dir::LockError),
    #[error(transparent)]
    Live(#[from] crate::live::sources::LiveError),
    #[error(transparent)]
    LivePorts(#[from] crate::live::ports::LivePortsError),
    #[error(transparent)]
    Syncookies(#[from] crate::kernel::syncookie_sysctl::SyncookiesError),
}

impl LifecycleError {
    /// Invalid input (exit 2: the policy, or a live `port` rule it contradicts) rather than
    /// an operational failure (exit 1) or a refused lock-out (exit 3,
    /// [`LifecycleError::Lockout`]).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            LifecycleError::Invalid(_) | LifecycleError::NotThePolicyInForce { .. } => true,
            LifecycleError::LivePorts(e) => e.is_invalid_input(),
            // The policy does not fit this machine (a limit below the CPU count).
            LifecycleError::Compile(crate::compile::CompileError::Policy(_)) => true,
            _ => false,
        }
    }
}

/// An error with its causes, for messages that must say what the kernel answered.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
