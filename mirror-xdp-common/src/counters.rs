//! Per-CPU counters: per (reason, dropped) and per (protocol, port).

use crate::Reason;

/// A per-CPU counter slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Per-(protocol, port) counters, indexed like the ports array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounter {
    pub pass_packets: u64,
    pub drop_packets: u64,
}

/// Index of a counter slot in the STATS array.
#[inline(always)]
pub fn stats_index(reason: Reason, dropped: bool) -> u32 {
    (reason as u32) * 2 + dropped as u32
}
