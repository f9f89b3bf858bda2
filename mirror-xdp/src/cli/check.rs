//! `mirror-xdp check`: validate a policy without touching the enforcer.

use std::path::PathBuf;

use super::{Failure, load_policy};
use mirror_xdp::compile::{compile, possible_cpus};

/// Validate a policy file: syntax, addresses, sets, set files, rule conflicts.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file (TOML).
    #[arg(long)]
    pub policy: PathBuf,
}

pub fn run(args: Args) -> Result<(), Failure> {
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
    Ok(())
}
