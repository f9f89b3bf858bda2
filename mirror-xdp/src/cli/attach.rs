//! `mirror-xdp attach`: load the enforcer, attach it to interfaces and pin it.

use std::path::PathBuf;

use super::{Failure, load_policy};
use mirror_xdp::{
    lifecycle::lockout,
    lifecycle::{self, AttachMode, EgressChoice},
    state::Paths,
};

/// Load the enforcer with a policy, attach it to interfaces and pin it: protection stays in
/// force after this command returns. With an enforcer attached already, add the interfaces
/// to it (same generation, same maps; the policy must be the one in force): the interfaces
/// attached before never stop enforcing.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface to protect (repeat for several).
    #[arg(long = "iface", required = true, value_parser = iface_name)]
    pub ifaces: Vec<String>,
    /// The policy file (TOML).
    #[arg(long)]
    pub policy: PathBuf,
    /// XDP attach mode: `auto` tries native and falls back to skb.
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: AttachMode,
    /// Egress program hook: `auto` tries TCX (Linux 6.6+) and falls back to a tc clsact
    /// filter; `attach` says which each interface got, and why.
    #[arg(long, value_enum, default_value = "auto")]
    pub egress_hook: EgressChoice,
    /// Sources the per-source limits track at once (an LRU table; each entry costs about
    /// 100 bytes).
    #[arg(long, default_value_t = mirror_xdp_common::capacity::LIMITS, value_parser = clap::value_parser!(u32).range(1024..))]
    pub limiter_entries: u32,
    /// Attach even if the policy would drop the current SSH session or established inbound
    /// connections (they are printed as warnings).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let policy = load_policy(&args.policy)?;
    lockout::refuse_lockout(&policy, paths, args.force, &mut |msg| eprintln!("{msg}"))
        .map_err(Failure::lockout)?;
    let sizes = lifecycle::Sizes {
        limiter_entries: args.limiter_entries,
    };
    let record = lifecycle::attach(
        paths,
        &args.ifaces,
        &policy,
        args.xdp_mode,
        args.egress_hook,
        sizes,
        &mut |msg| eprintln!("{msg}"),
    )
    .map_err(|e| match e.is_invalid_input() {
        // A live `port` rule that the policy contradicts is bad input, not a failure.
        true => Failure::invalid(e),
        false => Failure::operational(e),
    })?;
    let before = record.interfaces.len() - args.ifaces.len();
    for i in record
        .interfaces
        .iter()
        .filter(|i| args.ifaces.contains(&i.name))
    {
        println!(
            "attached to {} ({} mode, program {}, egress {}), policy {} in {} mode",
            i.name,
            i.xdp_mode,
            i.prog_id,
            i.egress.name(),
            record.policy.path.display(),
            record.mode
        );
    }
    if before > 0 {
        println!(
            "added to the enforcer in force (generation {}): it protects {}",
            record.policy.generation,
            record.interface_names()
        );
    }
    Ok(())
}

/// An interface name the kernel could hold (IFNAMSIZ, no '/', no whitespace): anything else
/// is a typo to report as invalid input, not an interface to look for.
pub(super) fn iface_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    match valid {
        true => Ok(name.to_string()),
        false => Err(format!(
            "'{name}' is not an interface name (1-{} characters, no '/', ':' or spaces)",
            libc::IFNAMSIZ - 1
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::iface_name;

    #[test]
    fn interface_names_the_kernel_could_hold() {
        for good in ["eth0", "enp3s0f1", "mxs0", "veth-a.100", "a234567890abcde"] {
            assert_eq!(iface_name(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "eth0:1",
            "eth 0",
            "a234567890abcdef",
            "e\tth",
        ] {
            assert!(iface_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
