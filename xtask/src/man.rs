//! `cargo xtask man`: regenerates the committed man pages (docs/man) and shell completions
//! (deploy/completions) from the CLI definition and the README's policy reference, through
//! the binary's hidden `generate-docs` subcommand. tests/tests/deploy_host.rs fails when the committed copies are out of date.

use std::process::Command;

use anyhow::{Context, Result};

use crate::{cargo, release_dir, repo_root, run_step};

pub fn run() -> Result<()> {
    run_step(cargo().args(["build", "--release", "-p", "mirror-xdp"])).context(
        "man: building the CLI failed (the eBPF build needs nightly and bpf-linker: \
         `cargo xtask setup` installs them)",
    )?;
    let root = repo_root();
    let man = root.join("docs/man");
    let completions = root.join("deploy/completions");
    // The generator writes one page per subcommand: remove the old pages first, so the page
    // of a subcommand that no longer exists goes too.
    if man.is_dir() {
        for entry in
            std::fs::read_dir(&man).with_context(|| format!("reading {}", man.display()))?
        {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("mirror-xdp") && (name.ends_with(".1") || name.ends_with(".5")) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    run_step(
        Command::new(release_dir().join("mirror-xdp"))
            .arg("generate-docs")
            .arg("--man")
            .arg(&man)
            .arg("--completions")
            .arg(&completions),
    )?;
    println!("man: commit docs/man and deploy/completions with the CLI change");
    Ok(())
}
