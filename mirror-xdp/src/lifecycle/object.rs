//! The compiled kernel programs embedded in this binary: loading them, pinning their maps
//! and programs where [`super::pins`] says, and the maps' layouts for [`super::compat`].

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, Xdp},
};
use mirror_xdp_common::{capacity, config_flag, map_name, program_name};

use super::{
    LifecycleError,
    pins::{EGRESS_PROGRAM_PIN, XDP_PROGRAM_PIN},
};
use crate::{compile::MapImage, state::Paths};

/// Map sizes chosen at attach time.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Entries of the per-source limiter LRU table.
    pub limiter_entries: u32,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            limiter_entries: mirror_xdp_common::capacity::LIMITS,
        }
    }
}

/// The sizes of the maps that are sized at load time.
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    pub limiter: u32,
    /// Words of the IPv4 block array and of the IPv6 list bitmap: what the lists need
    /// (one without a list).
    pub blocks_v4: u32,
    pub blocks_v6: u32,
    pub sources_v4: u32,
    pub sources_v6: u32,
    /// The egress rules' array: every (protocol, port) when `[egress]` drops, else one.
    pub egress_ports: u32,
}

impl MapSizes {
    /// The static source tables get room for the compiled lists and a quarter more: they
    /// are preallocated (bucket array and entries, about 80 bytes a slot), so a fixed large
    /// size would cost memory on every host.
    pub fn new(sizes: Sizes, image: &MapImage) -> MapSizes {
        let room = |n: usize| (n + n / 4).max(1024).min(u32::MAX as usize) as u32;
        MapSizes {
            limiter: sizes.limiter_entries,
            blocks_v4: image.blocks_v4.len.max(1),
            blocks_v6: image.blocks_v6.len.max(1),
            sources_v4: room(image.sources_v4.len()),
            sources_v6: room(image.sources_v6.len()),
            egress_ports: if image.config.flags & config_flag::EGRESS_DROP != 0 {
                capacity::EGRESS_PORTS
            } else {
                1
            },
        }
    }
}

/// The eBPF object built by build.rs (aya-build), aligned for the ELF parser.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mirror-xdp"));

/// A hash of the embedded eBPF object (FNV-1a): tells what this build pinned from what
/// another build did.
pub fn build_hash() -> u64 {
    static HASH: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HASH.get_or_init(|| {
        OBJECT.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    })
}

/// Loads the object. With `pins` (the enforcer's folders and the folder of the generation
/// to fill), every shared map is pinned in the pin folder, or reused if that pin exists (the
/// shared maps of a running enforcer), and every policy map in the generation's folder.
/// Reusing checks nothing: [`super::compat::check_pins`] first.
pub fn load(pins: Option<(&Paths, &Path)>, sizes: MapSizes) -> Result<Ebpf, LifecycleError> {
    if OBJECT.is_empty() {
        return Err(LifecycleError::NoObject);
    }
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(map_name::LIMITS, sizes.limiter)
        .map_max_entries(map_name::SOURCES_V4, sizes.sources_v4)
        .map_max_entries(map_name::BLOCKS_V4, sizes.blocks_v4)
        .map_max_entries(map_name::BLOCKS_V6, sizes.blocks_v6)
        .map_max_entries(map_name::SOURCES_V6, sizes.sources_v6)
        .map_max_entries(map_name::EGRESS_PORTS, sizes.egress_ports);
    if let Some((paths, generation_dir)) = pins {
        for name in map_name::ALL {
            let path = if map_name::PER_GENERATION.contains(&name) {
                generation_dir.join(name)
            } else {
                paths.map_pin(name, 0)
            };
            loader.map_pin_path(name, path);
        }
    }
    Ok(loader.load(OBJECT)?)
}

/// The XDP program, loaded into the kernel (verified) but not attached.
pub fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, LifecycleError> {
    let name = program_name::XDP;
    let program: &mut Xdp = program_mut(ebpf, name)?;
    program
        .load()
        .map_err(|source| LifecycleError::Program { name, source })?;
    Ok(program)
}

/// The egress program, loaded but not attached.
pub fn egress_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, LifecycleError> {
    let name = program_name::EGRESS;
    let program: &mut SchedClassifier = program_mut(ebpf, name)?;
    program
        .load()
        .map_err(|source| LifecycleError::Program { name, source })?;
    Ok(program)
}

/// A program of the object as its concrete type.
pub fn program_mut<'a, P>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut P, LifecycleError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(LifecycleError::MissingProgram { name })?
        .try_into()
        .map_err(|source| LifecycleError::Program { name, source })
}

/// Loads both programs (the verifier runs) and pins them in `dir`; returns the XDP
/// program's id.
pub fn load_and_pin_programs(ebpf: &mut Ebpf, dir: &Path) -> Result<u32, LifecycleError> {
    let prog_id = load_and_pin_xdp(ebpf, dir)?;
    load_and_pin_egress(ebpf, dir)?;
    Ok(prog_id)
}

/// Loads the XDP program and pins it in `dir`; returns its id.
pub fn load_and_pin_xdp(ebpf: &mut Ebpf, dir: &Path) -> Result<u32, LifecycleError> {
    let xdp = xdp_program(ebpf)?;
    let prog_id = xdp.info().map(|i| i.id()).unwrap_or(0);
    let path = dir.join(XDP_PROGRAM_PIN);
    xdp.pin(&path)
        .map_err(pin_error(program_name::XDP, path.clone()))?;
    Ok(prog_id)
}

/// Loads the egress program and pins it in `dir`.
pub fn load_and_pin_egress(ebpf: &mut Ebpf, dir: &Path) -> Result<(), LifecycleError> {
    let egress = egress_program(ebpf)?;
    let path = dir.join(EGRESS_PROGRAM_PIN);
    egress
        .pin(&path)
        .map_err(pin_error(program_name::EGRESS, path.clone()))
}

fn pin_error(
    name: &'static str,
    path: std::path::PathBuf,
) -> impl FnOnce(aya::pin::PinError) -> LifecycleError {
    move |e| LifecycleError::PinProgram {
        name,
        path,
        message: e.to_string(),
    }
}

/// The id of the XDP program pinned in a generation's folder.
pub fn pinned_program_id(generation_dir: &Path) -> Result<u32, LifecycleError> {
    let name = program_name::XDP;
    aya::programs::ProgramInfo::from_pin(generation_dir.join(XDP_PROGRAM_PIN))
        .map(|info| info.id())
        .map_err(|source| LifecycleError::Program { name, source })
}

/// What a map of this build looks like to the kernel (`bpf_map_info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

/// The layout of every map of the embedded object, by name (`max_entries` as compiled; the
/// maps that [`load`] sizes differ there).
pub fn layouts() -> Result<std::collections::HashMap<String, MapLayout>, LifecycleError> {
    if OBJECT.is_empty() {
        return Err(LifecycleError::NoObject);
    }
    let object = aya_obj::Object::parse(OBJECT)
        .map_err(|e| LifecycleError::Object(aya::EbpfError::ParseError(e)))?;
    Ok(object
        .maps
        .iter()
        .map(|(name, map)| {
            let layout = MapLayout {
                map_type: map.map_type(),
                key_size: map.key_size(),
                value_size: map.value_size(),
                max_entries: map.max_entries(),
                flags: map.map_flags(),
            };
            (name.clone(), layout)
        })
        .collect())
}

/// The egress and XDP programs pinned in a generation's folder, ready to link or to swap
/// in (verified already: nothing is loaded).
pub fn pinned_programs(dir: &Path) -> Result<(SchedClassifier, Xdp), LifecycleError> {
    let err = |e: &dyn std::fmt::Display| LifecycleError::SwapPrograms {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    };
    let egress = SchedClassifier::from_pin(dir.join(EGRESS_PROGRAM_PIN)).map_err(|e| err(&e))?;
    let xdp = Xdp::from_pin(
        dir.join(XDP_PROGRAM_PIN),
        aya_obj::programs::XdpAttachType::Interface,
    )
    .map_err(|e| err(&e))?;
    Ok((egress, xdp))
}
