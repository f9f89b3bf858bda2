//! Sampled drop events: the record the XDP program puts in the drop ring buffer for a packet
//! it drops (or, in monitor mode, would drop), and the kernel-side rate that bounds them.

/// One dropped packet, as `run` logs it. 32 bytes; the ring buffer adds an 8-byte header.
/// Builds before `time_ns` wrote the first 24 bytes only: the reader tells them by the
/// record's length, so the ring buffer keeps its name across the change.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// Network byte order; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    /// Destination port as it stands in the packet (network byte order); zero unless TCP/UDP.
    pub dport: [u8; 2],
    /// 4 or 6.
    pub family: u8,
    /// IP protocol number (for IPv6 the upper-layer header after the extension chain).
    pub proto: u8,
    /// `Reason` code.
    pub reason: u8,
    /// `drop_event_flag::*` bits.
    pub flags: u8,
    pub _pad: [u8; 2],
    /// When the packet was dropped: CLOCK_MONOTONIC (`bpf_ktime_get_ns`), never the test
    /// clock; zero in a record of an older build.
    pub time_ns: u64,
}

/// The size of a record from a build before `DropEvent::time_ns`.
pub const DROP_EVENT_V1_BYTES: usize = 24;

pub mod drop_event_flag {
    /// Monitor mode: the packet passed, but the policy would have dropped it.
    pub const WOULD_DROP: u8 = 1 << 0;
    /// Dropped on the way out (`egress_denied`): `src` holds the destination the host
    /// tried to reach.
    pub const EGRESS: u8 = 1 << 1;
}

/// Size of the drop ring buffer: about 6,500 events, several seconds of the rate below on
/// every CPU of a large host, so a reader that stalls briefly loses nothing.
pub const DROP_RING_BYTES: u32 = 256 * 1024;

/// At most this many events per second per CPU reach the ring buffer (a GCRA bucket per
/// CPU): a flood of dropped packets costs one map lookup each, not a ring buffer write.
pub const DROP_EVENTS_PER_SEC: u64 = 100;
/// The bucket's interval and tolerance (a burst of `DROP_EVENTS_BURST` at once).
pub const DROP_EVENT_INTERVAL_NS: u64 = 1_000_000_000 / DROP_EVENTS_PER_SEC;
pub const DROP_EVENTS_BURST: u64 = 100;
pub const DROP_EVENT_TOLERANCE_NS: u64 = (DROP_EVENTS_BURST - 1) * DROP_EVENT_INTERVAL_NS;

/// A CPU's drop-event bucket: the GCRA time, and how many drops go by without an event
/// before the clock is read again once the bucket ran dry. Reading the clock costs more
/// than the rest of a closed-port drop: during a flood only one drop in
/// `DROP_EVENT_SKIP + 1` does it, and the events still keep to the rate above.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropBucket {
    pub tat_ns: u64,
    pub skip: u64,
}

pub const DROP_EVENT_SKIP: u64 = 63;
