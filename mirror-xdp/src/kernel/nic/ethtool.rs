//! The ethtool ioctl (SIOCETHTOOL) on an interface of this network namespace: the driver's
//! name (ETHTOOL_GDRVINFO), its queue counts (ETHTOOL_GCHANNELS) and the active state of
//! named features (the feature names, then ETHTOOL_GFEATURES). Plain ioctls rather than
//! ethtool's netlink family: synchronous, no new dependency, and every kernel has them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// A socket to send ethtool requests for one interface on.
pub struct Ethtool {
    sock: OwnedFd,
    iface: String,
}

/// The queue counts of ETHTOOL_GCHANNELS (`ethtool -l`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channels {
    pub max_combined: u32,
    pub combined: u32,
}

impl Ethtool {
    pub fn open(iface: &str) -> std::io::Result<Ethtool> {
        if iface.len() >= libc::IFNAMSIZ {
            return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        // SAFETY: socket() has no memory preconditions; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Ethtool {
            sock,
            iface: iface.to_string(),
        })
    }

    /// The driver's name: `virtio_net`, `veth`, `bonding`, `802.1Q VLAN Support`, ...
    pub fn driver(&self) -> std::io::Result<String> {
        let mut info = DrvInfo {
            cmd: ETHTOOL_GDRVINFO,
            driver: [0; 32],
            _rest: [0; 32 * 4 + 12 + 4 * 5],
        };
        self.request((&raw mut info).cast())?;
        Ok(c_string(&info.driver))
    }

    /// `None` when the driver has no channels to report (EOPNOTSUPP).
    pub fn channels(&self) -> std::io::Result<Option<Channels>> {
        // struct ethtool_channels { cmd, max_rx, max_tx, max_other, max_combined, rx_count,
        // tx_count, other_count, combined_count }
        let mut buf = [0u32; 9];
        buf[0] = ETHTOOL_GCHANNELS;
        match self.request(buf.as_mut_ptr().cast()) {
            Ok(()) => Ok(Some(Channels {
                max_combined: buf[4],
                combined: buf[8],
            })),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether each of `wanted` (names as `ethtool -k` shows them in the kernel's table) is
    /// active, for those the interface reports.
    pub fn features(&self, wanted: &[&str]) -> std::io::Result<Vec<(String, bool)>> {
        let names = self.feature_names()?;
        let active = self.active_bits(names.len())?;
        Ok(names
            .into_iter()
            .enumerate()
            .filter(|(_, name)| wanted.contains(&name.as_str()))
            .map(|(i, name)| (name, active[i / 32] & (1 << (i % 32)) != 0))
            .collect())
    }

    fn request(&self, data: *mut libc::c_void) -> std::io::Result<()> {
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data,
            _pad: [0; 16],
        };
        req.name[..self.iface.len()].copy_from_slice(self.iface.as_bytes());
        // The request's type is the C library's (an unsigned long in glibc, an int in musl).
        let request: libc::Ioctl = libc::SIOCETHTOOL as _;
        // SAFETY: `req` and the buffer `data` points at live through the call, and each
        // caller sized its buffer for the command it sends.
        let rc = unsafe { libc::ioctl(self.sock.as_raw_fd(), request, &mut req) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The kernel's feature names, in bit order.
    fn feature_names(&self) -> std::io::Result<Vec<String>> {
        let mut info = SsetInfo {
            cmd: ETHTOOL_GSSET_INFO,
            reserved: 0,
            sset_mask: 1 << ETH_SS_FEATURES,
            count: 0,
        };
        self.request((&raw mut info).cast())?;
        let count = info.count as usize;
        // struct ethtool_gstrings { cmd, string_set, len, u8 data[] }
        let mut buf = vec![0u8; 12 + count * ETH_GSTRING_LEN];
        buf[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
        buf[4..8].copy_from_slice(&ETH_SS_FEATURES.to_ne_bytes());
        buf[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
        self.request(buf.as_mut_ptr().cast())?;
        Ok(buf[12..].chunks(ETH_GSTRING_LEN).map(c_string).collect())
    }

    /// The `active` words of ETHTOOL_GFEATURES, one bit per feature.
    fn active_bits(&self, count: usize) -> std::io::Result<Vec<u32>> {
        let blocks = count.div_ceil(32);
        // struct ethtool_gfeatures { cmd, size, { available, requested, active, never_changed }[] }
        let mut buf = vec![0u32; 2 + 4 * blocks];
        buf[0] = ETHTOOL_GFEATURES;
        buf[1] = blocks as u32;
        self.request(buf.as_mut_ptr().cast())?;
        Ok((0..blocks).map(|b| buf[2 + 4 * b + 2]).collect())
    }
}

fn c_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// `struct ifreq` with `ifr_data`, as SIOCETHTOOL takes it.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// `struct ethtool_sset_info` asking for one string set, with room for its count.
#[repr(C)]
struct SsetInfo {
    cmd: u32,
    reserved: u32,
    sset_mask: u64,
    count: u32,
}

/// `struct ethtool_drvinfo`: the driver's name, then version, firmware, bus and expansion
/// ROM strings (32 bytes each), 12 reserved bytes and five counts this code does not read.
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    _rest: [u8; 32 * 4 + 12 + 4 * 5],
}
