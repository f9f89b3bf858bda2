//! mirror-xdp: an XDP port-whitelist firewall for mirror servers.
//!
//! The library holds everything but argument parsing and output formatting (`src/cli`).
//! Its groups, bottom to top; each imports only from the groups listed before it:
//! - [`build_info`]: the version, commit and eBPF object hash of this build.
//! - [`policy`]: the policy file, parsed and validated (errors with file:line:col); pure.
//! - [`import`]: other firewalls' rule sets written out as a policy; pure.
//! - [`compile`]: a policy compiled to map entries; pure.
//! - [`model`]: the reference classifier, the same verdict order in plain Rust (the tests'
//!   oracle and the lock-out judge's); pure.
//! - [`state`]: the folders an enforcer lives in, its state record, the command lock and
//!   atomic writes.
//! - [`kernel`]: kernel I/O: typed maps, batched writes, the syncookie sysctl.
//! - [`live`]: the persisted live `source` entries and `port` rules, and writing them into
//!   a generation's maps.
//! - [`lifecycle`]: attach, reload and detach, crash-safe, and the recovery that finishes
//!   or rolls back a killed command; the lock-out check they run first.
//! - [`control`]: the `source` and `port` commands, under the command lock, on the
//!   generation in force.
//! - [`observe`]: counters, metrics, test runs of the program and the bypass audit.
//! - [`daemon`]: `mirror-xdp run`, the foreground daemon.
//!
//! The `test-support` feature adds what only the tests use: crash points
//! ([`lifecycle::fault`]), the traffic generator and the bare baseline programs.

pub mod build_info;
pub mod compile;
pub mod control;
pub mod crowdsec;
pub mod daemon;
pub mod import;
pub mod kernel;
pub mod lifecycle;
pub mod live;
pub mod model;
pub mod observe;
pub mod policy;
pub mod state;

// Cargo gives the library the binary's dependencies too: man pages and shell completions
// (src/cli).
use clap_complete as _;
use clap_mangen as _;
