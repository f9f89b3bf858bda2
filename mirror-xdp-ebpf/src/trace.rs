//! `mirror-xdp trace`: a record per judged packet that matches the trace's filter, at most
//! the filter's rate per CPU. While no trace runs the program reads the filter's first
//! word (an array read the verifier inlines) and goes on.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use mirror_xdp_common::{TraceBucket, TraceEvent, TraceFilter, trace::TRACE_RING_BYTES};

use crate::{clock, limits::gcra, parse::Packet};

#[map(name = "mx_tracef_v1")]
pub static TRACE_FILTER: Array<TraceFilter> = Array::with_max_entries(1, 0);

#[map(name = "mx_trace_v1")]
pub static TRACE: RingBuf = RingBuf::with_byte_size(TRACE_RING_BYTES, 0);

#[map(name = "mx_traceb_v1")]
pub static TRACE_BUCKET: PerCpuArray<TraceBucket> = PerCpuArray::with_max_entries(1, 0);

/// Whether a trace runs.
#[inline(always)]
pub fn on() -> bool {
    TRACE_FILTER.get(0).is_some_and(|f| f.on != 0)
}

/// Writes a record of `pkt` if it matches the filter and the bucket has room. `verdict`:
/// the reason code, and `trace_flag` bits shifted by 8. Not inlined: the main program pays
/// nothing for it while no trace runs.
#[inline(never)]
pub fn emit(pkt: &Packet, verdict: u32, ifindex: u32) {
    let Some(filter) = TRACE_FILTER.get(0) else {
        return;
    };
    let family = if pkt.v6 { 6 } else { 4 };
    if (filter.family != 0 && filter.family != family)
        || (filter.proto != 0 && filter.proto != pkt.proto)
        || (filter.port != [0, 0] && filter.port != pkt.dport)
    {
        return;
    }
    let mut i = 0;
    while i < 16 {
        if pkt.src[i] & filter.mask[i] != filter.addr[i] {
            return;
        }
        i += 1;
    }
    let now = clock::real();
    if now > filter.until_ns {
        return;
    }
    let Some(bucket) = TRACE_BUCKET.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a pointer from a lookup of this per-CPU map, valid for the program run; only
    // this CPU's program run reads or writes the slot.
    let bucket = unsafe { &mut *bucket };
    let Some(next) = gcra(bucket.tat_ns, now, filter.interval_ns, filter.tolerance_ns) else {
        bucket.skipped += 1;
        return;
    };
    // Full (the reader is behind): left out like a packet over the rate.
    let Some(mut entry) = TRACE.reserve::<TraceEvent>(0) else {
        bucket.skipped += 1;
        return;
    };
    bucket.tat_ns = next;
    entry.write(TraceEvent {
        src: pkt.src,
        dst: pkt.dst,
        sport: pkt.sport,
        dport: pkt.dport,
        family,
        proto: pkt.proto,
        reason: verdict as u8,
        flags: (verdict >> 8) as u8,
        ifindex,
        tcp_flags: pkt.tcp_flags,
        icmp_type: pkt.icmp_type,
        _pad: [0; 2],
        time_ns: now,
    });
    entry.submit(0);
}
