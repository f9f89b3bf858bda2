//! `mirror-xdp diff`: what applying the policy file would change against the policy in
//! force, without changing anything (the dry run of `nft -c` and `iptables-apply`).

use std::path::PathBuf;

use super::Failure;
use mirror_xdp::live::ports::LivePorts;
use mirror_xdp::policy::diff::diff;
use mirror_xdp::state::{Paths, in_force};

/// Show what `reload` would change: ports opened and closed, sources added and removed per
/// rule, settings and limits. Exit 0: no change; 1: changes; 2: an invalid policy, a policy
/// a reload would refuse, or nothing attached.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file to compare (default: the file of the policy in force).
    #[arg(long)]
    pub policy: Option<PathBuf>,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    // As diff(1): 1 means "differs", so every trouble is 2.
    let record = super::stats::attached(paths).map_err(|f| Failure::invalid(f.message))?;
    let path = args.policy.unwrap_or_else(|| record.policy.path.clone());
    // Both with the live `port` rules merged in, as a reload compares them; a file that a
    // live rule no longer fits is one a reload refuses.
    let live = LivePorts::load(paths).map_err(Failure::invalid)?;
    let old = in_force::policy(paths, &record)
        .map_err(Failure::invalid)?
        .with_live_ports(&live)
        .map_err(Failure::invalid)?;
    let new = super::load_policy(&path)?
        .with_live_ports(&live)
        .map_err(|e| Failure::invalid(format!("a reload would refuse it: {e}")))?;
    println!(
        "policy in force: generation {} of {}",
        record.policy.generation,
        record.policy.path.display()
    );
    println!("compared with:   {}", path.display());
    let changes = diff(&old, &new);
    if changes.is_empty() {
        println!("no change");
        return Ok(());
    }
    for change in &changes {
        println!("{change}");
    }
    Err(Failure {
        code: super::EXIT_OPERATIONAL,
        message: format!(
            "{} change(s); `mirror-xdp reload` applies them",
            changes.len()
        ),
    })
}
