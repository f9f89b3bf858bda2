//! The `mirror-xdp` command: parse arguments, run the subcommand, exit with the contract's
//! code (0 success, 1 operational failure, 2 invalid input).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
