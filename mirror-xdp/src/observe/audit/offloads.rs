//! The NIC's receive offloads that act before XDP, read with the ethtool ioctl
//! (SIOCETHTOOL: the feature names, then ETHTOOL_GFEATURES), and what each hides from the
//! program.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::Serialize;

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// The features the audit looks at, as `ethtool -k` names them in the kernel's table.
const WATCHED: [&str; 5] = [
    "rx-vlan-hw-parse",
    "rx-vlan-stag-hw-parse",
    "rx-gro-hw",
    "rx-lro",
    "rx-gro",
];

#[derive(Debug, thiserror::Error)]
#[error("reading the offload settings of {iface}: {step}: {source}")]
pub struct OffloadError {
    iface: String,
    step: &'static str,
    source: std::io::Error,
}

/// The watched features that the interface reports, and whether each is on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Offloads {
    pub features: BTreeMap<String, bool>,
}

impl Offloads {
    pub fn read(iface: &str) -> Result<Offloads, OffloadError> {
        let fail = |step| {
            let iface = iface.to_string();
            move |source| OffloadError {
                iface,
                step,
                source,
            }
        };
        // SAFETY: socket() has no memory preconditions; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(fail("socket")(std::io::Error::last_os_error()));
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let names = feature_names(&sock, iface).map_err(fail("feature names"))?;
        let active = active_bits(&sock, iface, names.len()).map_err(fail("ETHTOOL_GFEATURES"))?;
        let features = names
            .iter()
            .enumerate()
            .filter(|(_, name)| WATCHED.contains(&name.as_str()))
            .map(|(i, name)| (name.clone(), active[i / 32] & (1 << (i % 32)) != 0))
            .collect();
        Ok(Offloads { features })
    }

    fn on(&self, name: &str) -> bool {
        self.features.get(name).copied().unwrap_or(false)
    }

    /// Warnings for the offloads that change what XDP sees in this attach mode.
    pub fn warnings(&self, iface: &str, xdp_mode: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (feature, tag) in [
            ("rx-vlan-hw-parse", "802.1Q"),
            ("rx-vlan-stag-hw-parse", "802.1ad"),
        ] {
            if self.on(feature) {
                out.push(format!(
                    "{iface}: {feature} is on: the NIC may strip the outer {tag} tag before \
                     XDP; the program then judges the packet behind it but never sees the \
                     tag (no rule can depend on it, and a frame with one tag too many \
                     arrives with two and is judged instead of dropped as malformed). \
                     `ethtool -K {iface} {feature} off` keeps tags in the frame"
                ));
            }
        }
        for (feature, what) in [
            ("rx-gro-hw", "hardware GRO"),
            ("rx-lro", "LRO (large receive offload)"),
        ] {
            if self.on(feature) {
                out.push(format!(
                    "{iface}: {feature} is on: {what} merges TCP segments before XDP, so \
                     the program judges one header for many segments and counts them as \
                     one. `ethtool -K {iface} {feature} off`"
                ));
            }
        }
        if xdp_mode == "skb" && self.on("rx-gro") {
            out.push(format!(
                "{iface}: rx-gro (generic receive offload) is on and the program runs in \
                 skb mode, which comes after GRO: it judges merged segments as one packet \
                 and counts them as one. Native mode, or `ethtool -K {iface} gro off`, \
                 avoids it"
            ));
        }
        out
    }
}

/// `struct ifreq` with `ifr_data`, as SIOCETHTOOL takes it.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(sock: &OwnedFd, iface: &str, data: *mut libc::c_void) -> std::io::Result<()> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    let bytes = iface.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `req` and the buffer `data` points at live through the call, and each caller
    // sized its buffer for the command it sends.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `struct ethtool_sset_info` asking for one string set, with room for its count.
#[repr(C)]
struct SsetInfo {
    cmd: u32,
    reserved: u32,
    sset_mask: u64,
    count: u32,
}

/// The kernel's feature names, in bit order.
fn feature_names(sock: &OwnedFd, iface: &str) -> std::io::Result<Vec<String>> {
    let mut info = SsetInfo {
        cmd: ETHTOOL_GSSET_INFO,
        reserved: 0,
        sset_mask: 1 << ETH_SS_FEATURES,
        count: 0,
    };
    ethtool(sock, iface, (&raw mut info).cast())?;
    let count = info.count as usize;
    // struct ethtool_gstrings { cmd, string_set, len, u8 data[] }
    let mut buf = vec![0u8; 12 + count * ETH_GSTRING_LEN];
    buf[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    buf[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
    buf[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    ethtool(sock, iface, buf.as_mut_ptr().cast())?;
    Ok(buf[12..]
        .chunks(ETH_GSTRING_LEN)
        .map(|raw| {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        })
        .collect())
}

/// The `active` words of ETHTOOL_GFEATURES, one bit per feature.
fn active_bits(sock: &OwnedFd, iface: &str, count: usize) -> std::io::Result<Vec<u32>> {
    let blocks = count.div_ceil(32);
    // struct ethtool_gfeatures { cmd, size, { available, requested, active, never_changed }[] }
    let mut buf = vec![0u32; 2 + 4 * blocks];
    buf[0] = ETHTOOL_GFEATURES;
    buf[1] = blocks as u32;
    ethtool(sock, iface, buf.as_mut_ptr().cast())?;
    Ok((0..blocks).map(|b| buf[2 + 4 * b + 2]).collect())
}
