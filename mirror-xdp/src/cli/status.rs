//! `mirror-xdp status`: what is attached where, with which policy.

use super::Failure;
use mirror_xdp::state::{Paths, Record};

/// Show the interfaces, attach modes, program id, policy path and generation.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let record = super::stats::attached(paths)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status_json(&record)).expect("json")
        );
        return Ok(());
    }
    println!("mode: {}", record.mode);
    println!(
        "policy: {} (generation {})",
        record.policy.path.display(),
        record.policy.generation
    );
    for i in &record.interfaces {
        println!(
            "interface {}: {} mode, program {}",
            i.name, i.xdp_mode, i.prog_id
        );
    }
    Ok(())
}

fn status_json(record: &Record) -> serde_json::Value {
    serde_json::json!({
        "mode": record.mode,
        "interfaces": record.interfaces,
        "policy": record.policy,
    })
}
