//! Live changes between reloads, as transactions: `mirror-xdp source` ([`sources`]),
//! `mirror-xdp port allow|remove` ([`ports`]) and `mirror-xdp protocol allow|remove`
//! ([`protocols`]). Each takes the command lock first (attach and
//! reload hold it throughout), runs recovery, then changes the maps of the generation in
//! force and the persisted store ([`crate::live`]), and puts the kernel back if a step
//! fails. Above the lifecycle; nothing below imports it.

pub mod ports;
pub mod protocols;
pub mod sources;
