//! The .deb: stages what the package holds beyond the repository's own files in
//! target/package/staging (the unit with the package's binary path, the monitor-mode
//! policy, compressed man pages), then cargo-deb builds it from the metadata in
//! mirror-xdp/Cargo.toml: `Depends` from dpkg-shlibdeps, conffiles for /etc, the unit
//! installed but neither enabled nor started, deploy/debian's maintainer scripts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{VERSION, files_under, gzip};
use crate::{cargo, repo_root, run_step};

/// The unit as the repository has it, for a binary installed by hand.
const UNIT: &str = "deploy/systemd/mirror-xdp.service";
const HAND_INSTALLED: &str = "/usr/local/sbin/mirror-xdp";
const PACKAGED: &str = "/usr/sbin/mirror-xdp";

const UNIT_HEADER: &str = "\
# mirror-xdp as a systemd service: the `run` daemon attaches the policy, reloads it on change
# and on `systemctl reload`, and serves Prometheus metrics (on 127.0.0.1:9472 by default).
#
# Installed by the mirror-xdp package, neither enabled nor started: a firewall that starts
# itself with a policy nobody has read can lock the admin out. First set the interface in
# /etc/default/mirror-xdp and edit /etc/mirror-xdp/policy.toml (it starts in monitor mode),
# then: systemctl enable --now mirror-xdp
";

const CHANGELOG: &str = "deploy/debian/changelog";

/// The policy the package installs: the example's ports in monitor mode.
const EXAMPLE: &str = "examples/mirror.toml";
const POLICY_HEADER: &str = "\
# /etc/mirror-xdp/policy.toml: the policy mirror-xdp.service attaches. Installed by the
# mirror-xdp package; your edits are kept on upgrades.
#
# It starts in monitor mode: every packet is judged and counted, none is dropped. Before you
# set `mode = \"enforce\"`:
# 1. List the ports your mirror serves under [[ports]] (HTTP, HTTPS and rsync are there).
# 2. Put your admins' networks in the `admins` set: SSH (22) is open to them only. The
#    addresses below are documentation ranges and match nobody.
# 3. Check it: mirror-xdp check --policy /etc/mirror-xdp/policy.toml
# 4. Run in monitor mode a while and look at what would be dropped: mirror-xdp stats
# The format: man 5 mirror-xdp.toml. After an edit: systemctl reload mirror-xdp.
";
const ENFORCE_LINE: &str = "mode = \"enforce\"";
const MONITOR_LINE: &str = "mode = \"monitor\"          # \"enforce\" once `mirror-xdp stats` shows only what you mean to drop";

/// Builds the .deb from the binary built for `triple`; returns its path.
pub fn build(out: &Path, triple: &str) -> Result<PathBuf> {
    let staging = out.join("staging");
    std::fs::create_dir_all(&staging)?;
    let read = |path: &str| {
        std::fs::read_to_string(repo_root().join(path)).with_context(|| format!("reading {path}"))
    };
    std::fs::write(staging.join("mirror-xdp.service"), unit(&read(UNIT)?)?)?;
    std::fs::write(staging.join("policy.toml"), policy(&read(EXAMPLE)?)?)?;
    std::fs::write(
        staging.join("changelog.gz"),
        gzip(read(CHANGELOG)?.as_bytes())?,
    )?;
    let man = repo_root().join("docs/man");
    for page in files_under(&man)? {
        let section = page
            .extension()
            .and_then(|e| e.to_str())
            .with_context(|| format!("docs/man/{}: no section", page.display()))?;
        let dir = staging.join(format!("man{section}"));
        std::fs::create_dir_all(&dir)?;
        let name = format!("{}.gz", page.display());
        std::fs::write(dir.join(name), gzip(&std::fs::read(man.join(&page))?)?)?;
    }
    let deb = out.join(format!("mirror-xdp_{VERSION}_amd64.deb"));
    run_step(
        cargo()
            .args(["deb", "-p", "mirror-xdp", "--no-build", "--target", triple])
            .arg("--output")
            .arg(&deb),
    )?;
    Ok(deb)
}

/// The repository's unit with the package's header and binary path.
fn unit(text: &str) -> Result<String> {
    let Some(at) = text.find("\n[Unit]") else {
        bail!("{UNIT}: no [Unit] section");
    };
    let body = &text[at + 1..];
    if body.matches(HAND_INSTALLED).count() != 1 {
        bail!("{UNIT}: expected {HAND_INSTALLED} once, in ExecStart=");
    }
    Ok(format!(
        "{UNIT_HEADER}\n{}",
        body.replace(HAND_INSTALLED, PACKAGED)
    ))
}

/// The example policy with the package's header, in monitor mode.
fn policy(text: &str) -> Result<String> {
    let Some(at) = text.find("\nversion = 1\n") else {
        bail!("{EXAMPLE}: no `version = 1` line after its header");
    };
    let body = &text[at + 1..];
    let modes: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with(ENFORCE_LINE))
        .collect();
    let [mode] = modes[..] else {
        bail!("{EXAMPLE}: expected one line starting with {ENFORCE_LINE}");
    };
    Ok(format!(
        "{POLICY_HEADER}\n{}",
        body.replacen(mode, MONITOR_LINE, 1)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_unit_runs_the_packaged_binary() {
        let text = std::fs::read_to_string(repo_root().join(UNIT)).unwrap();
        let packaged = unit(&text).unwrap();
        assert!(packaged.contains(&format!("ExecStart={PACKAGED} run")));
        assert!(!packaged.contains(HAND_INSTALLED));
        assert!(packaged.starts_with(UNIT_HEADER));
        assert!(unit("[Service]\nExecStart=/bin/true\n").is_err());
    }

    #[test]
    fn the_packaged_policy_is_the_example_in_monitor_mode() {
        let text = std::fs::read_to_string(repo_root().join(EXAMPLE)).unwrap();
        let packaged = policy(&text).unwrap();
        assert!(packaged.contains(MONITOR_LINE));
        assert!(!packaged.lines().any(|l| l.starts_with(ENFORCE_LINE)));
        assert!(packaged.contains("ports = [22]"));
        assert!(policy("version = 1\n").is_err());
    }
}
