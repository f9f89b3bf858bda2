//! Steps 5, 6 and 12: bans, the per-source packet rate, and the per-source and global SYN
//! rates, all as GCRA buckets (see `mirror_xdp_common::Config`).

use mirror_xdp_common::{Config, LimiterKey, LimiterState, config_flag, limits::limiter_addr};

use crate::{
    maps::{GLOBAL_SYN, LIMITS},
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
        addr: limiter_addr(pkt.src, pkt.v6, config.prefix_v4, config.prefix_v6),
        family: if pkt.v6 { 6 } else { 4 },
        _pad: [0; 3],
    };
    if let Some(state) = LIMITS.get_ptr_mut(key) {
        return Some(state);
    }
    // A new source starts with full buckets; a full table evicts the least recent source.
    let _ = LIMITS.insert(key, LimiterState::default(), 0);
    LIMITS.get_ptr_mut(key)
}

/// Step 6: over the per-source packet rate? Bans the source when bans are on.
#[inline(always)]
pub fn over_pps(state: &mut LimiterState, config: &Config, now: u64) -> bool {
    if gcra(
        &mut state.pps_tat_ns,
        now,
        config.pps_interval_ns,
        config.pps_tolerance_ns,
    ) {
        return false;
    }
    ban(state, config, now);
    true
}

/// Step 12, per source: over the per-source SYN rate? Bans the source when bans are on.
#[inline(always)]
pub fn over_source_syn(state: &mut LimiterState, config: &Config, now: u64) -> bool {
    if gcra(
        &mut state.syn_tat_ns,
        now,
        config.syn_interval_ns,
        config.syn_tolerance_ns,
    ) {
        return false;
    }
    ban(state, config, now);
    true
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

#[inline(always)]
fn ban(state: &mut LimiterState, config: &Config, now: u64) {
    if config.ban_ns != 0 {
        state.banned_until_ns = now + config.ban_ns;
    }
}
