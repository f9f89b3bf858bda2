//! `mirror-xdp check`: validate a policy and check it against this host's live sessions,
//! without touching the enforcer.

use std::path::PathBuf;

use super::{Failure, load_policy};
use mirror_xdp::{
    compile::{compile, possible_cpus},
    lifecycle::lockout,
    state::Paths,
};

/// Validate a policy file (syntax, addresses, sets, set files, rule conflicts) and check
/// that it would not drop the current SSH session or this host's established inbound
/// connections.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (TOML).
    #[arg(long)]
    pub policy: PathBuf,
    /// Report a lock-out as warnings and exit 0.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let policy = load_policy(&args.policy)?;
    let image = compile(&policy, possible_cpus()).map_err(Failure::invalid)?;
    println!(
        "{}: valid ({} mode; {} rule(s), {} port slot(s); {} trusted and {} denied prefix(es))",
        args.policy.display(),
        policy.settings.mode.name(),
        policy.rules.len(),
        image.ports.len(),
        policy.allow.len(),
        policy.deny.len(),
    );
    for warning in policy.egress.warnings() {
        eprintln!("warning: {warning}");
    }
    lockout::refuse_lockout(&policy, paths, args.force, &mut |msg| eprintln!("{msg}"))
        .map_err(Failure::lockout)
}
