//! The kernel memory the enforcer's maps hold, as the kernel charges it: the `memlock` line
//! of each pinned map's fdinfo (what bpftool shows as `bytes_memlock`), over the shared
//! maps, every generation and the spare.

use std::{
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use aya::maps::MapData;

use crate::lifecycle::pins::{entries, map_pins};

/// One pinned map and the bytes the kernel charges for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapMemory {
    /// The pin, relative to the pin folder (`mx_flows_v1`, `gen-3/mx_ports_v1`).
    pub pin: PathBuf,
    pub bytes: u64,
}

/// Every map pinned under `pin_dir` and in its folders, sorted by pin. A pin that cannot
/// be opened or read (removed meanwhile by a reload) is left out.
pub fn pinned_maps(pin_dir: &Path) -> Vec<MapMemory> {
    let dirs = std::iter::once(pin_dir.to_path_buf())
        .chain(entries(pin_dir).into_iter().filter(|p| p.is_dir()));
    let mut found: Vec<MapMemory> = dirs
        .flat_map(|dir| map_pins(&dir))
        .filter_map(|path| {
            let bytes = memlock(&path)?;
            let pin = path.strip_prefix(pin_dir).ok()?.to_path_buf();
            Some(MapMemory { pin, bytes })
        })
        .collect();
    found.sort_by(|a, b| a.pin.cmp(&b.pin));
    found
}

/// The `memlock` bytes of the map pinned at `path`.
fn memlock(path: &Path) -> Option<u64> {
    let map = MapData::from_pin(path).ok()?;
    let fd = map.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    memlock_field(&info)
}

fn memlock_field(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|value| value.trim().parse().ok())
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memlock_line_of_an_fdinfo_is_read() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nmap_type:\t2\n\
                      key_size:\t4\nvalue_size:\t8\nmax_entries:\t32768\nmap_flags:\t0x0\n\
                      map_extra:\t0x0\nmemlock:\t262464\nmap_id:\t7\nfrozen:\t0\n";
        assert_eq!(memlock_field(fdinfo), Some(262_464));
        assert_eq!(memlock_field("pos:\t0\n"), None);
        assert_eq!(mib(99_090_432), "94.5 MiB");
    }
}
