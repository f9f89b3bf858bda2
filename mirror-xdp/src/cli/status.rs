//! `mirror-xdp status`: what is attached where, with which policy.

use super::Failure;
use mirror_xdp::state::{EgressHook, Paths, Record, in_force};

/// Show the interfaces, attach modes, egress hooks, program id, policy path and generation.
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
    println!("kernel: {}", kernel_release());
    println!("mode: {}", record.mode);
    println!(
        "policy: {} (generation {})",
        record.policy.path.display(),
        record.policy.generation
    );
    match in_force::files(paths, &record) {
        Ok(files) => {
            if let Some(note) = super::changed_on_disk(&files) {
                println!("  {note}");
            }
        }
        Err(e) => println!("  {e}"),
    }
    for i in &record.interfaces {
        let egress = match &i.egress {
            EgressHook::Tcx => "TCX link".to_string(),
            EgressHook::Tc(f) => format!(
                "tc clsact filter pref {} handle {:#x}",
                f.priority, f.handle
            ),
        };
        println!(
            "interface {}: {} mode, program {}, egress: {egress}",
            i.name, i.xdp_mode, i.prog_id
        );
    }
    Ok(())
}

fn status_json(record: &Record) -> serde_json::Value {
    serde_json::json!({
        "kernel": kernel_release(),
        "mode": record.mode,
        "interfaces": record.interfaces,
        "policy": record.policy,
    })
}

/// `uname -r`.
fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}
