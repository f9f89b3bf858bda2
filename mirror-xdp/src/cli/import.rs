//! `mirror-xdp import`: another firewall's rule set written out as a policy.

use std::path::PathBuf;

use super::{EXIT_OPERATIONAL, Failure};
use mirror_xdp::import::{Format, import};

/// Print a policy equivalent to an iptables rule set (`iptables-save` and
/// `ip6tables-save` output, with `ipset save` output for the sets it names) or ufw's
/// (/etc/ufw/user.rules and user6.rules, one after the other, or `ufw show added`) or
/// nftables' (`nft list ruleset` output). Every rule the policy cannot express is reported
/// on stderr as FILE:LINE: message; exit 0: all translated, 1: some rules not translated,
/// 2: unreadable input.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The firewall the rule set comes from.
    #[arg(value_enum)]
    pub from: From,
    /// The rule set; `-` or none: standard input.
    pub file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum From {
    Iptables,
    Ufw,
    Nft,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let (name, text) = match args.file.as_deref() {
        None => ("-".to_string(), read_stdin()?),
        Some(p) if p.as_os_str() == "-" => ("-".to_string(), read_stdin()?),
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p)
                .map_err(|e| Failure::invalid(format!("{}: {e}", p.display())))?,
        ),
    };
    let format = match args.from {
        From::Iptables => Format::Iptables,
        From::Ufw => Format::Ufw,
        From::Nft => Format::Nft,
    };
    let imported = import(format, &text, &name);
    print!("{}", imported.policy);
    for p in &imported.problems {
        eprintln!("{name}:{}: {}", p.line, p.message);
    }
    if imported.problems.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: EXIT_OPERATIONAL,
            message: format!(
                "{} rule(s) not translated exactly: each line above says what the policy \
                 does instead",
                imported.problems.len()
            ),
        })
    }
}

fn read_stdin() -> Result<String, Failure> {
    std::io::read_to_string(std::io::stdin())
        .map_err(|e| Failure::invalid(format!("standard input: {e}")))
}
