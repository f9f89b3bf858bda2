//! The VM matrix's two virtio-net NICs (`cargo xtask vm-test`, xtask/src/vm/matrix.rs):
//! their taps are bridged on the VM's host side, so a testbed with one NIC in the server
//! namespace and the other in the client one sends every packet out of one real virtio-net
//! driver, across the host's bridge and in through the other. Outside such a VM there are
//! no such NICs and the tests that need them fail.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns::Netns;
use crate::testbed::{CLIENT_IF, SERVER_IF, Testbed, ip};
use crate::wait::stretched;

/// MAC addresses the VM gives its NICs (xtask/src/vm/matrix.rs sets the same): the server's
/// has enough queues for lock-free XDP_TX, the client's does not run XDP.
pub const SERVER_MAC: &str = "52:54:00:6d:78:01";
pub const CLIENT_MAC: &str = "52:54:00:6d:78:02";

/// A testbed over the VM's virtio-net NICs, renamed [`SERVER_IF`] and [`CLIENT_IF`] in their
/// namespaces. Deleting a namespace hands a physical NIC back to the VM's own namespace.
pub fn testbed() -> Result<Testbed> {
    Testbed::with_link(|server, client| {
        move_into(&find(SERVER_MAC)?, server, SERVER_IF)?;
        move_into(&find(CLIENT_MAC)?, client, CLIENT_IF)
    })
}

/// The name of the virtio-net interface with `mac` in this namespace, waiting (bounded) for
/// it: a namespace deleted by the test before hands its NICs back asynchronously.
fn find(mac: &str) -> Result<String> {
    let limit = stretched(Duration::from_secs(10));
    let deadline = Instant::now() + limit;
    loop {
        for entry in std::fs::read_dir("/sys/class/net")? {
            let dir = entry?.path();
            let address = std::fs::read_to_string(dir.join("address")).unwrap_or_default();
            if address.trim() == mac && driver(&dir).as_deref() == Some("virtio_net") {
                let name = dir.file_name().context("interface name")?;
                return Ok(name.to_string_lossy().into_owned());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "no virtio-net interface with MAC {mac} within {limit:?}: these tests run in \
                 the VM matrix (`cargo xtask vm-test`), whose VM has two such NICs"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn driver(dev: &Path) -> Option<String> {
    let link = std::fs::read_link(dev.join("device/driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// Moves `dev` (down, MTU 1500) into `ns` as `name`.
fn move_into(dev: &str, ns: &Netns, name: &str) -> Result<()> {
    crate::netns::checked(std::process::Command::new("ip").args([
        "link",
        "set",
        "dev",
        dev,
        "down",
        "mtu",
        "1500",
        "netns",
        ns.name(),
    ]))?;
    ip(ns, &["link", "set", "dev", dev, "name", name])?;
    Ok(())
}
