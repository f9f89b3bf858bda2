//! The `mirror-xdp` command: parse arguments, run the subcommand, exit with the contract's
//! code (0 success, 1 operational failure, 2 invalid input).

mod cli;

// Cargo gives the binary the library's dependencies too; the CLI reaches them through it.
use aya as _;
use aya_obj as _;
use inotify as _;
use memchr as _;
use netlink_packet_core as _;
use netlink_packet_route as _;
use netlink_sys as _;
use nix as _;
#[cfg(test)]
use tempfile as _;
use thiserror as _;
use tokio as _;
use toml as _;
use ureq as _;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `mirror-xdp stats | head` should end quietly, as other tools do, not panic on EPIPE.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // clap exits with 2 on usage errors by itself.
    let cli = cli::Cli::parse();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mirror-xdp: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
