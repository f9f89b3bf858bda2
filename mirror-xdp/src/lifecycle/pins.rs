//! The pin naming scheme, in one place, and the bpffs folder helpers. In the pin folder:
//! - `mx_*_vN`: the shared maps (counters, flows, limiter state, live entries), versioned by
//!   their layout ([`super::compat`]);
//! - `gen-N/`: generation N's policy maps and its two programs (`prog_xdp`, `prog_egress`);
//! - `gen-N-new/`: generation N while a reload builds it (the staging folder);
//! - `spare-N-BUILD/`: a spare for generation N, built by this binary's object ([`super::spare`]);
//! - `link_xdp_IFACE`, `link_egress_IFACE`: the links that keep the programs attached.
//!
//! The bottom layer of the lifecycle: it depends on nothing of it but the error type.

use std::path::{Path, PathBuf};

use aya::programs::links::PinnedLink;
use mirror_xdp_common::map_name;

use super::LifecycleError;
use crate::state::Paths;

/// Where a generation's folder keeps its programs: a crashed reload's successor finds the
/// programs to finish the swap with there, and tells by their ids which generation a link
/// runs.
pub const XDP_PROGRAM_PIN: &str = "prog_xdp";
pub const EGRESS_PROGRAM_PIN: &str = "prog_egress";

const GENERATION_PREFIX: &str = "gen-";
const STAGING_SUFFIX: &str = "-new";
const SPARE_PREFIX: &str = "spare-";
const LINK_PREFIX: &str = "link_";
const XDP_LINK_PREFIX: &str = "link_xdp_";
const EGRESS_LINK_PREFIX: &str = "link_egress_";
/// Every name of ours in the pin folder starts with one of these (maps of any version too).
const OURS: [&str; 4] = [LINK_PREFIX, "mx_", GENERATION_PREFIX, SPARE_PREFIX];

impl Paths {
    /// Where a map is pinned: a policy map in its generation's folder, a shared map in
    /// the pin folder itself.
    pub fn map_pin(&self, name: &str, generation: u64) -> PathBuf {
        if map_name::PER_GENERATION.contains(&name) {
            self.generation_dir(generation).join(name)
        } else {
            self.bpffs.join(name)
        }
    }

    /// The folder of one generation's policy maps and programs.
    pub fn generation_dir(&self, generation: u64) -> PathBuf {
        self.bpffs.join(format!("{GENERATION_PREFIX}{generation}"))
    }

    /// The folder a reload builds generation `generation` in, invisible to readers until
    /// the links run it.
    pub fn staging_dir(&self, generation: u64) -> PathBuf {
        self.bpffs
            .join(format!("{GENERATION_PREFIX}{generation}{STAGING_SUFFIX}"))
    }

    /// The spare that becomes `generation`, built by the object whose hash is `build`.
    pub fn spare_dir(&self, generation: u64, build: u64) -> PathBuf {
        self.bpffs
            .join(format!("{SPARE_PREFIX}{generation}-{build:016x}"))
    }

    /// The generations that have a complete folder of pins, newest last.
    pub fn pinned_generations(&self) -> Vec<u64> {
        let mut found: Vec<u64> = entries(&self.bpffs)
            .iter()
            .filter_map(|p| file_name(p).strip_prefix(GENERATION_PREFIX)?.parse().ok())
            .collect();
        found.sort_unstable();
        found
    }

    pub fn xdp_link_pin(&self, iface: &str) -> PathBuf {
        self.bpffs
            .join(format!("{XDP_LINK_PREFIX}{}", pin_safe(iface)))
    }

    pub fn egress_link_pin(&self, iface: &str) -> PathBuf {
        self.bpffs
            .join(format!("{EGRESS_LINK_PREFIX}{}", pin_safe(iface)))
    }
}

/// An interface name as a pin name: bpffs refuses names with a '.' (VLAN devices such as
/// `eth0.100` have one), so '.' becomes `%2e` and '%' `%25`, one to one; other names stay
/// as they are, so the pins of interfaces attached before keep their names.
fn pin_safe(iface: &str) -> String {
    iface.replace('%', "%25").replace('.', "%2e")
}

/// The link pins in the pin folder, XDP links first.
pub fn link_pins(paths: &Paths) -> Vec<PathBuf> {
    let mut pins: Vec<PathBuf> = entries(&paths.bpffs)
        .into_iter()
        .filter(|p| file_name(p).starts_with(LINK_PREFIX))
        .collect();
    pins.sort_by_key(|p| !file_name(p).starts_with(XDP_LINK_PREFIX));
    pins
}

/// Whether the pin folder holds anything of ours.
pub fn has_pins(paths: &Paths) -> bool {
    entries(&paths.bpffs).iter().any(|p| is_ours(p))
}

/// Whether a pin folder entry is one of ours (of any version).
pub fn is_ours(path: &Path) -> bool {
    let name = file_name(path);
    OURS.iter().any(|p| name.starts_with(p))
}

/// The folders of generations, complete (`gen-N`) and half-built (`gen-N-new`).
pub fn generation_dirs(paths: &Paths) -> Vec<PathBuf> {
    entries(&paths.bpffs)
        .into_iter()
        .filter(|p| file_name(p).starts_with(GENERATION_PREFIX) && p.is_dir())
        .collect()
}

/// Every spare folder, of any generation or build.
pub fn spare_dirs(paths: &Paths) -> Vec<PathBuf> {
    entries(&paths.bpffs)
        .into_iter()
        .filter(|p| p.is_dir() && file_name(p).starts_with(SPARE_PREFIX))
        .collect()
}

/// The pins named like our maps (`mx_...`) in a folder.
pub fn map_pins(dir: &Path) -> Vec<PathBuf> {
    entries(dir)
        .into_iter()
        .filter(|p| p.is_file() && file_name(p).starts_with("mx_"))
        .collect()
}

/// Unpinning a link drops the last reference to it: the kernel detaches the program. A pin
/// that is already gone (the interface vanished) is fine.
pub fn unpin_link(pin: &Path) {
    if let Ok(link) = PinnedLink::from_pin(pin) {
        let _ = link.unpin();
    }
}

/// Removes one folder's pins (maps and programs) and the folder. The kernel frees them
/// once no link runs them.
pub fn remove_dir_pins(dir: &Path) {
    for path in entries(dir) {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_dir(dir);
}

/// Creates a folder for pins (a generation's, a spare's), private to root.
pub fn create_pin_dir(dir: &Path) -> Result<(), LifecycleError> {
    crate::state::dir::create_private_dir(dir).map_err(|source| LifecycleError::Bpffs {
        path: dir.to_path_buf(),
        source,
    })
}

/// The paths in a folder, sorted; none if it cannot be read.
pub fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_the_scheme_makes_is_ours_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            bpffs: dir.path().to_path_buf(),
            state_dir: dir.path().join("state"),
        };
        for made in [
            paths.map_pin(map_name::FLOWS, 3),
            paths.map_pin(map_name::CONFIG, 3),
            paths.generation_dir(3),
            paths.staging_dir(4),
            paths.spare_dir(4, 0xab),
            paths.xdp_link_pin("eth0"),
            paths.egress_link_pin("eth0"),
            paths.xdp_link_pin("eth0.100"),
        ] {
            let top = dir.path().join(
                made.strip_prefix(dir.path())
                    .unwrap()
                    .iter()
                    .next()
                    .unwrap(),
            );
            assert!(is_ours(&top), "{made:?}");
        }
        for d in [
            paths.generation_dir(3),
            paths.staging_dir(4),
            paths.spare_dir(4, 0xab),
        ] {
            std::fs::create_dir(d).unwrap();
        }
        // A staging folder is not a complete generation.
        assert_eq!(paths.pinned_generations(), [3]);
        assert_eq!(generation_dirs(&paths).len(), 2);
        assert_eq!(spare_dirs(&paths), [paths.spare_dir(4, 0xab)]);
    }

    #[test]
    fn interface_names_with_dots_make_pin_names_bpffs_takes() {
        assert_eq!(pin_safe("eth0"), "eth0");
        assert_eq!(pin_safe("eth0.100"), "eth0%2e100");
        // One to one: a literal "%2e" in a name does not meet a dot's escape.
        assert_ne!(pin_safe("a%2e"), pin_safe("a."));
        let paths = Paths {
            bpffs: PathBuf::from("/sys/fs/bpf/mirror-xdp"),
            state_dir: PathBuf::new(),
        };
        assert_eq!(
            file_name(&paths.egress_link_pin("b.1.2")),
            "link_egress_b%2e1%2e2"
        );
    }
}
