//! Steps 5, 6 and 12: bans, the per-source packet rate, and the per-source and global SYN
//! rates, all as GCRA buckets (see `mirror_xdp_common::Config`).

use aya_ebpf::bindings::BPF_NOEXIST;
use mirror_xdp_common::{
    Config, LimiterKey, config_flag,
    limits::{SYN_KEEPALIVE_NS, syn_keepalive_index},
};

use crate::{
    cells::{LimiterCell, SharedU64},
    maps::{GLOBAL_SYN, LIMITER_NEW, LIMITS, SYN_KEEPALIVE},
    parse::Packet,
};

/// Does one more packet conform to the bucket whose time is `tat`? If so, the bucket's new
/// time (the packet took its token).
#[inline(always)]
pub fn gcra(tat: u64, now: u64, interval: u64, tolerance: u64) -> Option<u64> {
    let start = if tat > now { tat } else { now };
    if start - now > tolerance {
        return None;
    }
    Some(start + interval)
}

/// [`gcra`] on a bucket other CPUs may take tokens from at the same time. CPUs racing may
/// take the same token (a load and a store, not a compare-and-swap: a retry loop would cost
/// more than the blur), which lets a source at most one packet per racing CPU over its
/// burst.
#[inline(always)]
fn gcra_shared(tat: &SharedU64, now: u64, interval: u64, tolerance: u64) -> bool {
    match gcra(tat.load(), now, interval, tolerance) {
        Some(next) => {
            tat.store(next);
            true
        }
        None => false,
    }
}

/// The limiter entry of the packet's source prefix, created on first sight.
#[inline(never)]
pub fn limiter(pkt: &Packet, config: &Config) -> Option<&'static LimiterCell> {
    let key = LimiterKey {
        addr: masked_source(&pkt.src, pkt.v6, config),
        family: if pkt.v6 { 6 } else { 4 },
        _pad: [0; 3],
    };
    if let Some(state) = lookup(&key) {
        return Some(state);
    }
    // A new source starts with full buckets; a full table evicts the least recent source.
    // Counted once: of two CPUs racing to create one source, only one insert succeeds.
    if LIMITS
        .insert(key, LimiterCell::default(), BPF_NOEXIST as u64)
        .is_ok()
        && let Some(created) = LIMITER_NEW.get_ptr_mut(0)
    {
        // SAFETY: a pointer from a lookup of this per-CPU map, valid for the program run;
        // only this CPU's program run writes the slot, so a plain add is exact.
        unsafe { *created += 1 };
    }
    lookup(&key)
}

/// The limiter entry of `key`, if present.
#[inline(always)]
fn lookup(key: &LimiterKey) -> Option<&'static LimiterCell> {
    // SAFETY: a pointer from a map lookup stays valid for the program run, which is as long
    // as the reference lives (nothing keeps it past the run): the LRU map's elements are
    // preallocated and recycled, never freed, while the program holds the map. An evicted
    // element may meanwhile hold another source's words; they are atomics (`SharedU64`), so
    // other CPUs writing them at the same time is allowed: a blurred bucket at worst.
    LIMITS.get_ptr(key).map(|state| unsafe { &*state })
}

/// The source masked to its family's prefix length: `limiter_addr` in two 64-bit words
/// (byte by byte it spills sixteen registers into a frame that adds to the main program's).
#[inline(always)]
fn masked_source(src: &[u8; 16], v6: bool, config: &Config) -> [u8; 16] {
    let len = if v6 {
        config.prefix_v6
    } else {
        config.prefix_v4
    } as u32;
    let word = |at: usize| {
        u64::from_be_bytes([
            src[at],
            src[at + 1],
            src[at + 2],
            src[at + 3],
            src[at + 4],
            src[at + 5],
            src[at + 6],
            src[at + 7],
        ])
    };
    // IPv4 sits in the first 4 bytes, the rest zero; its prefix is at most 32 bits.
    let hi = word(0) & prefix_mask(len);
    let lo = if v6 {
        word(8) & prefix_mask(len.saturating_sub(64))
    } else {
        0
    };
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&hi.to_be_bytes());
    out[8..].copy_from_slice(&lo.to_be_bytes());
    out
}

/// The top `bits` bits of a word set.
#[inline(always)]
fn prefix_mask(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else if bits >= 64 {
        u64::MAX
    } else {
        u64::MAX << (64 - bits)
    }
}

/// Step 6: over the per-source packet rate? Bans the source when bans are on.
#[inline(always)]
pub fn over_pps(state: &LimiterCell, config: &Config, now: u64) -> bool {
    let conforms = gcra_shared(
        &state.pps_tat_ns,
        now,
        config.pps_interval_ns,
        config.pps_tolerance_ns,
    );
    over_then_ban(conforms, state, config, now)
}

/// Step 12, per source: over the per-source SYN rate? Bans the source when bans are on.
#[inline(always)]
pub fn over_source_syn(state: &LimiterCell, config: &Config, now: u64) -> bool {
    let conforms = gcra_shared(
        &state.syn_tat_ns,
        now,
        config.syn_interval_ns,
        config.syn_tolerance_ns,
    );
    over_then_ban(conforms, state, config, now)
}

/// Step 12, global: over this CPU's share of the global SYN budget?
#[inline(always)]
pub fn over_global_syn(config: &Config, now: u64) -> bool {
    if config.flags & config_flag::LIMIT_GLOBAL_SYN == 0 {
        return false;
    }
    let Some(tat) = GLOBAL_SYN.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a pointer from a lookup of this per-CPU map, valid for the program run; only
    // this CPU's program run reads or writes the slot, so plain loads and stores do.
    unsafe {
        match gcra(
            *tat,
            now,
            config.global_syn_interval_ns,
            config.global_syn_tolerance_ns,
        ) {
            Some(next) => {
                *tat = next;
                false
            }
            None => true,
        }
    }
}

/// Step 12 with `syn_cookies`: is a SYN to this (family, port) due to go to the kernel (none
/// went for `SYN_KEEPALIVE_NS`)? A due SYN, or any with `passed` (it goes to the kernel
/// anyway), stamps the time.
#[inline(always)]
pub fn syn_keepalive(pkt: &Packet, now: u64, passed: bool) -> bool {
    let index = syn_keepalive_index(pkt.v6, u16::from_be_bytes(pkt.dport));
    let Some(last) = SYN_KEEPALIVE.get(index) else {
        return false;
    };
    // Two CPUs racing here both store a time of now: either store will do.
    let due = now.saturating_sub(last.load()) >= SYN_KEEPALIVE_NS;
    if due || passed {
        last.store(now);
    }
    due
}

/// A source whose packet did not conform is over its limit, and banned when bans are on.
#[inline(always)]
fn over_then_ban(conforms: bool, state: &LimiterCell, config: &Config, now: u64) -> bool {
    if !conforms && config.ban_ns != 0 {
        state.banned_until_ns.store(now + config.ban_ns);
    }
    !conforms
}
