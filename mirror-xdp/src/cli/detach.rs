//! `mirror-xdp detach`: remove the enforcer from one interface or all.

use super::Failure;
use mirror_xdp::{lifecycle, state::Paths};

/// Detach the enforcer; without --iface from every interface (and remove its pins).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this interface.
    #[arg(long, value_parser = super::attach::iface_name)]
    pub iface: Option<String>,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let detached = lifecycle::detach(paths, args.iface.as_deref(), &mut |note| {
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
