//! A live-frames traffic generator: `flood_tx` rewrites a template frame (Ethernet, IPv4
//! with IHL 5 or IPv6 without extension headers, then TCP or UDP) and sends it back out with
//! XDP_TX, so a BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES becomes a flood of
//! millions of packets per second that the receiving stack accepts.
//!
//! Settings (the `tg_settings` array, written by mirror-xdp/src/trafficgen.rs):
//! index 0 = how many low bits of the source address to randomise (0-32; of the last 32-bit
//! word for IPv6), index 1 = flags (1: random source port 1024-65535, 2: random TCP
//! sequence number), index 2 = the length of the template's headers (Ethernet to the end
//! of TCP or UDP) in `tg_template`, written back over each frame first: 42, 54, 62 or 74, or
//! 0 for none. A receiver may rewrite a frame in place and send it back (a SYN cookie
//! answer), and live-frames pages come back to the generator as they are. The user space
//! side checks the template's layout; this side only refuses (XDP_ABORTED) what it cannot
//! bound.
// On the host (clippy, `cargo check --workspace`) these are ordinary std binaries.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use core::mem::offset_of;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_get_prandom_u32, macros::map, macros::xdp, maps::Array,
    programs::XdpContext,
};
use mirror_xdp_common::wire::{ETH_HLEN, IPV4_MIN_HLEN, IPV6_HLEN, ethertype, ipproto};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};

const SETTING_SRC_BITS: u32 = 0;
const SETTING_FLAGS: u32 = 1;
const SETTING_HEADERS: u32 = 2;
/// The longest headers written back: Ethernet, IPv6, TCP without options.
const TEMPLATE_HEADERS: usize = 74;
const FLAG_RANDOM_SPORT: u32 = 1;
const FLAG_RANDOM_SEQ: u32 = 2;

const ETH_LEN: usize = ETH_HLEN;
const IPV4_L4: usize = ETH_LEN + IPV4_MIN_HLEN;
const IPV6_L4: usize = ETH_LEN + IPV6_HLEN;
const PROTO_TCP: u8 = ipproto::TCP;
const PROTO_UDP: u8 = ipproto::UDP;
/// The last 32 bits of the IPv6 source address: the word this generator randomises.
const IPV6_SRC_LOW_WORD: usize = offset_of!(Ipv6Hdr, src_addr) + 12;

#[map(name = "tg_settings")]
static SETTINGS: Array<u32> = Array::with_max_entries(3, 0);

#[map(name = "tg_template")]
static TEMPLATE: Array<[u8; TEMPLATE_HEADERS]> = Array::with_max_entries(1, 0);

#[xdp]
pub fn flood_tx(ctx: XdpContext) -> u32 {
    match rewrite(&ctx) {
        Some(()) => xdp_action::XDP_TX,
        None => xdp_action::XDP_ABORTED,
    }
}

#[inline(always)]
fn random() -> u32 {
    // SAFETY: the helper takes no arguments and has no preconditions.
    unsafe { bpf_get_prandom_u32() }
}

fn setting(index: u32) -> u32 {
    SETTINGS.get(index).copied().unwrap_or(0)
}

/// A pointer to `N` bytes at `off`, if they lie inside the frame.
#[inline(always)]
fn at<const N: usize>(ctx: &XdpContext, off: usize) -> Option<*mut [u8; N]> {
    if ctx.data() + off + N > ctx.data_end() {
        return None;
    }
    Some((ctx.data() + off) as *mut [u8; N])
}

/// The 16-bit word at `p` as it stands in memory: the one's complement sum is the same in
/// either byte order (RFC 1071), so no swapping is needed as long as every word is read alike.
#[inline(always)]
fn word(p: *mut [u8; 2]) -> u16 {
    // SAFETY: `at` checked the bounds; [u8; 2] has alignment 1.
    u16::from_ne_bytes(unsafe { *p })
}

#[inline(always)]
fn set_word(p: *mut [u8; 2], v: u16) {
    // SAFETY: as in `word`.
    unsafe { *p = v.to_ne_bytes() }
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for the words `old` replaced by `new`.
#[inline(always)]
fn csum_update(check: u16, old: &[u16], new: &[u16]) -> u16 {
    let mut sum = u32::from(!check);
    for (o, n) in old.iter().zip(new) {
        sum += u32::from(!*o) + u32::from(*n);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Words of a 32-bit value as it stands in memory (see `word`).
#[inline(always)]
fn halves(v: [u8; 4]) -> [u16; 2] {
    [
        u16::from_ne_bytes([v[0], v[1]]),
        u16::from_ne_bytes([v[2], v[3]]),
    ]
}

/// Writes the template's headers back over the frame's (see the settings).
#[inline(always)]
fn restore(ctx: &XdpContext) -> Option<()> {
    let template = TEMPLATE.get(0)?;
    match setting(SETTING_HEADERS) {
        42 => copy::<42>(ctx, template),
        54 => copy::<54>(ctx, template),
        62 => copy::<62>(ctx, template),
        74 => copy::<74>(ctx, template),
        _ => Some(()),
    }
}

#[inline(always)]
fn copy<const N: usize>(ctx: &XdpContext, template: &[u8; TEMPLATE_HEADERS]) -> Option<()> {
    let frame = at::<N>(ctx, 0)?;
    // SAFETY: `at` checked the frame holds N bytes; the template holds 74 >= N.
    unsafe { core::ptr::copy_nonoverlapping(template.as_ptr(), frame as *mut u8, N) };
    Some(())
}

fn rewrite(ctx: &XdpContext) -> Option<()> {
    restore(ctx)?;
    let ethertype_at = at::<2>(ctx, offset_of!(EthHdr, ether_type))?;
    // SAFETY: `at` checked the bounds; [u8; N] has alignment 1 (so for every `at` below).
    let ethertype = u16::from_be_bytes(unsafe { *ethertype_at });
    let (v6, proto, src_off, l4) = match ethertype {
        ethertype::IPV4 => {
            let proto = at::<1>(ctx, ETH_LEN + offset_of!(Ipv4Hdr, proto))?;
            // SAFETY: as above.
            let proto = unsafe { (*proto)[0] };
            (
                false,
                proto,
                ETH_LEN + offset_of!(Ipv4Hdr, src_addr),
                IPV4_L4,
            )
        }
        ethertype::IPV6 => {
            let next = at::<1>(ctx, ETH_LEN + offset_of!(Ipv6Hdr, next_hdr))?;
            // SAFETY: as above.
            let next = unsafe { (*next)[0] };
            (true, next, ETH_LEN + IPV6_SRC_LOW_WORD, IPV6_L4)
        }
        _ => return None,
    };
    let check_off = match proto {
        PROTO_TCP => l4 + offset_of!(TcpHdr, check),
        PROTO_UDP => l4 + offset_of!(UdpHdr, check),
        _ => return None,
    };
    let l4_check = at::<2>(ctx, check_off)?;
    let mut old = [0u16; 5];
    let mut new = [0u16; 5];

    // The source address word (IPv4's address, IPv6's last 32 bits).
    let bits = setting(SETTING_SRC_BITS);
    let src = at::<4>(ctx, src_off)?;
    // SAFETY: as above.
    let before = unsafe { *src };
    let mask: u32 = match bits {
        0 => 0,
        1..=31 => (1u32 << bits) - 1,
        _ => u32::MAX,
    };
    let keep = u32::from_be_bytes(before) & !mask;
    let after = (keep | (random() & mask)).to_be_bytes();
    // SAFETY: as above.
    unsafe { *src = after };
    [old[0], old[1]] = halves(before);
    [new[0], new[1]] = halves(after);

    let flags = setting(SETTING_FLAGS);
    let sport = at::<2>(ctx, l4)?;
    old[2] = word(sport);
    new[2] = old[2];
    if flags & FLAG_RANDOM_SPORT != 0 {
        let port = 1024 + (random() % (65536 - 1024)) as u16;
        new[2] = u16::from_ne_bytes(port.to_be_bytes());
        set_word(sport, new[2]);
    }
    if proto == PROTO_TCP {
        let seq = at::<4>(ctx, l4 + offset_of!(TcpHdr, seq))?;
        // SAFETY: as above.
        let before = unsafe { *seq };
        let after = if flags & FLAG_RANDOM_SEQ != 0 {
            random().to_ne_bytes()
        } else {
            before
        };
        // SAFETY: as above.
        unsafe { *seq = after };
        [old[3], old[4]] = halves(before);
        [new[3], new[4]] = halves(after);
    }

    // The L4 checksum covers the pseudo-header (source address) and the changed words.
    let check = word(l4_check);
    // An IPv4 UDP checksum of zero means "none": leave it so.
    if !(proto == PROTO_UDP && !v6 && check == 0) {
        let mut sum = csum_update(check, &old, &new);
        if proto == PROTO_UDP && sum == 0 {
            sum = 0xffff;
        }
        set_word(l4_check, sum);
    }
    // Of the changed words only the address lies in the IPv4 header.
    if !v6 {
        let ip_check = at::<2>(ctx, ETH_LEN + offset_of!(Ipv4Hdr, check))?;
        set_word(ip_check, csum_update(word(ip_check), &old[..2], &new[..2]));
    }
    Some(())
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
