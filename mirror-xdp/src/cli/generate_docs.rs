//! `mirror-xdp generate-docs` (hidden): writes the man pages and the shell completions from this
//! very clap definition, so they cannot drift from the command line. `cargo xtask man` runs it
//! to refresh the committed copies (docs/man, deploy/completions); packagers may run it too.

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use super::{Cli, Failure};

/// The name the pages and completions are written for.
const BIN: &str = "mirror-xdp";

/// Shells that get a completion script.
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Write man pages and shell completions generated from the command line definition.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the man pages: mirror-xdp.1 and one page per subcommand.
    #[arg(long, value_name = "DIR")]
    pub man: PathBuf,
    /// Folder for the bash, zsh and fish completion scripts.
    #[arg(long, value_name = "DIR")]
    pub completions: PathBuf,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let written = write_man_pages(&args.man)
        .map_err(|e| Failure::operational(format!("man pages in {}: {e}", args.man.display())))?;
    let completions = write_completions(&args.completions).map_err(|e| {
        Failure::operational(format!(
            "completions in {}: {e}",
            args.completions.display()
        ))
    })?;
    println!(
        "wrote {written} man pages to {} and {completions} completion scripts to {}",
        args.man.display(),
        args.completions.display()
    );
    Ok(())
}

/// The command as the pages and scripts describe it: without hidden subcommands (this one;
/// clap_complete would offer them) and the `help` subcommand (every page lists `--help`),
/// built so that subcommands carry the global options and their full names.
fn command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new(BIN)
        .about(full.get_about().cloned().unwrap_or_default())
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
        .subcommand_required(true)
        .disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// One page for the command and one for every visible subcommand at any depth
/// (`mirror-xdp-source-deny.1`); returns how many.
fn write_man_pages(dir: &Path) -> io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let root = command();
    let mut count = 0;
    write_page(&root, None, dir, &mut count)?;
    Ok(count)
}

fn write_page(
    cmd: &clap::Command,
    parent: Option<&str>,
    dir: &Path,
    count: &mut usize,
) -> io::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    // No date: the pages are committed and must come out byte for byte the same every time.
    let man = Man::new(cmd.clone())
        .source(format!("{BIN} {version}"))
        .manual("mirror-xdp manual");
    let name = man.get_filename();
    let page_name = name.trim_end_matches(".1").to_string();

    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    let subcommands: Vec<&clap::Command> =
        cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();
    if !subcommands.is_empty() {
        man.render_subcommands_section(&mut out)?;
    }
    let mut extra = Roff::new();
    if parent.is_none() {
        root_sections(&mut extra);
    }
    see_also(&mut extra, parent, &page_name, &subcommands);
    extra.to_writer(&mut out)?;
    if parent.is_none() {
        man.render_version_section(&mut out)?;
    }
    std::fs::write(dir.join(&name), out)?;
    *count += 1;

    for sub in subcommands {
        write_page(sub, Some(&page_name), dir, count)?;
    }
    Ok(())
}

/// What the top page says beyond the options: exit codes (README "Command line") and files.
fn root_sections(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        ("0", "Success."),
        (
            "1",
            "Operational failure: not root, attach failed, nothing attached, an interface that \
             is not attached.",
        ),
        (
            "2",
            "Invalid input: usage, an invalid policy, a bad address.",
        ),
        (
            "3",
            "Refused: the policy would lock out the current admin session.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(code)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["FILES"]);
    for (path, meaning) in [
        (
            "/etc/mirror-xdp/policy.toml",
            "The policy, by convention (every command takes --policy).",
        ),
        (
            "/sys/fs/bpf/mirror-xdp",
            "Pinned programs, maps and links of the attached enforcer (--bpffs).",
        ),
        (
            "/var/lib/mirror-xdp",
            "state.json (what is attached) and live-sources.json (--state-dir).",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(meaning)]);
    }
}

/// Cross references: the parent page, the subcommands' pages, and the top page.
fn see_also(roff: &mut Roff, parent: Option<&str>, page: &str, subcommands: &[&clap::Command]) {
    let mut refs: Vec<String> = Vec::new();
    if let Some(parent) = parent {
        refs.push(parent.to_string());
    }
    for sub in subcommands {
        refs.push(format!("{page}-{}", sub.get_name()));
    }
    if parent.is_some_and(|p| p != BIN) {
        refs.push(BIN.to_string());
    }
    if refs.is_empty() {
        return;
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut inlines = Vec::new();
    for (i, name) in refs.iter().enumerate() {
        if i > 0 {
            inlines.push(roman(", "));
        }
        inlines.push(bold(name.as_str()));
        inlines.push(roman("(1)"));
    }
    roff.text(inlines);
}

/// `mirror-xdp.bash`, `_mirror-xdp` and `mirror-xdp.fish`; returns how many.
fn write_completions(dir: &Path) -> io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    for shell in SHELLS {
        let mut cmd = command();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, BIN, &mut out);
        std::fs::write(
            dir.join(clap_complete::Generator::file_name(&shell, BIN)),
            out,
        )?;
    }
    Ok(SHELLS.len())
}
