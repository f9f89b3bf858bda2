//! The pin-compatibility check: can this build adopt, or read, the pins it finds? Every map
//! is pinned under a name that carries its layout's version (`mx_flows_v1`); a change of
//! layout gets a new name. aya reuses a pin of the right name
//! whatever is in it, so before this build adopts the pins of an attached enforcer, or reads
//! them, it checks that each one is a map it knows, in the layout it expects. A pin of another
//! version, or of the right name in another layout, is refused with what to do: never reused,
//! never misread. A policy generation of another version is migrated by a reload, which
//! builds the next generation in this build's layout and removes the old one.

use std::path::Path;

use aya::maps::MapInfo;
use mirror_xdp_common::map_name;

use super::{
    LifecycleError,
    object::{self, MapLayout},
    pins::{file_name, map_pins},
};
use crate::state::Paths;

/// Which pins must be this build's.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    /// The shared maps: what a reload (or `run` adopting) reuses.
    Shared,
    /// The shared maps and the policy maps of this generation: what a command reads.
    Reading(u64),
}

/// Checks the pins in the pin folder (and the generation `scope` names) against this build.
/// `limiter_entries` is the size the attached enforcer's limiter table was made with.
pub fn check_pins(paths: &Paths, scope: Scope, limiter_entries: u32) -> Result<(), LifecycleError> {
    let layouts = object::layouts()?;
    for path in map_pins(&paths.bpffs) {
        let name = file_name(&path);
        if map_name::PER_GENERATION.contains(&name.as_str()) {
            continue;
        }
        let Some(layout) = layouts.get(&name) else {
            return Err(LifecycleError::OtherVersion {
                expected: same_map(&name, &map_name::ALL),
                path,
            });
        };
        let size = (name == map_name::LIMITS).then_some(limiter_entries);
        compare(&path, layout, size)?;
    }
    if let Scope::Reading(generation) = scope {
        let dir = paths.generation_dir(generation);
        for path in map_pins(&dir) {
            let name = file_name(&path);
            let Some(layout) = layouts
                .get(&name)
                .filter(|_| map_name::PER_GENERATION.contains(&name.as_str()))
            else {
                return Err(LifecycleError::OtherGeneration {
                    generation,
                    expected: same_map(&name, &map_name::PER_GENERATION),
                    path,
                });
            };
            // Sized at load time from the policy: only their other properties are fixed.
            let sized = [
                map_name::SOURCES_V4,
                map_name::SOURCES_V6,
                map_name::BLOCKS_V4,
                map_name::BLOCKS_V6,
                map_name::EGRESS_PORTS,
            ];
            let size = sized.contains(&name.as_str()).then_some(0);
            compare(&path, layout, size)?;
        }
    }
    Ok(())
}

/// This build's name for the map `name` is a version of (`mx_flows_v0` -> `mx_flows_v1`).
fn same_map(name: &str, names: &[&str]) -> String {
    let stem = |n: &str| n.rsplit_once("_v").map_or(n, |(stem, _)| stem).to_string();
    names
        .iter()
        .find(|n| stem(n) == stem(name))
        .map_or_else(|| "none of that name".to_string(), |n| n.to_string())
}

/// Compares a pinned map with this build's layout; `size` overrides `max_entries` (0: any).
fn compare(path: &Path, want: &MapLayout, size: Option<u32>) -> Result<(), LifecycleError> {
    let info = MapInfo::from_pin(path).map_err(|e| LifecycleError::ReadMap {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let found = MapLayout {
        map_type: info.map_type().map(|t| t as u32).unwrap_or(u32::MAX),
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        flags: info.map_flags(),
    };
    let mut want = *want;
    match size {
        Some(0) => want.max_entries = found.max_entries,
        Some(n) => want.max_entries = n,
        None => {}
    }
    if found != want {
        return Err(LifecycleError::LayoutMismatch {
            path: path.to_path_buf(),
            found: describe(&found),
            expected: describe(&want),
        });
    }
    Ok(())
}

fn describe(l: &MapLayout) -> String {
    format!(
        "type {}, key {} B, value {} B, {} entries, flags {:#x}",
        l.map_type, l.key_size, l.value_size, l.max_entries, l.flags
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_version_names_the_map_this_build_uses() {
        assert_eq!(same_map("mx_flows_v0", &map_name::ALL), map_name::FLOWS);
        assert_eq!(
            same_map("mx_config_v1", &map_name::PER_GENERATION),
            map_name::CONFIG
        );
        assert_eq!(
            same_map("mx_nothing_v3", &map_name::ALL),
            "none of that name"
        );
    }
}
