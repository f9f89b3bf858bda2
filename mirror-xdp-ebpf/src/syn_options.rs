//! The options of a SYN that a timestamp cookie carries (window scale, SACK-permitted, the
//! timestamp), read from the frame for `syncookie`: a global function of its own, which the
//! verifier checks once, and a walk over the option bytes without branches on them.

use aya_ebpf::{bindings::xdp_md, cty::c_void, helpers::bpf_xdp_load_bytes};
use mirror_xdp_common::{
    cookie_option, tcp_option as opt,
    wire::{
        ETH_HLEN, IPV4_MIN_HLEN, IPV6_HLEN, MAX_VLAN_TAGS, TCP_MAX_HLEN, TCP_MIN_HLEN, VLAN_TAG_LEN,
    },
};

use crate::maps::CONFIG;

/// The IP header starts at most behind two VLAN tags.
pub const MAX_IP_OFF: usize = ETH_HLEN + MAX_VLAN_TAGS * VLAN_TAG_LEN;
const TCP_BARE: usize = TCP_MIN_HLEN;

/// Room for a SYN's option bytes (at most 40), a power of two to mask indexes with.
const OPTION_BUFFER: usize = 64;

/// The options of the SYN whose IP header is at `ip_off` that a timestamp cookie carries
/// (`SynOptions::pack`); 0 if the host allows no timestamp cookies.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mx_syn_options(ctx: *mut xdp_md, ip_off: u32, v6: u32) -> u64 {
    let Some(config) = CONFIG.get(0) else {
        return 0;
    };
    if config.cookie_options & cookie_option::TIMESTAMPS == 0 || ip_off as usize > MAX_IP_OFF {
        return 0;
    }
    let ip_len = if v6 != 0 { IPV6_HLEN } else { IPV4_MIN_HLEN };
    let th = bounded_ip_off(ip_off) + ip_len;
    let mut data_offset = 0u8;
    // SAFETY: one byte into a local; the helper checks the frame's bounds.
    let read = unsafe {
        bpf_xdp_load_bytes(
            ctx,
            (th + 12) as u32,
            &mut data_offset as *mut u8 as *mut c_void,
            1,
        )
    };
    let header_len = (data_offset >> 4) as usize * 4;
    if read != 0 || header_len <= TCP_BARE {
        return 0;
    }
    SynOptions::read(ctx, (th + TCP_BARE) as u32, header_len - TCP_BARE).pack()
}

/// The SYN's options that a timestamp cookie carries, read as the kernel's
/// `tcp_parse_options` does: in order, the last of a kind wins; an end-of-list, a length
/// under 2 or past the header ends the walk.
pub struct SynOptions {
    pub timestamp: bool,
    pub tsval: u32,
    pub has_wscale: bool,
    /// The client's window scale as sent (the kernel takes one over `MAX_WSCALE` as
    /// `MAX_WSCALE`).
    pub wscale: u8,
    pub sack: bool,
}

/// `ip_off`, which the caller checked is at most `MAX_IP_OFF`, so that the verifier knows
/// it too. It checks a global function with any value of `ip_off` and may not see what the
/// comparison proved (LLVM can compare one copy and use another): a mask it cannot drop
/// bounds the one used.
#[inline(always)]
pub fn bounded_ip_off(ip_off: u32) -> usize {
    (opaque(ip_off as u64) & 31) as usize
}

/// `x`, hidden from LLVM's optimiser (a stack round trip it may not look through).
#[inline(always)]
pub fn opaque(x: u64) -> u64 {
    // SAFETY: reading a local.
    unsafe { core::ptr::read_volatile(&x) }
}

/// 1 if `a == b`, else 0; for values below 2^63. Opaque on both sides: LLVM would make a
/// comparison of the input and a branch on the output.
#[inline(always)]
fn equal(a: u64, b: u64) -> u64 {
    opaque(opaque(a ^ b).wrapping_sub(1) >> 63)
}

/// 1 if `a < b`, else 0; for values below 2^63.
#[inline(always)]
fn below(a: u64, b: u64) -> u64 {
    opaque(opaque(a.wrapping_sub(b)) >> 63)
}

/// `new` if `flag` is 1, `old` if it is 0.
#[inline(always)]
fn pick(flag: u64, new: u64, old: u64) -> u64 {
    old ^ ((old ^ new) & 0u64.wrapping_sub(flag))
}

impl SynOptions {
    const TIMESTAMP: u64 = 1 << 0;
    const SACK: u64 = 1 << 1;
    const WSCALE: u64 = 1 << 2;

    /// The options of `len` bytes (at most 40) at `options_at` in the frame.
    #[inline(always)]
    fn read(ctx: *mut xdp_md, options_at: u32, len: usize) -> SynOptions {
        let none = SynOptions::unpack(0);
        // Copied to the stack by the helper, in one piece whatever their length.
        let mut bytes = [0u8; OPTION_BUFFER];
        if len == 0 || len > TCP_MAX_HLEN - TCP_BARE {
            return none;
        }
        // SAFETY: `len` bytes fit in `bytes`; the helper checks the frame's bounds.
        let copied = unsafe {
            bpf_xdp_load_bytes(
                ctx,
                options_at,
                bytes.as_mut_ptr() as *mut c_void,
                len as u32,
            )
        };
        if copied != 0 {
            return none;
        }
        // Without a branch on the bytes: the verifier follows every path through a loop
        // and merges paths only where their states agree, so a walk that branched on the
        // option bytes made it follow every layout of them, past its limit. Here each step
        // is arithmetic on 0/1 flags; `opaque` keeps LLVM from turning that back into
        // comparisons and branches.
        let byte = |k: u64| {
            // SAFETY: reading a local array at an index masked to its size.
            let b = unsafe { core::ptr::read_volatile(&bytes[k as usize & (OPTION_BUFFER - 1)]) };
            b as u64
        };
        let len = len as u64;
        let (mut at, mut stop, mut found) = (0u64, 0u64, 0u64);
        let (mut wscale, mut tsval) = (0u64, 0u64);
        // Every step moves on by a byte at least, or stops.
        for _ in 0..TCP_MAX_HLEN - TCP_BARE {
            if stop != 0 {
                break;
            }
            let (kind, size) = (byte(at), byte(at + 1));
            let inside = below(at, len);
            let nop = inside & equal(kind, opt::NOP as u64);
            // A whole option: not an end or a NOP, a length of 2 or more within the header.
            let option = inside
                & (1 - equal(kind, opt::END as u64))
                & (1 - nop)
                & below(at + 1, len)
                & (1 - below(size, 2))
                & (1 - below(len, at + size));
            stop = (1 - nop) & (1 - option);
            let is = |k: u8, s: u8| option & equal(kind, k as u64) & equal(size, s as u64);
            let ws = is(opt::WINDOW_SCALE, opt::WINDOW_SCALE_LEN);
            wscale = pick(ws, byte(at + 2), wscale);
            let ts = is(opt::TIMESTAMP, opt::TIMESTAMP_LEN);
            let value =
                (byte(at + 2) << 24) | (byte(at + 3) << 16) | (byte(at + 4) << 8) | byte(at + 5);
            tsval = pick(ts, value, tsval);
            let sack = is(opt::SACK_PERMITTED, opt::SACK_PERMITTED_LEN);
            found |= (ts * Self::TIMESTAMP) | (sack * Self::SACK) | (ws * Self::WSCALE);
            at += nop + option * size;
        }
        SynOptions::unpack((tsval << 32) | (wscale << 8) | found)
    }

    /// In a number, to return from a global function.
    #[inline(always)]
    fn pack(&self) -> u64 {
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        (self.tsval as u64) << 32
            | (self.wscale as u64) << 8
            | flag(self.timestamp, Self::TIMESTAMP)
            | flag(self.sack, Self::SACK)
            | flag(self.has_wscale, Self::WSCALE)
    }

    #[inline(always)]
    pub fn unpack(packed: u64) -> SynOptions {
        SynOptions {
            timestamp: packed & Self::TIMESTAMP != 0,
            tsval: (packed >> 32) as u32,
            has_wscale: packed & Self::WSCALE != 0,
            wscale: (packed >> 8) as u8,
            sack: packed & Self::SACK != 0,
        }
    }
}
