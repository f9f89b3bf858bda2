//! Bonds (the bonding module; the VM's Debian kernels have it, the host's kernel may not):
//! a testbed whose server link [`SERVER_IF`] is a round-robin bond of two veths and whose
//! client link [`CLIENT_IF`] bonds their peers the same way, so the client's packets take
//! both slaves in turn.

use anyhow::{Context, Result};

use crate::netns::Netns;
use crate::testbed::{CLIENT_IF, SERVER_IF, Testbed, ip};

/// The server bond's slaves and their peers (the client bond's slaves), pair by pair.
pub const SLAVES: [(&str, &str); 2] = [("mxsa", "mxca"), ("mxsb", "mxcb")];

/// Round-robin: native XDP on a bond needs a mode that picks a slave per packet without
/// the bond (round-robin, active-backup, or XOR/802.3ad with a layer2/layer3+4 hash).
const MODE: &str = "balance-rr";

pub fn testbed() -> Result<Testbed> {
    Testbed::with_link(|server, client| {
        for ns in [server, client] {
            ip(
                ns,
                &[
                    "link",
                    "add",
                    bond_in(ns),
                    "type",
                    "bond",
                    "mode",
                    MODE,
                    "miimon",
                    "50",
                ],
            )
            .context("creating a bond (needs the bonding module: in the VM matrix)")?;
        }
        for (slave, peer) in SLAVES {
            ip(
                server,
                &[
                    "link",
                    "add",
                    slave,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    peer,
                    "netns",
                    client.name(),
                ],
            )?;
            enslave(server, slave)?;
            enslave(client, peer)?;
        }
        Ok(())
    })
}

/// The bond of a testbed namespace: the server's or the client's.
fn bond_in(ns: &Netns) -> &'static str {
    if ns.name().ends_with("-server") {
        SERVER_IF
    } else {
        CLIENT_IF
    }
}

/// Puts `slave` (in `ns`) under the namespace's bond; the bond opens it.
pub fn enslave(ns: &Netns, slave: &str) -> Result<()> {
    ip(ns, &["link", "set", "dev", slave, "down"])?;
    ip(ns, &["link", "set", "dev", slave, "master", bond_in(ns)])?;
    Ok(())
}

/// Takes `slave` out of its bond.
pub fn release(ns: &Netns, slave: &str) -> Result<()> {
    ip(ns, &["link", "set", "dev", slave, "nomaster"])?;
    Ok(())
}

/// Frames the XDP program on veth `dev` dropped (`ethtool -S`, `rx_queue_N_xdp_drops`):
/// proof that the program ran on that slave.
pub fn xdp_drops(ns: &Netns, dev: &str) -> Result<u64> {
    let out = ns.run_ok("ethtool", &["-S", dev])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().split_once(':'))
        .filter(|(name, _)| name.ends_with("_xdp_drops"))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum())
}
