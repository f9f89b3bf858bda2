//! The compiled kernel programs embedded in this binary, and loading them.

use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, Xdp},
};
use mirror_xdp_common::{map_name, program_name};

use crate::{compile::MapImage, enforcer::Sizes, state::Paths};

/// The sizes of the maps that are sized at load time.
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    pub limiter: u32,
    /// Words of the IPv4 block array: all of them when there is an IPv4 list, else one.
    pub blocks_v4: u32,
    pub sources_v4: u32,
    pub sources_v6: u32,
}

impl MapSizes {
    /// The static source tables get room for the compiled lists and a quarter more: a
    /// hash table's bucket array is allocated for its whole capacity (16 bytes a slot),
    /// so a fixed large size would cost memory on every host.
    pub fn new(sizes: Sizes, image: &MapImage) -> MapSizes {
        let room = |n: usize| (n + n / 4).max(1024).min(u32::MAX as usize) as u32;
        MapSizes {
            limiter: sizes.limiter_entries,
            blocks_v4: if image.blocks_v4.is_empty() {
                1
            } else {
                mirror_xdp_common::sources::BLOCK_WORDS_V4
            },
            sources_v4: room(image.sources_v4.len()),
            sources_v6: room(image.sources_v6.len()),
        }
    }
}

/// The eBPF object built by build.rs (aya-build), aligned for the ELF parser.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mirror-xdp"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this binary was built without its eBPF programs (MIRROR_XDP_SKIP_EBPF); rebuild without it"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("program {name} is missing from the eBPF object")]
    MissingProgram { name: &'static str },
    #[error("the kernel refused program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
}

/// Loads the object. With `pins` (the enforcer's folders and the generation to fill),
/// every map is pinned where [`Paths::map_pin`] says, or reused if that pin exists: the
/// shared maps of a running enforcer are reused, a new generation's policy maps are new.
pub fn load(pins: Option<(&Paths, u64)>, sizes: MapSizes) -> Result<Ebpf, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(map_name::LIMITS, sizes.limiter)
        .map_max_entries(map_name::SOURCES_V4, sizes.sources_v4)
        .map_max_entries(map_name::BLOCKS_V4, sizes.blocks_v4)
        .map_max_entries(map_name::SOURCES_V6, sizes.sources_v6);
    if let Some((paths, generation)) = pins {
        for name in map_name::ALL {
            loader.map_pin_path(name, paths.map_pin(name, generation));
        }
    }
    Ok(loader.load(OBJECT)?)
}

/// The XDP program, loaded into the kernel (verified) but not attached.
pub fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    let name = program_name::XDP;
    let program: &mut Xdp = program_mut(ebpf, name)?;
    program
        .load()
        .map_err(|source| LoadError::Program { name, source })?;
    Ok(program)
}

/// The egress program, loaded but not attached.
pub fn egress_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, LoadError> {
    let name = program_name::EGRESS;
    let program: &mut SchedClassifier = program_mut(ebpf, name)?;
    program
        .load()
        .map_err(|source| LoadError::Program { name, source })?;
    Ok(program)
}

/// A program of the object as its concrete type.
pub fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, LoadError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(LoadError::MissingProgram { name })?
        .try_into()
        .map_err(|source| LoadError::Program { name, source })
}
