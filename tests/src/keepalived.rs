//! keepalived (Debian's) in a test namespace: one VRRP instance speaking unicast VRRP
//! (IP protocol 112) to its peers, and where it stands, read from its log and from the
//! virtual address it holds as master.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::{ChildGuard, Netns};
use crate::tools::require_tool;
use crate::wait::poll_until;

/// The address the master holds.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 100);
/// The VRRP router id every instance of the tests shares.
const ROUTER_ID: u8 = 51;

/// One keepalived, stopped (SIGTERM: it says goodbye with a priority-0 advert) on drop.
pub struct Keepalived {
    /// The name in its config (`router_id`) and its files' names.
    pub name: String,
    ns_name: String,
    dev: String,
    log: PathBuf,
    process: ChildGuard,
}

/// Where an instance stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Backup,
}

impl Keepalived {
    /// Starts keepalived's VRRP process in `ns` on `dev`: source `src`, adverts to `peers`,
    /// `priority`; files in `dir`. It starts as backup and becomes master after three
    /// missed adverts (one a second), or at once over a lower priority.
    pub fn start(
        ns: &Netns,
        dir: &Path,
        name: &str,
        (dev, src): (&str, Ipv4Addr),
        peers: &[Ipv4Addr],
        priority: u8,
    ) -> Result<Keepalived> {
        require_tool("keepalived", "keepalived");
        let peers: String = peers.iter().map(|p| format!("    {p}\n")).collect();
        let config = format!(
            "global_defs {{\n  router_id {name}\n}}\n\
             vrrp_instance mirror {{\n  state BACKUP\n  interface {dev}\n  \
             virtual_router_id {ROUTER_ID}\n  priority {priority}\n  advert_int 1\n  \
             unicast_src_ip {src}\n  unicast_peer {{\n{peers}  }}\n  \
             virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"
        );
        let file = |ext: &str| dir.join(format!("keepalived-{name}.{ext}"));
        std::fs::write(file("conf"), config)?;
        let log = file("log");
        // Appended: a restarted instance keeps its earlier lines.
        let out = File::options().create(true).append(true).open(&log)?;
        let mut cmd = ns.command("keepalived");
        cmd.args(["--dont-fork", "--log-console", "--log-detail", "--vrrp"])
            .arg("--use-file")
            .arg(file("conf"))
            .arg("--pid")
            .arg(file("pid"))
            .arg("--vrrp_pid")
            .arg(file("vrrp.pid"))
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out));
        let process = ChildGuard::spawn(&mut cmd).context("start keepalived")?;
        Ok(Keepalived {
            name: name.to_string(),
            ns_name: ns.name().to_string(),
            dev: dev.to_string(),
            log,
            process,
        })
    }

    /// Master if it holds the virtual address on its interface.
    pub fn role(&self) -> Role {
        let out = std::process::Command::new("ip")
            .args([
                "-n",
                &self.ns_name,
                "-4",
                "-o",
                "addr",
                "show",
                "dev",
                &self.dev,
            ])
            .output()
            .expect("run ip");
        let holds = String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/"));
        if holds { Role::Master } else { Role::Backup }
    }

    /// Waits up to `timeout` for `role`; how long it took, or `None`.
    pub fn wait_for(&mut self, role: Role, timeout: Duration) -> Option<Duration> {
        self.process.ensure_running().expect("keepalived runs");
        poll_until(timeout, || self.role() == role)
    }

    /// Its state changes and what made them, as its log says.
    pub fn transitions(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| {
                l.contains("STATE") || l.contains("advert from") || l.contains("priority 0")
            })
            .map(|l| format!("{}: {}", self.name, l.trim()))
            .collect()
    }

    /// Stops it cleanly (its last advert has priority 0: the backup takes over at once).
    pub fn stop(mut self) -> Result<()> {
        self.process.stop()?;
        Ok(())
    }
}
