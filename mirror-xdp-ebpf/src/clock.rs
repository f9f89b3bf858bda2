//! The programs' clock: `bpf_ktime_get_ns` (CLOCK_MONOTONIC), or the test clock that user
//! space may set in the config for deterministic BPF test runs.

use aya_ebpf::helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};
use mirror_xdp_common::Config;

#[inline(always)]
pub fn now(config: &Config) -> u64 {
    if config.clock_override_ns != 0 {
        return config.clock_override_ns;
    }
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// The real CLOCK_MONOTONIC, whatever the test clock says: a drop event's time is for the
/// log, which turns it into wall-clock time.
#[inline(always)]
pub fn real() -> u64 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// A cheaper clock of jiffy resolution (a few ms), for rate limits that need no more: the
/// drop log's sampling. The test clock overrides it too.
#[inline(always)]
pub fn coarse(config: &Config) -> u64 {
    if config.clock_override_ns != 0 {
        return config.clock_override_ns;
    }
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}
