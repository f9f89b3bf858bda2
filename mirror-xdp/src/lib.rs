//! mirror-xdp: an XDP port-whitelist firewall for mirror servers.
//!
//! The library holds everything but argument parsing: the policy ([`policy`]), its
//! compilation to map entries ([`compile`]), the reference classifier ([`model`]), the
//! lifecycle of the kernel programs: attach, reload, detach and crash recovery
//! ([`lifecycle`], over [`maps`] and [`state`]), live source entries ([`live`]) and port rules
//! ([`live_ports`]), counters ([`stats`]) and test runs of the program ([`testrun`]).
//!
//! The `test-support` feature adds what only the tests use: crash points
//! ([`lifecycle::fault`]), the traffic generator and the bare baseline programs.

pub mod audit;
pub mod batch;
pub mod checksum;
pub mod compile;
pub mod daemon;
pub mod lifecycle;
pub mod live;
pub mod live_ports;
pub mod lockout;
pub mod maps;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod state;
pub mod statedir;
pub mod stats;
pub mod syncookies;
pub mod testrun;
#[cfg(feature = "test-support")]
pub mod trafficgen;

// Cargo gives the library the binary's dependencies too: man pages and shell completions
// (src/cli).
use clap_complete as _;
use clap_mangen as _;
