//! `mirror-xdp reload`: re-read the policy of the attached enforcer and swap it in
//! atomically; an invalid policy changes nothing.

use std::path::PathBuf;

use super::Failure;
use mirror_xdp::{lifecycle, policy::diff, state::Paths};

/// Re-read the policy and apply it atomically (no packet meets half a policy). An invalid
/// policy changes nothing and says where the problem is.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Switch to this policy file instead of re-reading the current one.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Apply it even if it would cut the current admin session or established connections.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let done = lifecycle::reload(paths, args.policy.as_deref(), args.force, &mut |msg| {
        eprintln!("{msg}")
    })
    .map_err(|e| match e {
        lifecycle::LifecycleError::Lockout(refused) => Failure::lockout(refused),
        e if e.is_invalid_input() => {
            Failure::invalid(format!("{e}\nthe policy in force is unchanged"))
        }
        e => Failure::operational(e),
    })?;
    println!(
        "reloaded {} (generation {}) in {} ms",
        done.record.policy.path.display(),
        done.record.policy.generation,
        done.elapsed.as_millis()
    );
    for line in diff::summary(done.changes.as_deref()) {
        println!("{line}");
    }
    Ok(())
}
