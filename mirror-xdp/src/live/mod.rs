//! Live changes between reloads: `mirror-xdp source` entries ([`sources`]) and `mirror-xdp
//! port` rules ([`ports`]). Each keeps a persisted store in the state folder that attach and
//! reload write into every new generation, and commands that take the command lock, then
//! change the maps of the generation in force and the store.

pub mod ports;
pub mod sources;
