//! The compiled kernel programs embedded in this binary, and loading them.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, Xdp},
};
use mirror_xdp_common::{map_name, program_name};

use crate::enforcer::Sizes;

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

/// Loads the object. With `pin_dir`, every map is pinned there by name, or reused if a pin
/// of that name already exists.
pub fn load(pin_dir: Option<&Path>, sizes: Sizes) -> Result<Ebpf, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(map_name::LIMITS, sizes.limiter_entries);
    if let Some(dir) = pin_dir {
        for name in map_name::ALL {
            loader.map_pin_path(name, dir.join(name));
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
