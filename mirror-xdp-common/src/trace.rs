//! `mirror-xdp trace`: the filter user space sets while a trace runs, the record the XDP
//! program writes for each judged packet that matches it, and the per-CPU bucket that
//! bounds their rate.

/// What to trace. `on` is zero while no trace runs: then the program reads this one word
/// and goes on. A zero `family`, `proto` or `port` matches any.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceFilter {
    pub on: u32,
    /// 4 or 6; 0: any source.
    pub family: u8,
    /// IP protocol number; 0: any.
    pub proto: u8,
    /// Destination port (network byte order); zero: any.
    pub port: [u8; 2],
    /// The source prefix (network byte order, IPv4 in the first 4 bytes) and its mask:
    /// a packet matches when `src & mask == addr`.
    pub addr: [u8; 16],
    pub mask: [u8; 16],
    /// The trace's lease (CLOCK_MONOTONIC): a trace that died without switching the
    /// filter off stops costing anything when it runs out.
    pub until_ns: u64,
    /// The rate bound's GCRA parameters, per CPU.
    pub interval_ns: u64,
    pub tolerance_ns: u64,
}

/// One judged packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceEvent {
    /// Network byte order; IPv4 in the first 4 bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Ports as they stand in the packet (network byte order); zero unless TCP/UDP.
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    /// 4 or 6.
    pub family: u8,
    pub proto: u8,
    /// `Reason` code.
    pub reason: u8,
    /// `trace_flag::*` bits.
    pub flags: u8,
    /// The interface the packet came in on.
    pub ifindex: u32,
    /// TCP flags byte; ICMP type.
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub _pad: [u8; 2],
    /// When it was judged: CLOCK_MONOTONIC.
    pub time_ns: u64,
}

pub mod trace_flag {
    /// The verdict drops it (in monitor mode: would drop; it passes).
    pub const DROP: u8 = 1 << 0;
    pub const MONITOR: u8 = 1 << 1;
    /// Answered with a SYN cookie (XDP_TX).
    pub const TX: u8 = 1 << 2;
}

/// A CPU's bucket: the GCRA time, and the matching packets it left out.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceBucket {
    pub tat_ns: u64,
    pub skipped: u64,
}

/// Records the ring buffer holds (each 56 bytes and an 8-byte header).
pub const TRACE_RING_BYTES: u32 = 64 * 1024;
