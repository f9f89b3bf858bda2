//! A network namespace on the host for one VM: qemu runs inside it, so the tap devices it
//! makes live there and never in the host's own namespace. Deleted on drop; a run killed
//! before its guards could drop (SIGKILL, a CI job cancelled) leaves its namespaces, which
//! the next run deletes.

use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

pub struct HostNetns {
    name: String,
}

impl HostNetns {
    /// `mx-vm-<pid>-<label>`, with its loopback up. The first call also deletes the
    /// namespaces of runs that are gone.
    pub fn new(label: &str) -> Result<Self> {
        static ORPHANS: std::sync::Once = std::sync::Once::new();
        ORPHANS.call_once(delete_orphans);
        let name = format!("{PREFIX}{}-{label}", std::process::id());
        ip(&["netns", "add", &name])?;
        // The guard exists from here on, so a failure below still deletes the namespace.
        let ns = HostNetns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NAME ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `sysctl -qw KEY=VALUE...` inside the namespace.
    pub fn sysctl(&self, settings: &[&str]) -> Result<()> {
        let out = self
            .command("sysctl")
            .arg("-qw")
            .args(settings)
            .output()
            .context("cannot run sysctl (package procps)")?;
        if !out.status.success() {
            bail!(
                "`sysctl -w {}` failed: {}",
                settings.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// A command that runs inside the namespace (`ip netns exec` execs it, so the child's
    /// pid is the program's own).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Whether the interface exists in the namespace yet.
    pub fn has_link(&self, name: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.name, "link", "show", "dev", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for HostNetns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "delete", &self.name]) {
            eprintln!("vm: cannot delete network namespace {}: {e:#}", self.name);
        }
    }
}

const PREFIX: &str = "mx-vm-";

/// Deletes every `mx-vm-<pid>-*` namespace whose process no longer runs.
fn delete_orphans() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for name in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if let Some(pid) = owner(name)
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            match ip(&["netns", "delete", name]) {
                Ok(()) => eprintln!("vm: deleted network namespace {name} of an ended run"),
                Err(e) => eprintln!("vm: cannot delete network namespace {name}: {e:#}"),
            }
        }
    }
}

/// The pid in a namespace name of ours.
fn owner(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run ip (package iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A child process killed (by its pid) and reaped on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn a_namespace_of_ours_names_its_run() {
        assert_eq!(owner("mx-vm-17303-6.12"), Some(17303));
        assert_eq!(owner("mx-vm-17303-6.1"), Some(17303));
        assert_eq!(owner("mxt-17303-server"), None);
        assert_eq!(owner("mx-vm-report"), None);
    }
}
