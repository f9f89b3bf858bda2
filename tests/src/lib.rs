//! Shared test support: frame builders, network namespaces, servers.
pub mod frames;
pub mod netns;
pub mod probe;
pub mod servers;
pub mod testbed;

pub mod cli;
pub mod cpu;
pub mod flood;
pub mod pinned;
pub mod sweep;
