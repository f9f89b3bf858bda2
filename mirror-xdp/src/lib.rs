//! mirror-xdp: an XDP port-whitelist firewall for mirror servers.
//!
//! The library holds everything but argument parsing: the policy ([`policy`]), its
//! compilation to map entries ([`compile`]), the reference classifier ([`model`]), the
//! loader that attaches, pins and detaches the kernel programs ([`enforcer`], [`object`],
//! [`maps`], [`state`]), counters ([`stats`]) and test runs of the program ([`testrun`]).

pub mod compile;
pub mod enforcer;
pub mod maps;
pub mod model;
pub mod object;
pub mod policy;
pub mod state;
pub mod stats;
pub mod testrun;
