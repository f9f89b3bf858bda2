//! The matrix VM's two virtio-net NICs and the bridge that joins their taps in the VM's host
//! namespace: a guest test puts one NIC in a server namespace and the other in a client one
//! (tests/src/virtio.rs), so its traffic leaves through one real virtio-net driver and comes
//! in through the other, and the host side needs no part in any test.

use anyhow::Result;

use super::netns::HostNetns;
use super::qemu::TapNic;

const BRIDGE: &str = "mxbr0";
/// The largest MTU a guest test sets (jumbo frames): the taps and the bridge carry it.
const MTU: &str = "9000";

/// The server's NIC has 4 queue pairs: with 2 vCPUs, 2 for the stack and 2 more for
/// lock-free XDP_TX (the driver wants one per CPU). The client's runs no XDP. The MACs
/// are how the guest tells them apart (tests/src/virtio.rs has the same).
pub fn nics() -> Vec<TapNic> {
    vec![
        TapNic {
            tap: "mxtap0".into(),
            queues: 4,
            mac: "52:54:00:6d:78:01",
        },
        TapNic {
            tap: "mxtap1".into(),
            queues: 2,
            mac: "52:54:00:6d:78:02",
        },
    ]
}

/// Bridges the taps (called once qemu made them); everything goes with the namespace.
pub fn connect(ns: &HostNetns) -> Result<()> {
    // The host side only forwards: no IPv6 of its own (router solicitations, MLD) sent
    // into the guest's NICs while tests count packets.
    ns.sysctl(&[
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ])?;
    ns.ip(&["link", "add", BRIDGE, "mtu", MTU, "type", "bridge"])?;
    for nic in nics() {
        ns.ip(&["link", "set", &nic.tap, "mtu", MTU, "master", BRIDGE, "up"])?;
    }
    ns.ip(&["link", "set", BRIDGE, "up"])
}
