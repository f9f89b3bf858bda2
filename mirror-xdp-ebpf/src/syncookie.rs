//! Step 12 with `syn_cookies`: turn a SYN over the global budget into a SYN cookie SYN-ACK in
//! place and send it back out (XDP_TX). The kernel helper makes the cookie; the client's ACK
//! then passes to the kernel, which checks the cookie and creates the connection.
//!
//! Only SYNs with a plain IP header are answered (IPv4 without options, IPv6 without
//! extension headers), behind up to two VLAN tags, which the reply keeps. The reply carries
//! the MSS option and, for a SYN with timestamps when the host allows them, the kernel's
//! timestamp cookie: a timestamp whose low bits hold the client's window scale, SACK and
//! ECN, which the kernel restores from the ACK's echo (`cookie_option`). Without it, a
//! connection made from a cookie has no window scaling: 64 KiB per round trip.
//! The verifier wants the cookie helper's TCP length and every checksummed length constant,
//! so each length gets its own branch (the `const` parameters below).

use aya_ebpf::{
    bindings::{iphdr, ipv6hdr, tcphdr, xdp_md},
    helpers::{
        bpf_csum_diff, bpf_tcp_raw_gen_syncookie_ipv4, bpf_tcp_raw_gen_syncookie_ipv6,
        bpf_xdp_adjust_tail,
    },
    programs::XdpContext,
};
use mirror_xdp_common::{
    Config, cookie_option, tcp_flag, tcp_option as opt, timestamp_cookie, wire,
};

use crate::{
    clock,
    maps::CONFIG,
    parse::Packet,
    syn_options::{MAX_IP_OFF, SynOptions, bounded_ip_off, mx_syn_options},
};

const IPV4_LEN: usize = wire::IPV4_MIN_HLEN;
const IPV6_LEN: usize = wire::IPV6_HLEN;
const TCP_BARE: usize = wire::TCP_MIN_HLEN;
/// Plus the MSS option.
const TCP_WITH_MSS: usize = 24;
/// Plus SACK-permitted (or two NOPs) and the timestamp.
const TCP_WITH_TIMESTAMP: usize = 36;
/// Plus a NOP and the window scale.
const TCP_WITH_WSCALE: usize = 40;

/// Can `answer` reply to this SYN (no IPv4 options, no IPv6 extension headers)?
#[inline(always)]
pub fn answerable(pkt: &Packet) -> bool {
    let ip_len = if pkt.v6 { IPV6_LEN } else { IPV4_LEN };
    pkt.ip_len as usize == ip_len
}

/// Rewrites the SYN whose IP header is at `ip_off` into its cookie SYN-ACK and trims the
/// frame, `whole_len` bytes with its fragments, to it; false if that failed (the caller then
/// drops the SYN).
///
/// Two global functions do the work: the verifier checks each once, on its own, with any
/// values of its arguments (the context and numbers), instead of once for every state the
/// main program reaches it in, which the options walk made too many. Two, not one: the
/// stack of each, on top of the main program's, must stay within 512 bytes.
#[inline(always)]
pub fn answer(ctx: *mut xdp_md, ip_off: u32, v6: bool, whole_len: u32) -> bool {
    let options = mx_syn_options(ctx, ip_off, v6 as u32);
    mx_syn_cookie(ctx, ip_off, v6 as u32, whole_len, options) != 0
}

/// Rewrites the SYN into its SYN-ACK (see [`answer`]); `options` are `mx_syn_options`'s.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn mx_syn_cookie(
    ctx: *mut xdp_md,
    ip_off: u32,
    v6: u32,
    whole_len: u32,
    options: u64,
) -> u32 {
    let v6 = v6 != 0;
    let xdp = XdpContext::new(ctx);
    let (start, end) = (xdp.data(), xdp.data_end());
    let Some(config) = CONFIG.get(0) else {
        return 0;
    };
    if ip_off as usize > MAX_IP_OFF {
        return 0;
    }
    let ip_off = bounded_ip_off(ip_off);
    let syn = SynOptions::unpack(options);
    let new_len = if v6 {
        answer_v6(start, end, ip_off, config, &syn)
    } else {
        answer_v4(start, end, ip_off, config, &syn)
    };
    let Some(new_len) = new_len else {
        return 0;
    };
    // From the whole length: a SYN with a payload in fragments is trimmed to its first
    // buffer's headers too (the helper frees the fragments).
    let delta = new_len as i32 - whole_len as i32;
    // SAFETY: shrinking an XDP frame to at least its headers; no packet pointer is used after.
    (delta == 0 || unsafe { bpf_xdp_adjust_tail(ctx, delta) } == 0) as u32
}

/// Calls the cookie helper with the TCP header length as a constant: the verifier wants
/// `th_len == doff * 4` with the bytes proven inside the packet, one branch per length.
/// `None` for a header that does not fit or a helper error.
#[inline(always)]
fn by_header_length(th: usize, end: usize, doff: u8, cookie: impl Fn(usize) -> i64) -> Option<i64> {
    let value = match doff {
        5 if fits(th, 20, end) => cookie(20),
        6 if fits(th, 24, end) => cookie(24),
        7 if fits(th, 28, end) => cookie(28),
        8 if fits(th, 32, end) => cookie(32),
        9 if fits(th, 36, end) => cookie(36),
        10 if fits(th, 40, end) => cookie(40),
        11 if fits(th, 44, end) => cookie(44),
        12 if fits(th, 48, end) => cookie(48),
        13 if fits(th, 52, end) => cookie(52),
        14 if fits(th, 56, end) => cookie(56),
        15 if fits(th, 60, end) => cookie(60),
        _ => return None,
    };
    (value >= 0).then_some(value)
}

#[inline(always)]
fn answer_v4(
    start: usize,
    end: usize,
    ip_off: usize,
    config: &Config,
    syn: &SynOptions,
) -> Option<usize> {
    let ip = start + ip_off;
    let th = ip + IPV4_LEN;
    if !fits(th, TCP_BARE, end) {
        return None;
    }
    let cookie = |len: usize| {
        // SAFETY: `by_header_length` calls this only in a branch that proved `len` bytes
        // at `th` inside the packet; the IP header before them was checked by `fits` too.
        unsafe { bpf_tcp_raw_gen_syncookie_ipv4(ip as *mut iphdr, th as *mut tcphdr, len as u32) }
    };
    let doff = get8(th + 12) >> 4;
    let value = by_header_length(th, end, doff, cookie)?;
    // Not-ECT: the kernel grants ECN only to a SYN that is not ECN-marked itself.
    let not_ect = get8(ip + 1) & 3 == 0;
    let reply = Reply::new(value, th, syn, not_ect, config);
    match reply.len {
        TCP_WITH_WSCALE => reply_v4::<TCP_WITH_WSCALE>(start, end, ip_off, &reply),
        TCP_WITH_TIMESTAMP => reply_v4::<TCP_WITH_TIMESTAMP>(start, end, ip_off, &reply),
        TCP_WITH_MSS => reply_v4::<TCP_WITH_MSS>(start, end, ip_off, &reply),
        _ => reply_v4::<TCP_BARE>(start, end, ip_off, &reply),
    }
}

#[inline(always)]
fn answer_v6(
    start: usize,
    end: usize,
    ip_off: usize,
    config: &Config,
    syn: &SynOptions,
) -> Option<usize> {
    let ip = start + ip_off;
    let th = ip + IPV6_LEN;
    if !fits(th, TCP_BARE, end) {
        return None;
    }
    let cookie = |len: usize| {
        // SAFETY: `by_header_length` calls this only in a branch that proved `len` bytes
        // at `th` inside the packet; the IP header before them was checked by `fits` too.
        unsafe { bpf_tcp_raw_gen_syncookie_ipv6(ip as *mut ipv6hdr, th as *mut tcphdr, len as u32) }
    };
    let doff = get8(th + 12) >> 4;
    let value = by_header_length(th, end, doff, cookie)?;
    // The traffic class's ECN bits: bits 5 and 4 of the second byte.
    let not_ect = (get8(ip + 1) >> 4) & 3 == 0;
    let reply = Reply::new(value, th, syn, not_ect, config);
    match reply.len {
        TCP_WITH_WSCALE => reply_v6::<TCP_WITH_WSCALE>(start, end, ip_off, &reply),
        TCP_WITH_TIMESTAMP => reply_v6::<TCP_WITH_TIMESTAMP>(start, end, ip_off, &reply),
        TCP_WITH_MSS => reply_v6::<TCP_WITH_MSS>(start, end, ip_off, &reply),
        _ => reply_v6::<TCP_BARE>(start, end, ip_off, &reply),
    }
}

/// What the SYN-ACK's TCP header carries besides the addresses and ports.
struct Reply {
    /// The cookie helper's result: the cookie in the low 32 bits, the MSS it encodes above.
    value: i64,
    /// The TCP header's length: `TCP_BARE` to `TCP_WITH_WSCALE`.
    len: usize,
    /// With a timestamp: its value (the cookie's low bits) and echo, SACK-permitted, ECN.
    tsval: u32,
    tsecr: u32,
    sack: bool,
    ecn: bool,
    /// The kernel's window scale for the connection, announced with `TCP_WITH_WSCALE`.
    wscale: u8,
}

impl Reply {
    /// The reply to the SYN whose TCP header is at `th` and whose options are `syn`.
    /// Everything must fit
    /// in the SYN's own header (the frame is rewritten in place): a SYN too short for the
    /// window scale option gets none, one too short for the timestamp gets the MSS alone.
    #[inline(always)]
    fn new(value: i64, th: usize, syn: &SynOptions, not_ect: bool, config: &Config) -> Reply {
        // The data offset read afresh: `by_header_length` took a branch per value, and a
        // new read lets the verifier follow one path from here instead of eleven.
        // SAFETY: `by_header_length` proved the TCP header inside the packet.
        let doff = unsafe { core::ptr::read_volatile((th + 12) as *const u8) } >> 4;
        let room = doff as usize * 4;
        let mut reply = Reply {
            value,
            len: if room >= TCP_WITH_MSS {
                TCP_WITH_MSS
            } else {
                TCP_BARE
            },
            tsval: 0,
            tsecr: 0,
            sack: false,
            ecn: false,
            wscale: config.cookie_wscale,
        };
        let allowed = config.cookie_options;
        if allowed & cookie_option::TIMESTAMPS == 0 || room < TCP_WITH_TIMESTAMP {
            return reply;
        }
        if !syn.timestamp {
            return reply;
        }
        let mut low = timestamp_cookie::WSCALE_MASK;
        reply.len = TCP_WITH_TIMESTAMP;
        if syn.has_wscale && allowed & cookie_option::WINDOW_SCALE != 0 && room >= TCP_WITH_WSCALE {
            low = if syn.wscale > timestamp_cookie::MAX_WSCALE {
                timestamp_cookie::MAX_WSCALE
            } else {
                syn.wscale
            } as u32;
            reply.len = TCP_WITH_WSCALE;
        }
        if syn.sack && allowed & cookie_option::SACK != 0 {
            low |= timestamp_cookie::SACK;
            reply.sack = true;
        }
        let flags = get8(th + 13);
        let asks_ecn = flags & (tcp_flag::ECE | tcp_flag::CWR) == tcp_flag::ECE | tcp_flag::CWR;
        if asks_ecn && not_ect && allowed & cookie_option::ECN != 0 {
            low |= timestamp_cookie::ECN;
            reply.ecn = true;
        }
        reply.tsval = timestamp(clock::now(config), low);
        reply.tsecr = syn.tsval;
        reply
    }
}

/// The kernel's `cookie_init_timestamp`: the millisecond clock with its low bits replaced by
/// `low`, moved a step back if that put it ahead of the clock (the connection's later
/// timestamps must not go backwards).
#[inline(always)]
fn timestamp(now_ns: u64, low: u32) -> u32 {
    let now_ms = now_ns / 1_000_000;
    let step = 1u64 << timestamp_cookie::BITS;
    let mut ts = (now_ms & !(step - 1)) | low as u64;
    if ts > now_ms {
        ts = ts.wrapping_sub(step);
    }
    ts as u32
}

/// The IPv4 SYN-ACK with a `TL`-byte TCP header; returns the new frame length.
#[inline(always)]
fn reply_v4<const TL: usize>(
    start: usize,
    end: usize,
    ip_off: usize,
    reply: &Reply,
) -> Option<usize> {
    let ip = start + ip_off;
    let th = ip + IPV4_LEN;
    if !fits(start, 12, end) || !fits(th, TL, end) {
        return None;
    }
    swap_macs(start);
    swap(ip + 12, ip + 16, 4);
    put8(ip + 1, 0); // TOS
    put16(ip + 2, (IPV4_LEN + TL) as u16);
    put16(ip + 4, 0); // ID: DF is set, nothing to reassemble
    put16(ip + 6, 0x4000); // DF
    put8(ip + 8, 64); // TTL
    put16(ip + 10, 0);
    tcp_header::<TL>(th, reply);
    // The pseudo header: both addresses (8 bytes), protocol, TCP length.
    let sum = csum::<TL>(th, 0)?;
    let sum = csum::<8>(ip + 12, sum)?;
    put_csum(th + 16, sum as u64 + pseudo_tail(TL));
    let sum = csum::<IPV4_LEN>(ip, 0)?;
    put_csum(ip + 10, sum as u64);
    Some(ip_off + IPV4_LEN + TL)
}

/// The IPv6 SYN-ACK with a `TL`-byte TCP header; returns the new frame length.
#[inline(always)]
fn reply_v6<const TL: usize>(
    start: usize,
    end: usize,
    ip_off: usize,
    reply: &Reply,
) -> Option<usize> {
    let ip = start + ip_off;
    let th = ip + IPV6_LEN;
    if !fits(start, 12, end) || !fits(th, TL, end) {
        return None;
    }
    swap_macs(start);
    swap(ip + 8, ip + 24, 16);
    // Version 6, traffic class and flow label 0; payload length; next header stays TCP.
    put16(ip, 0x6000);
    put16(ip + 2, 0);
    put16(ip + 4, TL as u16);
    put8(ip + 7, 64); // hop limit
    tcp_header::<TL>(th, reply);
    // The pseudo header: both addresses (32 bytes), TCP length, next header.
    let sum = csum::<TL>(th, 0)?;
    let sum = csum::<32>(ip + 8, sum)?;
    put_csum(th + 16, sum as u64 + pseudo_tail(TL));
    Some(ip_off + IPV6_LEN + TL)
}

/// The SYN's TCP header turned into the SYN-ACK's, checksum zeroed, options as the kernel's
/// own SYN-ACK lays them out (`tcp_options_write`).
#[inline(always)]
fn tcp_header<const TL: usize>(th: usize, reply: &Reply) {
    let cookie = reply.value as u32;
    let mss = (reply.value >> 32) as u16;
    swap(th, th + 2, 2);
    let seq = get32(th + 4);
    put32(th + 4, cookie);
    put32(th + 8, seq.wrapping_add(1));
    put8(th + 12, ((TL / 4) as u8) << 4);
    let ece = if reply.ecn { tcp_flag::ECE } else { 0 };
    put8(th + 13, tcp_flag::SYN | tcp_flag::ACK | ece);
    put16(th + 14, window(mss));
    put16(th + 16, 0);
    put16(th + 18, 0); // urgent pointer
    if TL >= TCP_WITH_MSS {
        put8(th + 20, opt::MSS);
        put8(th + 21, opt::MSS_LEN);
        put16(th + 22, mss);
    }
    if TL >= TCP_WITH_TIMESTAMP {
        if reply.sack {
            put8(th + 24, opt::SACK_PERMITTED);
            put8(th + 25, opt::SACK_PERMITTED_LEN);
        } else {
            put8(th + 24, opt::NOP);
            put8(th + 25, opt::NOP);
        }
        put8(th + 26, opt::TIMESTAMP);
        put8(th + 27, opt::TIMESTAMP_LEN);
        put32(th + 28, reply.tsval);
        put32(th + 32, reply.tsecr);
    }
    if TL >= TCP_WITH_WSCALE {
        put8(th + 36, opt::NOP);
        put8(th + 37, opt::WINDOW_SCALE);
        put8(th + 38, opt::WINDOW_SCALE_LEN);
        put8(th + 39, reply.wscale);
    }
}

/// The window the kernel's own cookie SYN-ACK would offer (`tcp_select_initial_window`
/// without window scaling): ten segments, fewer for segments over 1460 bytes. More would let
/// the client send beyond what the kernel accepts once the connection exists.
#[inline(always)]
fn window(mss: u16) -> u16 {
    let mss = mss as u32;
    let segments = if mss > 1460 {
        let n = 14600 / mss;
        if n < 2 { 2 } else { n }
    } else {
        10
    };
    let window = segments * mss;
    if window > 0xFFFF {
        0xFFFF
    } else {
        window as u16
    }
}

/// Protocol 6 and the TCP length, as 16-bit words in memory order (how `bpf_csum_diff`
/// loads them), to add to the pseudo header's sum.
#[inline(always)]
fn pseudo_tail(tcp_len: usize) -> u64 {
    u16::from_ne_bytes([0, 6]) as u64 + u16::from_ne_bytes((tcp_len as u16).to_be_bytes()) as u64
}

/// The one's complement sum of `N` packet bytes at `at` on top of `seed`.
#[inline(always)]
fn csum<const N: usize>(at: usize, seed: u32) -> Option<u32> {
    // SAFETY: the callers proved `at..at + N` inside the packet; N is a multiple of 4.
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, at as *mut u32, N as u32, seed) };
    if sum < 0 { None } else { Some(sum as u32) }
}

/// Folds a sum to 16 bits, complements it and stores it (memory order, like the sum).
#[inline(always)]
fn put_csum(at: usize, mut sum: u64) {
    sum = (sum & 0xFFFF_FFFF) + (sum >> 32);
    sum = (sum & 0xFFFF_FFFF) + (sum >> 32);
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    let bytes = (!(sum as u16)).to_ne_bytes();
    put8(at, bytes[0]);
    put8(at + 1, bytes[1]);
}

/// Are `len` bytes at `at` inside the packet? The volatile read keeps LLVM from folding the
/// check into another one: the verifier must see it for this pointer and length.
#[inline(always)]
fn fits(at: usize, len: usize, end: usize) -> bool {
    // SAFETY: reading a local.
    let end = unsafe { core::ptr::read_volatile(&end) };
    at + len <= end
}

// Byte access to packet memory; every caller has checked the bounds with `fits`.

#[inline(always)]
fn get8(at: usize) -> u8 {
    // SAFETY: see above.
    unsafe { *(at as *const u8) }
}

#[inline(always)]
fn put8(at: usize, value: u8) {
    // SAFETY: see above.
    unsafe { *(at as *mut u8) = value }
}

#[inline(always)]
fn get32(at: usize) -> u32 {
    u32::from_be_bytes([get8(at), get8(at + 1), get8(at + 2), get8(at + 3)])
}

#[inline(always)]
fn put16(at: usize, value: u16) {
    let b = value.to_be_bytes();
    put8(at, b[0]);
    put8(at + 1, b[1]);
}

#[inline(always)]
fn put32(at: usize, value: u32) {
    let b = value.to_be_bytes();
    for (i, byte) in b.iter().enumerate() {
        put8(at + i, *byte);
    }
}

/// Swaps `n` bytes at `a` with `n` bytes at `b`.
#[inline(always)]
fn swap(a: usize, b: usize, n: usize) {
    for i in 0..n {
        let x = get8(a + i);
        put8(a + i, get8(b + i));
        put8(b + i, x);
    }
}

#[inline(always)]
fn swap_macs(start: usize) {
    swap(start, start + 6, 6);
}
