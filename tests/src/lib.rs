//! Shared test support: frame builders, network namespaces, servers.
pub mod bond;
pub mod frames;
pub mod netns;
pub mod probe;
pub mod servers;
pub mod testbed;
pub mod virtio;

pub mod cli;
pub mod cookie_download;
pub mod cpu;
pub mod crowdsec;
pub mod debian_root;
pub mod differential;
pub mod egress_hook;
pub mod flood;
pub mod keepalived;
pub mod metrics;
pub mod pinned;
pub mod reload;
pub mod repo;
pub mod sweep;
pub mod syn_flood;
pub mod tools;
pub mod wait;

pub use netns::require_root;

// Cargo gives the library the dependencies of the demo and bench binaries (command lines,
// the chart) and of the deploy test (YAML) too.
use clap as _;
use plotters as _;
#[cfg(test)]
use serde_yaml as _;
