//! The command line (README, "Command line"): one file per subcommand, clap derive with
//! the doc comments as help text, and the exit codes of the contract.

mod attach;
mod audit;
mod check;
mod detach;
mod diff;
mod explain;
mod generate_docs;
mod import;
mod port;
mod protocol;
mod reload;
mod run;
mod source;
mod stats;
mod status;
mod table;
mod trace;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mirror_xdp::state::{DEFAULT_BPFFS_DIR, DEFAULT_STATE_DIR, Paths};

/// XDP port-whitelist firewall for mirror servers.
#[derive(Debug, Parser)]
#[command(name = "mirror-xdp", version, long_version = mirror_xdp::build_info::LONG_VERSION, about)]
pub struct Cli {
    /// Folder on bpffs for the pinned maps and links.
    #[arg(long, global = true, env = "MIRROR_XDP_BPFFS", default_value = DEFAULT_BPFFS_DIR)]
    pub bpffs: PathBuf,
    /// Folder of the state file.
    #[arg(long, global = true, env = "MIRROR_XDP_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Attach(attach::Args),
    Audit(audit::Args),
    Check(check::Args),
    Detach(detach::Args),
    Diff(diff::Args),
    Explain(explain::Args),
    Import(import::Args),
    Port(port::Args),
    Protocol(protocol::Args),
    Reload(reload::Args),
    Run(run::Args),
    Source(source::Args),
    Status(status::Args),
    Stats(stats::Args),
    Trace(trace::Args),
    /// Write the man pages and shell completions (for `cargo xtask man` and packagers).
    #[command(hide = true)]
    GenerateDocs(generate_docs::Args),
}

/// A failure with the exit code the contract gives it.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

/// Exit codes (README, "Command line").
pub const EXIT_OPERATIONAL: u8 = 1;
pub const EXIT_INVALID_INPUT: u8 = 2;
/// Refused: the policy would lock out the admin's session or established connections.
pub const EXIT_LOCKOUT: u8 = 3;

impl Failure {
    pub fn operational(e: impl std::fmt::Display) -> Failure {
        Failure {
            code: EXIT_OPERATIONAL,
            message: e.to_string(),
        }
    }

    /// Invalid input (exit 2) when `invalid`, else an operational failure (exit 1).
    pub fn input_or_operational(invalid: bool, e: impl std::fmt::Display) -> Failure {
        if invalid {
            Failure::invalid(e)
        } else {
            Failure::operational(e)
        }
    }

    pub fn invalid(e: impl std::fmt::Display) -> Failure {
        Failure {
            code: EXIT_INVALID_INPUT,
            message: e.to_string(),
        }
    }

    pub fn lockout(e: impl std::fmt::Display) -> Failure {
        Failure {
            code: EXIT_LOCKOUT,
            message: e.to_string(),
        }
    }
}

impl Cli {
    pub fn paths(&self) -> Paths {
        Paths {
            bpffs: self.bpffs.clone(),
            state_dir: self.state_dir.clone(),
        }
    }

    pub fn run(self) -> Result<(), Failure> {
        let paths = self.paths();
        match self.command {
            Command::Check(args) => check::run(args, &paths),
            Command::GenerateDocs(args) => generate_docs::run(args),
            Command::Import(args) => import::run(args),
            Command::Explain(args) => require_root().and_then(|()| explain::run(args, &paths)),
            Command::Attach(args) => {
                require_root()?;
                attach::run(args, &paths)
            }
            Command::Audit(args) => require_root().and_then(|()| audit::run(args, &paths)),
            Command::Detach(args) => {
                require_root()?;
                detach::run(args, &paths)
            }
            Command::Diff(args) => {
                require_root()?;
                diff::run(args, &paths)
            }
            Command::Port(args) => {
                require_root()?;
                port::run(args, &paths)
            }
            Command::Protocol(args) => require_root().and_then(|()| protocol::run(args, &paths)),
            Command::Reload(args) => {
                require_root()?;
                reload::run(args, &paths)
            }
            Command::Run(args) => {
                require_root()?;
                run::run(args, &paths)
            }
            Command::Source(args) => {
                require_root()?;
                source::run(args, &paths)
            }
            Command::Status(args) => {
                require_root()?;
                status::run(args, &paths)
            }
            Command::Stats(args) => {
                require_root()?;
                stats::run(args, &paths)
            }
            Command::Trace(args) => require_root().and_then(|()| trace::run(args, &paths)),
        }
    }
}

/// The BPF syscalls need CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON; say so plainly instead
/// of EPERM.
fn require_root() -> Result<(), Failure> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    require_uid_0(unsafe { libc::geteuid() })
}

/// The message goes out after the program's name (`mirror-xdp: needs root ...`).
fn require_uid_0(euid: libc::uid_t) -> Result<(), Failure> {
    match euid {
        0 => Ok(()),
        _ => Err(Failure::operational(
            "needs root (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON); run it with sudo",
        )),
    }
}

/// Reads and validates a policy; a rejection is invalid input (exit 2).
fn load_policy(path: &std::path::Path) -> Result<mirror_xdp::policy::Policy, Failure> {
    mirror_xdp::policy::Policy::load(path).map_err(Failure::invalid)
}

/// The policy files on disk that differ from the texts the policy in force was compiled
/// from, as a note for commands that show that policy; `None` when they are the same.
fn changed_on_disk(files: &mirror_xdp::policy::PolicyFiles) -> Option<String> {
    let changed: Vec<String> = files
        .changed_on_disk()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    (!changed.is_empty()).then(|| {
        format!(
            "{} changed on disk since it was applied: commands use the policy in force; \
             `mirror-xdp diff` shows what a reload would change",
            changed.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_root_is_refused_naming_every_capability() {
        assert!(require_uid_0(0).is_ok());
        let refused = require_uid_0(1000).expect_err("uid 1000 is not root");
        assert_eq!(refused.code, EXIT_OPERATIONAL);
        assert_eq!(
            refused.message,
            "needs root (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON); run it with sudo"
        );
    }
}
