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

mod policy_page;

/// The name the pages and completions are written for.
const BIN: &str = "mirror-xdp";

/// The policy format's page, section 5.
const POLICY_PAGE: &str = "mirror-xdp.toml";

/// Shells that get a completion script.
const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Write man pages and shell completions generated from the command line definition.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for the man pages: mirror-xdp.1, one page per subcommand and mirror-xdp.toml.5.
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
/// (`mirror-xdp-source-deny.1`), and the policy format's (`mirror-xdp.toml.5`); returns how
/// many.
fn write_man_pages(dir: &Path) -> io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let root = command();
    let mut count = 0;
    write_page(&root, None, dir, &mut count)?;
    let policy = policy_page::render(env!("CARGO_PKG_VERSION"))?;
    std::fs::write(dir.join(format!("{POLICY_PAGE}.5")), policy)?;
    Ok(count + 1)
}

fn write_page(
    cmd: &clap::Command,
    parent: Option<&str>,
    dir: &Path,
    count: &mut usize,
) -> io::Result<()> {
    let man = man(cmd);
    let name = man.get_filename();
    let page_name = name.trim_end_matches(".1").to_string();
    std::fs::write(dir.join(&name), render_page(cmd, parent)?)?;
    *count += 1;

    let subcommands = cmd.get_subcommands().filter(|s| !s.is_hide_set());
    for sub in subcommands {
        write_page(sub, Some(&page_name), dir, count)?;
    }
    Ok(())
}

fn man(cmd: &clap::Command) -> Man {
    let version = env!("CARGO_PKG_VERSION");
    // No date: the pages are committed and must come out byte for byte the same every time.
    Man::new(cmd.clone())
        .source(format!("{BIN} {version}"))
        .manual("mirror-xdp manual")
}

/// The page of `cmd`, a subcommand of `parent` (`None`: the top page).
fn render_page(cmd: &clap::Command, parent: Option<&str>) -> io::Result<Vec<u8>> {
    let man = man(cmd);
    let page_name = man.get_filename().trim_end_matches(".1").to_string();
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    if parent.is_none() {
        // clap's description of the top command is its NAME line again.
        let mut description = Roff::new();
        root_description(&mut description);
        description.to_writer(&mut out)?;
    } else {
        man.render_description_section(&mut out)?;
    }
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
    Ok(out)
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
    for (path, meaning) in FILES {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(meaning)]);
    }
}

/// What the top page's DESCRIPTION says: what the program does and how the commands fit.
fn root_description(roff: &mut Roff) {
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([
        roman(
            "mirror-xdp enforces a port whitelist with per-port source restrictions in an XDP \
         program, before the kernel's network stack sees a packet, and counts every verdict \
         by reason and by port. The policy is a TOML file, described in ",
        ),
        bold("mirror-xdp.toml"),
        roman("(5)."),
    ]);
    roff.control("PP", []);
    roff.text([
        bold("check"),
        roman(" validates a policy. "),
        bold("attach"),
        roman(
            " loads it, attaches to the interfaces and pins it all on bpffs: protection stays \
             in force after the command returns. ",
        ),
        bold("reload"),
        roman(" swaps in an edited policy atomically, "),
        bold("run"),
        roman(" is a daemon that does so whenever the file changes, and "),
        bold("detach"),
        roman(" removes it all. "),
        bold("source"),
        roman(" and "),
        bold("port"),
        roman(" change sources and ports at once, without a reload; "),
        bold("status"),
        roman(", "),
        bold("stats"),
        roman(" and "),
        bold("audit"),
        roman(" show what is attached and what it does."),
    ]);
    roff.control("PP", []);
    roff.text([roman(
        "mirror-xdp needs root (CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON). A \
         policy that would cut off the current SSH session or the host's established \
         inbound connections is refused (exit 3) unless --force is given.",
    )]);
}

/// Every file the program reads by convention or writes (the state folder's names are the
/// constants of `state`, `live` and `lifecycle::pending`; a test checks they are all here).
const FILES: [(&str, &str); 10] = [
    (
        "/etc/mirror-xdp/policy.toml",
        "The policy, by convention (every command takes --policy); its format is \
         mirror-xdp.toml(5).",
    ),
    (
        "/var/lib/mirror-xdp",
        "The state folder (--state-dir), mode 0700. Its files are replaced atomically, \
         through a NAME.tmp beside them.",
    ),
    (
        "/var/lib/mirror-xdp/state.json",
        "What is attached: the interfaces and their hooks, the policy, the generation in \
         force. detach removes it last.",
    ),
    (
        "/var/lib/mirror-xdp/policy-in-force.json",
        "The policy files the generation in force was compiled from.",
    ),
    (
        "/var/lib/mirror-xdp/policy-sources.json",
        "The sources.allow and sources.deny lists of the policy in force, for the source \
         command (an address the policy lists is no live entry).",
    ),
    (
        "/var/lib/mirror-xdp/live-sources.json",
        "The live source entries (mirror-xdp-source(1)); every attach puts them back.",
    ),
    (
        "/var/lib/mirror-xdp/live-ports.json",
        "The live port rules (mirror-xdp-port(1)), compiled with every policy.",
    ),
    (
        "/var/lib/mirror-xdp/live-sources.lock",
        "The command lock: attach, reload, detach, run, source, port and the recovery of a \
         killed command take it, one at a time.",
    ),
    (
        "/var/lib/mirror-xdp/pending/",
        "An attach or reload under way: the state files as they will be once it is done. A \
         killed command leaves it behind; the next command finishes or undoes its work and \
         removes it.",
    ),
    (
        "/sys/fs/bpf/mirror-xdp",
        "The pin folder (--bpffs): the shared maps (mx_*_vN), the policy generation in force \
         (gen-N/: its maps and programs), a reload under way (gen-N-new/), the next \
         generation verified ahead (spare-N-BUILD/) and the links that keep the programs \
         attached (link_xdp_IFACE, link_egress_IFACE). Removing it detaches everything.",
    ),
];

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
    let mut refs: Vec<(String, &str)> = refs.into_iter().map(|r| (r, "(1)")).collect();
    if parent.is_none() {
        refs.push((POLICY_PAGE.to_string(), "(5)"));
    }
    if refs.is_empty() {
        return;
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut inlines = Vec::new();
    for (i, (name, section)) in refs.iter().enumerate() {
        if i > 0 {
            inlines.push(roman(", "));
        }
        inlines.push(bold(name.as_str()));
        inlines.push(roman(*section));
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

#[cfg(test)]
mod tests {
    use mirror_xdp::{lifecycle, live, state};

    use super::*;

    fn main_page() -> String {
        String::from_utf8(render_page(&command(), None).unwrap()).unwrap()
    }

    /// The text of a section (`.SH NAME` up to the next `.SH`), roff's `\-` back to `-`.
    fn section(page: &str, name: &str) -> String {
        // roff quotes a title with spaces.
        let title = if name.contains(' ') {
            format!("\"{name}\"")
        } else {
            name.to_string()
        };
        let (_, rest) = page
            .split_once(&format!(".SH {title}\n"))
            .unwrap_or_else(|| panic!("no {name} section in {page}"));
        let body = rest.split("\n.SH ").next().unwrap_or_default();
        body.replace("\\-", "-")
    }

    #[test]
    fn the_main_description_does_not_repeat_the_name_line() {
        let page = main_page();
        let name = section(&page, "NAME");
        let (_, about) = name.lines().next().unwrap().split_once(" - ").unwrap();
        let description = section(&page, "DESCRIPTION");
        assert!(!description.contains(about), "{description}");
        assert!(description.contains("mirror-xdp.toml"), "{description}");
    }

    #[test]
    fn files_names_every_file_the_program_writes() {
        let files = section(&main_page(), "FILES");
        let paths = state::Paths {
            bpffs: state::DEFAULT_BPFFS_DIR.into(),
            state_dir: state::DEFAULT_STATE_DIR.into(),
        };
        let state_file = paths.state_file();
        for name in [
            state::DEFAULT_BPFFS_DIR,
            state::DEFAULT_STATE_DIR,
            state_file.file_name().unwrap().to_str().unwrap(),
            state::dir::LOCK_FILE,
            live::sources::LIVE_FILE,
            live::sources::POLICY_SOURCES_FILE,
            live::ports::FILE,
            lifecycle::pending::DIR,
            state::in_force::FILE,
        ] {
            assert!(files.contains(name), "FILES lacks {name}: {files}");
        }
    }

    #[test]
    fn the_main_page_refers_to_the_policy_page() {
        let see_also = section(&main_page(), "SEE ALSO");
        assert!(see_also.contains("mirror-xdp.toml\\fR(5)"), "{see_also}");
    }
}
