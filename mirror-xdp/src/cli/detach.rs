//! `mirror-xdp detach`: remove the enforcer from one interface or all.

use super::Failure;
use mirror_xdp::{enforcer, state::Paths};

/// Detach the enforcer; without --iface from every interface (and remove its pins).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this interface.
    #[arg(long)]
    pub iface: Option<String>,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let detached = enforcer::detach(paths, args.iface.as_deref(), &mut |note| {
        eprintln!("{note}")
    })
    .map_err(Failure::operational)?;
    match detached.is_empty() {
        // Only what an unfinished attach or detach left was there (the note said what).
        true => println!("nothing is attached any more"),
        false => println!("detached from {}", detached.join(", ")),
    }
    Ok(())
}
