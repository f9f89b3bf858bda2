//! `mirror-xdp stats`: the counters per reason and per port.

use super::Failure;
use mirror_xdp::{
    maps::Maps,
    state::{Paths, Record},
    stats::Stats,
};

/// Show packet and byte counters per verdict reason and per rule port.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output (SPEC section 4).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let record = attached(paths)?;
    let maps = Maps::open_pinned(&paths.bpffs).map_err(Failure::operational)?;
    let stats = Stats::read(&maps, &record).map_err(Failure::operational)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats).expect("json"));
    } else {
        print!("{}", stats.table());
    }
    Ok(())
}

/// The record of the attached enforcer; "nothing attached" is an operational failure.
pub fn attached(paths: &Paths) -> Result<Record, Failure> {
    Record::load(paths)
        .map_err(Failure::operational)?
        .ok_or_else(|| {
            Failure::operational(format!(
                "nothing is attached (no state in {}); run `mirror-xdp attach` first",
                paths.state_dir.display()
            ))
        })
}
