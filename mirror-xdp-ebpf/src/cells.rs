//! The program's view of map values that several CPUs (or user space) write while the
//! program reads them (the flow, limiter and live-entry tables, the flow-ports, SYN
//! keepalive and live-block arrays): atomics, so that the program only ever holds shared
//! references to them, never a `&mut` no CPU has a right to. Each has the size and field offsets of the `mirror-xdp-common` type user space
//! uses for the map (checked below).
//!
//! Loads and stores are single plain BPF loads and stores, written as inline assembly: the
//! BPF backend cannot select Rust's relaxed atomic loads and stores for the CPU version the
//! programs target, and a plain Rust access racing with another CPU's write would be a data
//! race. Assembly is opaque to the compiler and counts as an atomic access. Hit counts use
//! the BPF atomic add (`BPF_ATOMIC | BPF_ADD | BPF_FETCH`, verified on map values since 5.12:
//! 6.1 included). Per-CPU maps (counters, buckets) are written plainly: only their own
//! CPU's program run touches a slot.

#[cfg(not(target_arch = "bpf"))]
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use core::{
    cell::UnsafeCell,
    mem::{offset_of, size_of},
};

use mirror_xdp_common::{FlowState, LimiterState, LiveEntry};

/// A `u64` of a map value that several CPUs read and write at the same time.
#[repr(transparent)]
#[derive(Default)]
pub struct SharedU64(UnsafeCell<u64>);

// SAFETY: the word is only read and written with single (atomic) load and store
// instructions, through `load` and `store`.
unsafe impl Sync for SharedU64 {}

impl SharedU64 {
    pub const fn new(value: u64) -> Self {
        SharedU64(UnsafeCell::new(value))
    }

    /// The word, with one load instruction (a relaxed atomic load).
    #[inline(always)]
    pub fn load(&self) -> u64 {
        let at = self.0.get();
        #[cfg(target_arch = "bpf")]
        {
            let value: u64;
            // SAFETY: `at` is this map word, valid and 8-byte aligned for the program run
            // (map values are 8-byte aligned, and so is the word inside its `repr(C)` value);
            // the assembly only reads it.
            unsafe {
                core::arch::asm!(
                    "{value} = *(u64 *)({at} + 0)",
                    at = in(reg) at,
                    value = lateout(reg) value,
                    options(nostack, readonly, preserves_flags),
                );
            }
            value
        }
        // On the host the programs are only type-checked (clippy), never run.
        #[cfg(not(target_arch = "bpf"))]
        // SAFETY: as above; other accesses are atomic too.
        unsafe {
            AtomicU64::from_ptr(at).load(Relaxed)
        }
    }

    /// Stores `value`, with one store instruction (a relaxed atomic store).
    #[inline(always)]
    pub fn store(&self, value: u64) {
        let at = self.0.get();
        #[cfg(target_arch = "bpf")]
        // SAFETY: as in `load`; the assembly writes only this word.
        unsafe {
            core::arch::asm!(
                "*(u64 *)({at} + 0) = {value}",
                at = in(reg) at,
                value = in(reg) value,
                options(nostack, preserves_flags),
            );
        }
        #[cfg(not(target_arch = "bpf"))]
        // SAFETY: as in `load`.
        unsafe {
            AtomicU64::from_ptr(at).store(value, Relaxed)
        }
    }
}

/// A FLOWS value ([`FlowState`]).
#[repr(C)]
pub struct FlowCell {
    pub last_seen_ns: SharedU64,
}

/// A LIMITS value ([`LimiterState`]): the GCRA times of one source; a new source starts
/// at zero (full buckets, not banned).
#[repr(C)]
#[derive(Default)]
pub struct LimiterCell {
    pub pps_tat_ns: SharedU64,
    pub syn_tat_ns: SharedU64,
    pub banned_until_ns: SharedU64,
}

/// A live-entry trie value ([`LiveEntry`]), its words as halves. An LPM trie stores a
/// value right after its key, so a value of the IPv4 tries (4-byte key data) is only 4-byte
/// aligned: a 64-bit atomic there would be undefined in Rust and fault on CPUs without
/// unaligned atomics (arm64). 32-bit halves, low first (the BPF target is little-endian),
/// are aligned in every trie.
#[repr(C)]
pub struct LiveCell {
    /// Never written while the program can see it: a trie update puts a new node in place.
    expires_ns: [u32; 2],
    /// Written by the programs only, with atomic adds.
    hits: UnsafeCell<[u32; 2]>,
}

// SAFETY: the only write through a shared `LiveCell` is `count_hit`'s atomic add.
unsafe impl Sync for LiveCell {}

impl LiveCell {
    /// When the entry stops applying.
    #[inline(always)]
    pub fn expires_ns(&self) -> u64 {
        let [lo, hi] = self.expires_ns;
        (hi as u64) << 32 | lo as u64
    }

    /// Counts one hit, exactly: the low half with an atomic add, and the carry into the
    /// high half by the one CPU whose add wrapped the low half.
    #[inline(always)]
    pub fn count_hit(&self) {
        let hits = self.hits.get().cast::<u32>();
        // SAFETY: both halves lie inside this map value, which is valid for the program
        // run, 4-byte aligned, and only ever written with atomic adds.
        unsafe {
            if fetch_add_u32(hits, 1) == u32::MAX {
                fetch_add_u32(hits.add(1), 1);
            }
        }
    }
}

/// A relaxed atomic add of `value` to the `u32` at `at`; the old value. One BPF instruction,
/// `BPF_ATOMIC | BPF_W | BPF_ADD | BPF_FETCH` (verified on map values since 5.12), written
/// as assembly: core has no `AtomicU32` on the BPF target, and the backend emits fetching
/// atomics only for a newer CPU version than the programs are built for.
///
/// # Safety
/// `at` is valid for reads and writes, 4-byte aligned, and accessed only atomically.
#[inline(always)]
unsafe fn fetch_add_u32(at: *mut u32, value: u32) -> u32 {
    #[cfg(target_arch = "bpf")]
    {
        let old: u64;
        // SAFETY: as the caller promises; the instruction touches only the word at `at`.
        // A 32-bit BPF operation zero-extends its result into the 64-bit register.
        unsafe {
            core::arch::asm!(
                "w1 = atomic_fetch_add((u32 *)(r2 + 0), w1)",
                inout("r1") value as u64 => old,
                in("r2") at,
                options(nostack, preserves_flags),
            );
        }
        old as u32
    }
    // On the host the programs are only type-checked (clippy), never run.
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as the caller promises.
    unsafe {
        AtomicU32::from_ptr(at).fetch_add(value, Relaxed)
    }
}

// Same bytes as the shared types user space reads and writes (the object test in
// mirror-xdp/tests/object_maps.rs checks the object's maps against those).
const _: () = {
    assert!(cfg!(target_endian = "little"));
    assert!(size_of::<SharedU64>() == size_of::<u64>());
    assert!(size_of::<FlowCell>() == size_of::<FlowState>());
    assert!(offset_of!(FlowCell, last_seen_ns) == offset_of!(FlowState, last_seen_ns));
    assert!(size_of::<LimiterCell>() == size_of::<LimiterState>());
    assert!(offset_of!(LimiterCell, pps_tat_ns) == offset_of!(LimiterState, pps_tat_ns));
    assert!(offset_of!(LimiterCell, syn_tat_ns) == offset_of!(LimiterState, syn_tat_ns));
    assert!(offset_of!(LimiterCell, banned_until_ns) == offset_of!(LimiterState, banned_until_ns));
    assert!(size_of::<LiveCell>() == size_of::<LiveEntry>());
    assert!(offset_of!(LiveCell, expires_ns) == offset_of!(LiveEntry, expires_ns));
    assert!(offset_of!(LiveCell, hits) == offset_of!(LiveEntry, hits));
};
