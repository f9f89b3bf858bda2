//! Steps 5, 6 and 12: bans, the per-source packet rate, and the per-source and global SYN
//! rates, all as GCRA buckets (see `mirror_xdp_common::Config`).

use aya_ebpf::bindings::BPF_NOEXIST;
use mirror_xdp_common::{
    Config, LimiterKey, LimiterState, config_flag,
    limits::{SYN_KEEPALIVE_NS, syn_keepalive_index},
};

use crate::{
    maps::{GLOBAL_SYN, LIMITER_NEW, LIMITS, SYN_KEEPALIVE},
    parse::Packet,
};

/// Does one more packet conform to the bucket? If so, it takes its token.
#[inline(always)]
pub fn gcra(tat: &mut u64, now: u64, interval: u64, tolerance: u64) -> bool {
    let start = if *tat > now { *tat } else { now };
    if start - now > tolerance {
        return false;
    }
    *tat = start + interval;
    true
}

/// The limiter entry of the packet's source prefix, created on first sight.
#[inline(never)]
pub fn limiter(pkt: &Packet, config: &Config) -> Option<*mut LimiterState> {
    let key = LimiterKey {
        addr: masked_source(&pkt.src, pkt.v6, config),
        family: if pkt.v6 { 6 } else { 4 },
        _pad: [0; 3],
    };
    if let Some(state) = LIMITS.get_ptr_mut(key) {
        return Some(state);
    }
    // A new source starts with full buckets; a full table evicts the least recent source.
    // Counted once: of two CPUs racing to create one source, only one insert succeeds.
    if LIMITS
        .insert(key, LimiterState::default(), BPF_NOEXIST as u64)
        .is_ok()
        && let Some(created) = LIMITER_NEW.get_ptr_mut(0)
    {
        // SAFETY: a per-CPU slot: no other writer.
        unsafe { *created += 1 };
    }
    LIMITS.get_ptr_mut(key)
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
pub fn over_pps(state: &mut LimiterState, config: &Config, now: u64) -> bool {
    let conforms = gcra(
        &mut state.pps_tat_ns,
        now,
        config.pps_interval_ns,
        config.pps_tolerance_ns,
    );
    over_then_ban(conforms, state, config, now)
}

/// Step 12, per source: over the per-source SYN rate? Bans the source when bans are on.
#[inline(always)]
pub fn over_source_syn(state: &mut LimiterState, config: &Config, now: u64) -> bool {
    let conforms = gcra(
        &mut state.syn_tat_ns,
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
    match GLOBAL_SYN.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot: no other writer.
        Some(tat) => !gcra(
            unsafe { &mut *tat },
            now,
            config.global_syn_interval_ns,
            config.global_syn_tolerance_ns,
        ),
        None => false,
    }
}

/// Step 12 with `syn_cookies`: is a SYN to this (family, port) due to go to the kernel (none
/// went for `SYN_KEEPALIVE_NS`)? A due SYN, or any with `passed` (it goes to the kernel
/// anyway), stamps the time.
#[inline(always)]
pub fn syn_keepalive(pkt: &Packet, now: u64, passed: bool) -> bool {
    let index = syn_keepalive_index(pkt.v6, u16::from_be_bytes(pkt.dport));
    let Some(last) = SYN_KEEPALIVE.get_ptr_mut(index) else {
        return false;
    };
    // SAFETY: a pointer from a map lookup; two CPUs racing here both write a time of now.
    unsafe {
        let due = now.saturating_sub(*last) >= SYN_KEEPALIVE_NS;
        if due || passed {
            *last = now;
        }
        due
    }
}

/// A source whose packet did not conform is over its limit, and banned when bans are on.
#[inline(always)]
fn over_then_ban(conforms: bool, state: &mut LimiterState, config: &Config, now: u64) -> bool {
    if !conforms && config.ban_ns != 0 {
        state.banned_until_ns = now + config.ban_ns;
    }
    !conforms
}
