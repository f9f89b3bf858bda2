//! `mirror-xdp run`: the enforcer as a foreground daemon (`mirror_xdp::daemon`).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::Failure;
use mirror_xdp::{
    daemon::{self, DaemonError, Options},
    lifecycle::{AttachMode, EgressChoice},
    state::Paths,
};

/// Attach (or adopt the enforcer attached already, without a gap) and stay in the
/// foreground: reload on policy file changes and SIGHUP, serve Prometheus metrics, log
/// sampled drops. SIGTERM stops the daemon, not the protection.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface to protect (repeat for several).
    #[arg(long = "iface", required = true, value_parser = super::attach::iface_name)]
    pub ifaces: Vec<String>,
    /// The policy file (TOML); its folder is watched for changes.
    #[arg(long)]
    pub policy: PathBuf,
    /// Address of the Prometheus endpoint (GET /metrics).
    #[arg(long, default_value = daemon::DEFAULT_METRICS)]
    pub metrics: SocketAddr,
    /// XDP attach mode for a new attachment: `auto` tries native and falls back to skb.
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: AttachMode,
    /// Egress hook for a new attachment: `auto` tries TCX and falls back to a tc clsact
    /// filter.
    #[arg(long, value_enum, default_value = "auto")]
    pub egress_hook: EgressChoice,
    /// Apply a policy even if it would drop the current SSH session or established inbound
    /// connections (they are logged as warnings).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args, paths: &Paths) -> Result<(), Failure> {
    let opts = Options {
        ifaces: args.ifaces,
        policy: args.policy,
        metrics: args.metrics,
        xdp_mode: args.xdp_mode,
        egress_hook: args.egress_hook,
        force: args.force,
    };
    daemon::run(paths.clone(), opts).map_err(|e| match e {
        DaemonError::Invalid(m) => Failure::invalid(m),
        DaemonError::Lockout(e) => Failure::lockout(e),
        DaemonError::Operational(m) => Failure::operational(m),
    })
}
