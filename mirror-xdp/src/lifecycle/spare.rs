//! A spare generation: the next generation's policy maps, empty, and both programs loaded
//! (verified) and pinned, in `spare-N-BUILD` (N: the generation it becomes; BUILD: a hash
//! of this binary's eBPF object, so a spare of another build is never used). Verifying the
//! program is most of a reload (about 140 of 190 ms on the machine of docs/benchmarks.md):
//! with a spare ready, a reload only fills its maps and swaps the links, and prepares the
//! next spare once the new policy is in force.
//!
//! A spare is only ever taken by renaming it to the reload's staging folder, so the crash
//! rules of [`super::recover`] apply to it from then on; until then no link runs it and any
//! command may throw it away. It costs one more set of policy maps in kernel memory.

use std::path::Path;

use aya::maps::MapInfo;
use mirror_xdp_common::map_name;

use super::{
    LifecycleError,
    object::{self, MapSizes, Sizes},
    pins::{EGRESS_PROGRAM_PIN, XDP_PROGRAM_PIN, create_pin_dir, remove_dir_pins, spare_dirs},
};
use crate::{compile::MapImage, state::Paths};

/// The smallest room a spare gives the IPv4 host table (preallocated: about 80 bytes an
/// entry, 1.3 MiB): a reload to a policy with up to this many IPv4 host entries still finds
/// a spare that fits, whatever the current policy holds.
const MIN_SOURCE_ROOM_V4: u32 = 1 << 14;

/// The chunks of the IPv4 block array a spare has room for at least (256 bytes each; 320
/// KiB with the directory).
const MIN_CHUNK_ROOM_V4: u32 = 256;

/// The smallest IPv6 list bitmap of a spare, in words (2 KiB: lists of up to 64 /32s or
/// /48s).
const MIN_BITMAP_ROOM_V6: u32 = 256;

/// Room for lists that grow: the current policy's (its hash tables have a quarter more than
/// its entries), a quarter more chunks than it has, twice its IPv6 bitmap (the next size),
/// and at least the minimums above, so that a reload that adds a small list to a policy
/// without one still finds a spare that fits. Not more: the spare of a million-entry list
/// is already some 100 MiB.
fn room_to_grow(need: MapSizes) -> MapSizes {
    use mirror_xdp_common::sources::{BLOCK_CHUNK_WORDS_V4, BLOCK_DIRECTORY_WORDS_V4};
    let chunks = need.blocks_v4.saturating_sub(BLOCK_DIRECTORY_WORDS_V4) / BLOCK_CHUNK_WORDS_V4;
    MapSizes {
        sources_v4: need.sources_v4.max(MIN_SOURCE_ROOM_V4),
        blocks_v4: BLOCK_DIRECTORY_WORDS_V4
            + (chunks + chunks / 4).clamp(MIN_CHUNK_ROOM_V4, 1 << 16) * BLOCK_CHUNK_WORDS_V4,
        blocks_v6: need.blocks_v6.saturating_mul(2).max(MIN_BITMAP_ROOM_V6),
        ..need
    }
}

/// The most kernel memory a spare's policy maps may take: the spare of a list of a million
/// entries would be hundreds of MiB, where verifying a program on reload costs a few hundred
/// ms next to a fill of a second or more.
const MAX_SPARE_BYTES: u64 = 64 << 20;

/// About what the policy maps of `room` take in the kernel: hash slots with their element
/// and bucket (IPv4 80 bytes, IPv6 112), array words, and 2 MiB for the rest.
fn spare_bytes(room: &MapSizes) -> u64 {
    u64::from(room.sources_v4) * 80
        + u64::from(room.sources_v6) * 112
        + u64::from(room.blocks_v4 + room.blocks_v6) * 8
        + (2 << 20)
}

/// The spare that becomes `generation`, for this build.
fn dir(paths: &Paths, generation: u64) -> std::path::PathBuf {
    paths.spare_dir(generation, object::build_hash())
}

/// Builds the spare for `generation`, its maps sized like `image`'s with room to grow,
/// unless they would take more than [`MAX_SPARE_BYTES`]. Called with the live lock held,
/// once the current generation is in force.
pub fn prepare(
    paths: &Paths,
    generation: u64,
    sizes: Sizes,
    image: &MapImage,
) -> Result<(), LifecycleError> {
    tidy(paths, generation);
    let spare = dir(paths, generation);
    if spare.exists() {
        return Ok(());
    }
    let room = room_to_grow(MapSizes::new(sizes, image));
    let bytes = spare_bytes(&room);
    if bytes > MAX_SPARE_BYTES {
        return Err(LifecycleError::SpareTooBig {
            mib: bytes >> 20,
            limit: MAX_SPARE_BYTES >> 20,
        });
    }
    create_pin_dir(&spare)?;
    let built = object::load(Some((paths, &spare)), room)
        .and_then(|mut ebpf| object::load_and_pin_programs(&mut ebpf, &spare));
    if let Err(e) = built {
        remove_dir_pins(&spare);
        return Err(e);
    }
    Ok(())
}

/// Moves the spare for `generation` to `staging` if there is one and its maps have room
/// for `need`; returns whether it did.
pub fn take(paths: &Paths, generation: u64, need: &MapSizes, staging: &Path) -> bool {
    let spare = dir(paths, generation);
    if !complete(&spare) || !fits(&spare, need) {
        return false;
    }
    std::fs::rename(&spare, staging).is_ok()
}

/// Removes every spare but a complete one for `keep`.
pub fn tidy(paths: &Paths, keep: u64) {
    let wanted = dir(paths, keep);
    for spare in spare_dirs(paths) {
        if spare != wanted || !complete(&spare) {
            remove_dir_pins(&spare);
        }
    }
}

/// Both programs and every policy map pinned: a spare whose build did not finish is not.
fn complete(spare: &Path) -> bool {
    [XDP_PROGRAM_PIN, EGRESS_PROGRAM_PIN]
        .iter()
        .chain(map_name::PER_GENERATION.iter())
        .all(|name| spare.join(name).exists())
}

fn fits(spare: &Path, need: &MapSizes) -> bool {
    let max_entries = |name: &str| {
        MapInfo::from_pin(spare.join(name))
            .map(|i| i.max_entries())
            .unwrap_or(0)
    };
    max_entries(map_name::SOURCES_V4) >= need.sources_v4
        && max_entries(map_name::SOURCES_V6) >= need.sources_v6
        && max_entries(map_name::BLOCKS_V4) >= need.blocks_v4
        && max_entries(map_name::BLOCKS_V6) >= need.blocks_v6
        && max_entries(map_name::EGRESS_PORTS) >= need.egress_ports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(sources_v4: u32, sources_v6: u32) -> MapSizes {
        MapSizes {
            limiter: 1 << 16,
            blocks_v4: 1,
            blocks_v6: 1,
            sources_v4,
            sources_v6,
            egress_ports: 1,
        }
    }

    #[test]
    fn a_spare_has_room_to_grow_within_its_memory_bound() {
        let small = room_to_grow(need(1024, 1024));
        assert_eq!(small.sources_v4, MIN_SOURCE_ROOM_V4);
        assert!(
            small.blocks_v4 > 1 && small.blocks_v6 > 1,
            "room for a first list"
        );
        assert!(spare_bytes(&small) < MAX_SPARE_BYTES);
        // 100,000 prefixes (some 75,000 host slots) get a spare, a million do not.
        assert!(spare_bytes(&room_to_grow(need(75_000, 1024))) < MAX_SPARE_BYTES);
        assert!(spare_bytes(&room_to_grow(need(1_250_000, 1024))) > MAX_SPARE_BYTES);
        assert!(spare_bytes(&room_to_grow(need(1024, 1_000_000))) > MAX_SPARE_BYTES);
    }
}
