//! mirror-xdp: an XDP port-whitelist firewall for mirror servers.
//!
//! The library holds everything but argument parsing: the policy ([`policy`]), its
//! compilation to map entries ([`compile`]), the reference classifier ([`model`]), the
//! loader that attaches, pins and detaches the kernel programs ([`enforcer`], [`object`],
//! [`maps`], [`state`]), live source entries ([`live`]) and port rules ([`live_ports`]),
//! counters ([`stats`]) and test runs of the program ([`testrun`]).

pub mod audit;
pub mod batch;
pub mod checksum;
pub mod compile;
pub mod daemon;
pub mod enforcer;
pub mod fault;
pub mod layout;
pub mod live;
pub mod live_ports;
pub mod lockout;
pub mod maps;
pub mod metrics;
pub mod model;
pub mod object;
pub mod pending;
pub mod policy;
pub mod recover;
pub mod reload;
pub mod spare;
pub mod state;
pub mod stats;
pub mod syncookies;
pub mod testrun;
pub mod trafficgen;

// Cargo gives the library the binary's dependencies too: man pages and shell completions
// (src/cli).
use clap_complete as _;
use clap_mangen as _;
