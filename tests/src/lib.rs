//! Shared test support: frame builders, network namespaces, servers.
pub mod frames;
pub mod netns;
pub mod probe;
pub mod servers;
pub mod testbed;

pub mod cli;
pub mod cpu;
pub mod differential;
pub mod flood;
pub mod pinned;
pub mod reload;
pub mod repo;
pub mod sweep;
pub mod tools;
pub mod wait;

pub use netns::require_root;
