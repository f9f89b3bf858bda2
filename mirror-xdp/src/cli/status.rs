//! `mirror-xdp status`: what is attached where, with which policy.

use super::Failure;
use mirror_xdp::build_info::EBPF_OBJECT_SHA256;
use mirror_xdp::observe::memory::{self, MapMemory};
use mirror_xdp::state::{EgressHook, Paths, Record, in_force};

/// Show the interfaces, attach modes, egress hooks, program id, policy path and generation,
/// the eBPF object of the build whose programs are in force, and the kernel memory its maps
/// hold.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let record = super::stats::attached(paths)?;
    let maps = memory::pinned_maps(&paths.bpffs);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status_json(&record, &maps)).expect("json")
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
    println!("kernel memory: {}", memory_line(&maps));
    Ok(())
}

/// The total and the three largest maps.
fn memory_line(maps: &[MapMemory]) -> String {
    let total: u64 = maps.iter().map(|m| m.bytes).sum();
    let mut largest: Vec<&MapMemory> = maps.iter().collect();
    largest.sort_by_key(|m| std::cmp::Reverse(m.bytes));
    let named: Vec<String> = largest
        .iter()
        .take(3)
        .map(|m| format!("{} {}", m.pin.display(), memory::mib(m.bytes)))
        .collect();
    format!(
        "{} in {} maps (largest: {})",
        memory::mib(total),
        maps.len(),
        named.join(", ")
    )
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

fn status_json(record: &Record, maps: &[MapMemory]) -> serde_json::Value {
    let map_list: Vec<_> = maps
        .iter()
        .map(|m| serde_json::json!({"pin": m.pin, "bytes": m.bytes}))
        .collect();
    serde_json::json!({
        "kernel": kernel_release(),
        "mode": record.mode,
        "ebpf_object": record.ebpf_object.as_ref().map(|h| format!("sha256:{h}")),
        "interfaces": record.interfaces,
        "policy": record.policy,
        "kernel_memory": {
            "bytes": maps.iter().map(|m| m.bytes).sum::<u64>(),
            "maps": map_list,
        },
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

    #[test]
    fn the_memory_line_sums_and_names_the_largest() {
        let map = |pin: &str, bytes| MapMemory {
            pin: pin.into(),
            bytes,
        };
        let maps = [
            map("mx_stats_v1", 1 << 10),
            map("mx_limits_v1", 7 << 20),
            map("gen-1/mx_ports_v1", 1 << 20),
            map("mx_flows_v1", 7 << 19),
        ];
        assert_eq!(
            memory_line(&maps),
            "11.5 MiB in 4 maps (largest: mx_limits_v1 7.0 MiB, mx_flows_v1 3.5 MiB, \
             gen-1/mx_ports_v1 1.0 MiB)"
        );
    }
}
