//! What an interface's driver does before XDP and what XDP needs from it: the receive
//! offloads that hide headers from the program, the queues XDP_TX needs, and why a driver
//! refused native mode. Read here ([`ethtool`]), judged in [`advice`] (pure); `attach` and
//! `audit` both warn from the same judgement.

pub mod advice;
pub mod ethtool;

use std::collections::BTreeMap;

use serde::Serialize;

pub use ethtool::Channels;

/// The driver name of VLAN devices (8021q) in ETHTOOL_GDRVINFO.
pub const VLAN_DRIVER: &str = "802.1Q VLAN Support";
pub const VIRTIO_NET_DRIVER: &str = "virtio_net";
pub const BOND_DRIVER: &str = "bonding";

/// The offloads [`advice`] knows about, as `ethtool -k` names them in the kernel's table.
const WATCHED: [&str; 5] = [
    "rx-vlan-hw-parse",
    "rx-vlan-stag-hw-parse",
    "rx-gro-hw",
    "rx-lro",
    "rx-gro",
];

#[derive(Debug, thiserror::Error)]
#[error("reading the {what} of {iface}: {source}")]
pub struct NicError {
    iface: String,
    what: &'static str,
    source: std::io::Error,
}

fn fail(iface: &str, what: &'static str) -> impl FnOnce(std::io::Error) -> NicError {
    let iface = iface.to_string();
    move |source| NicError {
        iface,
        what,
        source,
    }
}

/// The watched offloads that the interface reports, and whether each is on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Offloads {
    pub features: BTreeMap<String, bool>,
}

impl Offloads {
    pub fn read(iface: &str) -> Result<Offloads, NicError> {
        let ethtool = ethtool::Ethtool::open(iface).map_err(fail(iface, "offload settings"))?;
        let features = ethtool
            .features(&WATCHED)
            .map_err(fail(iface, "offload settings"))?;
        Ok(Offloads {
            features: features.into_iter().collect(),
        })
    }

    pub fn on(&self, name: &str) -> bool {
        self.features.get(name).copied().unwrap_or(false)
    }

    /// Warnings for the offloads that change what XDP sees in this attach mode.
    pub fn warnings(&self, iface: &str, xdp_mode: &str) -> Vec<String> {
        advice::offloads(iface, self, xdp_mode)
    }
}

/// What `attach` reads of an interface before linking XDP to it.
#[derive(Clone, Debug, Default)]
pub struct Nic {
    pub driver: Option<String>,
    pub offloads: Offloads,
    /// `None` when the driver reports no queues.
    pub channels: Option<Channels>,
    /// The parent of a VLAN device.
    pub vlan_parent: Option<String>,
}

impl Nic {
    /// Reads what it can; what it cannot read comes back as a note for the user, and the
    /// advice that needs it is left out.
    pub fn read(iface: &str) -> (Nic, Vec<String>) {
        let mut notes = Vec::new();
        let mut nic = Nic::default();
        let ethtool = match ethtool::Ethtool::open(iface) {
            Ok(e) => e,
            Err(e) => {
                notes.push(fail(iface, "driver settings")(e).to_string());
                return (nic, notes);
            }
        };
        match ethtool.driver() {
            Ok(d) => nic.driver = Some(d),
            Err(e) => notes.push(fail(iface, "driver name")(e).to_string()),
        }
        match Offloads::read(iface) {
            Ok(o) => nic.offloads = o,
            Err(e) => notes.push(e.to_string()),
        }
        match ethtool.channels() {
            Ok(c) => nic.channels = c,
            Err(e) => notes.push(fail(iface, "queue counts")(e).to_string()),
        }
        if nic.driver.as_deref() == Some(VLAN_DRIVER) {
            nic.vlan_parent = vlan_parent(iface);
        }
        (nic, notes)
    }
}

/// The device a VLAN device sits on, from the 8021q module's table of this network
/// namespace (`/proc/net/vlan/config`: "NAME | VID | PARENT" lines).
fn vlan_parent(iface: &str) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/vlan/config").ok()?;
    parse_vlan_parent(&table, iface)
}

fn parse_vlan_parent(table: &str, iface: &str) -> Option<String> {
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        match fields[..] {
            [name, _, parent] if name == iface && !parent.is_empty() => Some(parent.to_string()),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_vlan_parent;

    #[test]
    fn the_parent_of_a_vlan_device_comes_from_the_8021q_table() {
        let table = "VLAN Dev name\t | VLAN ID\nName-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\n\
                     eth0.100       | 100  | eth0\nbond0.7        | 7  | bond0\n";
        assert_eq!(
            parse_vlan_parent(table, "eth0.100").as_deref(),
            Some("eth0")
        );
        assert_eq!(
            parse_vlan_parent(table, "bond0.7").as_deref(),
            Some("bond0")
        );
        assert_eq!(parse_vlan_parent(table, "eth0"), None);
        assert_eq!(parse_vlan_parent(table, "VLAN Dev name"), None);
    }
}
