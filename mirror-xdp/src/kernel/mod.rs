//! Kernel I/O below the lifecycle: typed access to the enforcer's maps ([`maps`]), bulk map
//! writes ([`batch`]), what an interface's driver does before XDP and needs from it
//! ([`nic`]), the `tcp_syncookies` sysctl that SYN cookies need ([`syncookie_sysctl`]), the
//! tc clsact hook's netlink plumbing ([`tc`]) and, for the tests, the live-frames traffic
//! generator ([`trafficgen`]). Nothing here knows about generations, pins' life or commands.

pub mod batch;
pub mod maps;
pub mod nic;
pub mod syncookie_sysctl;
pub mod tc;
#[cfg(feature = "test-support")]
pub mod trafficgen;
