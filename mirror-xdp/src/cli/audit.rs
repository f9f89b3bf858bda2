//! `mirror-xdp audit`: evasive frames through the attached program, findings where the
//! verdict is not what the policy intends, and offload warnings.

use super::Failure;
use mirror_xdp::{observe::audit, state::Paths};

/// Run a corpus of evasive frames (VLAN/QinQ tags, IPv4 options, tiny and overlapping
/// fragments, IPv6 extension chains, bogus TCP offsets, NULL/FIN/Xmas scans, zero and
/// broadcast addresses, IPv4-mapped IPv6 sources, tunnels) through the attached program
/// with BPF test runs, and report every frame whose verdict differs from the live policy's
/// intent; warn about NIC offloads that hide headers from XDP. Exit 0: no findings; 1:
/// findings (or nothing attached, or an interface that is not attached).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this interface (default: every attached interface).
    #[arg(long)]
    pub iface: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    // An interface that is not attached is an operational failure, as nothing attached is.
    let report = audit::audit(paths, args.iface.as_deref()).map_err(Failure::operational)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json()).expect("json")
        );
    } else {
        print!("{}", report.table());
    }
    match report.findings() {
        0 => Ok(()),
        n => Err(Failure::operational(format!(
            "audit: {n} frame{} got a verdict the policy does not intend",
            if n == 1 { "" } else { "s" }
        ))),
    }
}
