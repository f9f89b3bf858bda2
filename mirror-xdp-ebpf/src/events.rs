//! Sampled drop events for the daemon's drop log: a record per dropped packet in a ring
//! buffer, at most `DROP_EVENTS_PER_SEC` per CPU (a GCRA bucket per CPU), so a flood of
//! dropped packets cannot flood the ring buffer, the reader or the log.

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use mirror_xdp_common::{
    Config, DropBucket, DropEvent,
    events::{DROP_EVENT_INTERVAL_NS, DROP_EVENT_SKIP, DROP_EVENT_TOLERANCE_NS, DROP_RING_BYTES},
};

use crate::{clock, limits::gcra};

#[map(name = "mx_drops_v1")]
pub static DROPS: RingBuf = RingBuf::with_byte_size(DROP_RING_BYTES, 0);

/// This CPU's event bucket.
#[map(name = "mx_dropsb_v2")]
pub static DROP_BUCKET: PerCpuArray<DropBucket> = PerCpuArray::with_max_entries(1, 0);

/// Does this drop get an event? While the bucket is dry, most drops only count down.
#[inline(always)]
pub fn sampled(config: &Config) -> bool {
    let Some(bucket) = DROP_BUCKET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a pointer from a lookup of this per-CPU map, valid for the program run; only
    // this CPU's program run reads or writes the slot (no atomics needed), and the
    // reference ends with this call.
    let bucket = unsafe { &mut *bucket };
    if bucket.skip > 0 {
        bucket.skip -= 1;
        return false;
    }
    let now = clock::coarse(config);
    if let Some(next) = gcra(
        bucket.tat_ns,
        now,
        DROP_EVENT_INTERVAL_NS,
        DROP_EVENT_TOLERANCE_NS,
    ) {
        bucket.tat_ns = next;
        return true;
    }
    bucket.skip = DROP_EVENT_SKIP;
    false
}

/// The event's small fields packed into one register: a BPF call passes five, and the
/// fewer the caller keeps live across the call, the less it spills onto its stack.
#[inline(always)]
pub fn meta(v6: bool, proto: u8, dport: [u8; 2], reason: u8, flags: u8) -> u64 {
    let family: u64 = if v6 { 6 } else { 4 };
    family
        | (proto as u64) << 8
        | (u16::from_ne_bytes(dport) as u64) << 16
        | (reason as u64) << 32
        | (flags as u64) << 40
}

/// Puts one event in the ring buffer (after [`sampled`] said so). Not inlined: its frame
/// must not add to the main program's (the combined stack is limited to 512 bytes), and
/// the record is written in place in the ring buffer, never built on the stack.
#[inline(never)]
pub fn emit(src: &[u8; 16], meta: u64) {
    // Full (the reader is behind): the event is lost, the packet's verdict is not affected.
    let Some(mut entry) = DROPS.reserve::<DropEvent>(0) else {
        return;
    };
    entry.write(DropEvent {
        src: *src,
        dport: ((meta >> 16) as u16).to_ne_bytes(),
        family: meta as u8,
        proto: (meta >> 8) as u8,
        reason: (meta >> 32) as u8,
        flags: (meta >> 40) as u8,
        _pad: [0; 2],
        time_ns: clock::real(),
    });
    entry.submit(0);
}
