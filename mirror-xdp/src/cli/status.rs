//! `mirror-xdp status`: what is attached where, with which policy.

use super::Failure;
use mirror_xdp::build_info::EBPF_OBJECT_SHA256;
use mirror_xdp::state::{EgressHook, Paths, Record, in_force};

/// Show the interfaces, attach modes, egress hooks, program id, policy path and generation,
/// and the eBPF object of the build whose programs are in force.
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
        "eBPF object: {}",
        object_line(record.ebpf_object.as_deref())
    );
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

/// The attached build's object hash, and whether it is this binary's (an upgrade takes
/// effect at the next reload or attach).
fn object_line(attached: Option<&str>) -> String {
    match attached {
        Some(hash) if hash == EBPF_OBJECT_SHA256 => format!("sha256:{hash} (this binary's)"),
        Some(hash) => format!(
            "sha256:{hash} (another build; this binary's is sha256:{EBPF_OBJECT_SHA256}, \
             in force after the next reload)"
        ),
        None => "unknown (attached by a build that did not record it; the next reload records it)"
            .into(),
    }
}

fn status_json(record: &Record) -> serde_json::Value {
    serde_json::json!({
        "kernel": kernel_release(),
        "mode": record.mode,
        "ebpf_object": record.ebpf_object.as_ref().map(|h| format!("sha256:{h}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_line_tells_this_build_from_another() {
        assert!(object_line(Some(EBPF_OBJECT_SHA256)).ends_with("(this binary's)"));
        let other = object_line(Some("00"));
        assert!(other.starts_with("sha256:00 (another build"), "{other}");
        assert!(object_line(None).starts_with("unknown"));
    }
}
