//! Bounds-checked header parsing shared by the XDP and egress programs.
//!
//! Follows docs/semantics.md to the byte: up to two VLAN tags, IPv4 with any IHL and
//! fragments, IPv6 with a bounded extension chain, TCP (data offset checked), UDP, ICMP.

use core::mem::size_of;

use mirror_xdp_common::{MAX_IPV6_EXT_HEADERS, ipproto};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

/// What the L4 part of a packet is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
    Icmp,
    /// A non-first fragment: no L4 header to read.
    Fragment,
    /// Any other IP protocol.
    Other,
}

/// The fields of a well-formed IP packet that the verdict needs. Aligned, addresses
/// first, so that copying the addresses into map keys takes word moves, not byte moves.
#[repr(C, align(8))]
pub struct Packet {
    /// Network byte order; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub v6: bool,
    pub l4: L4,
    pub proto: u8,
    /// Ports as they stand in the packet (network byte order); zero unless TCP/UDP.
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    /// TCP flags byte (byte 13 of the TCP header).
    pub tcp_flags: u8,
    /// ICMP or ICMPv6 type.
    pub icmp_type: u8,
    /// Where the IP header starts (at most 22: two VLAN tags), and the bytes from it to
    /// the L4 header (255 if more; 0 for a non-first fragment): a SYN cookie answer
    /// rewrites the headers in place.
    pub ip_off: u8,
    pub ip_len: u8,
}

impl Packet {
    /// The IP part of a packet; the L4 fields are filled as far as the headers go.
    #[inline(always)]
    fn new(v6: bool, src: [u8; 16], dst: [u8; 16], proto: u8, ip_off: usize) -> Packet {
        Packet {
            src,
            dst,
            v6,
            l4: L4::Other,
            proto,
            sport: [0; 2],
            dport: [0; 2],
            tcp_flags: 0,
            icmp_type: 0,
            ip_off: ip_off as u8,
            ip_len: 0,
        }
    }
}

pub enum Parsed {
    NonIp,
    Malformed,
    Ip(Packet),
}

/// The packet bytes between two addresses, as XDP and TC contexts give them.
pub struct Frame {
    pub start: usize,
    pub end: usize,
}

impl Frame {
    /// A pointer to a `T` at `off`, if the whole `T` lies inside the frame.
    #[inline(always)]
    fn ptr_at<T>(&self, off: usize) -> Option<*const T> {
        // A volatile read keeps LLVM from proving this check redundant with the length
        // checks on header fields and dropping it: the verifier needs to see it.
        // SAFETY: reading a field of a live struct.
        let end = unsafe { core::ptr::read_volatile(&self.end) };
        if self.start + off + size_of::<T>() > end {
            return None;
        }
        Some((self.start + off) as *const T)
    }

    /// Reads the `T` at `off`: header words as `u16`/`u32` arrays, so that LLVM emits word
    /// loads instead of one load per byte. XDP does not align headers, and Rust would
    /// have these reads aligned; the verifier allows unaligned packet reads on the CPUs
    /// whose JIT does them natively (x86-64, arm64: not strict-alignment), as every C XDP
    /// program reading `iph->saddr` relies on.
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        // SAFETY: ptr_at checked that the whole T lies inside the packet.
        self.ptr_at::<T>(off).map(|p| unsafe { *p })
    }

    #[inline(always)]
    pub fn len(&self) -> u64 {
        (self.end - self.start) as u64
    }
}

/// Parses a frame; `None` inside means a header did not fit (malformed).
#[inline(always)]
pub fn parse(frame: &Frame) -> Parsed {
    match parse_inner(frame) {
        Some(parsed) => parsed,
        None => Parsed::Malformed,
    }
}

#[inline(always)]
fn parse_inner(frame: &Frame) -> Option<Parsed> {
    let eth: [u16; 7] = frame.read(0)?;
    let mut ethertype = u16::from_be(eth[6]);
    let mut off = 14usize;
    // Up to two VLAN tags; a third is malformed so stacked tags cannot smuggle a packet.
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tag: [u16; 2] = frame.read(off)?;
        ethertype = u16::from_be(tag[1]);
        off += 4;
    }
    match ethertype {
        ETH_P_IPV4 => parse_ipv4(frame, off).map(Parsed::Ip),
        ETH_P_IPV6 => parse_ipv6(frame, off).map(Parsed::Ip),
        ETH_P_8021Q | ETH_P_8021AD => None,
        _ => Some(Parsed::NonIp),
    }
}

#[inline(always)]
fn parse_ipv4(frame: &Frame, o: usize) -> Option<Packet> {
    let h: [u32; 5] = frame.read(o)?;
    let [version_ihl, _, total_hi, total_lo] = h[0].to_ne_bytes();
    if version_ihl >> 4 != 4 {
        return None;
    }
    let hlen = ((version_ihl & 0x0F) as usize) * 4;
    if hlen < 20 {
        return None;
    }
    let total = u16::from_be_bytes([total_hi, total_lo]) as usize;
    if total < hlen || o + total > frame.len() as usize {
        return None;
    }
    let [_, _, frag_hi, frag_lo] = h[1].to_ne_bytes();
    let mut pkt = Packet::new(
        false,
        v4_addr(h[3]),
        v4_addr(h[4]),
        h[2].to_ne_bytes()[1],
        o,
    );
    let frag_offset = u16::from_be_bytes([frag_hi, frag_lo]) & 0x1FFF;
    if frag_offset != 0 {
        pkt.l4 = L4::Fragment;
        return Some(pkt);
    }
    parse_l4(frame, o + hlen, o + total, ipproto::ICMP, &mut pkt)?;
    pkt.ip_len = hlen as u8;
    Some(pkt)
}

#[inline(always)]
fn parse_ipv6(frame: &Frame, o: usize) -> Option<Packet> {
    // Read in pieces rather than one 40-byte copy: the BPF stack is 512 bytes.
    let h: [u32; 2] = frame.read(o)?;
    let [version, ..] = h[0].to_ne_bytes();
    let [payload_hi, payload_lo, next_header, _] = h[1].to_ne_bytes();
    if version >> 4 != 6 {
        return None;
    }
    let payload = u16::from_be_bytes([payload_hi, payload_lo]) as usize;
    let end = o + 40 + payload;
    if payload == 0 || end > frame.len() as usize {
        return None;
    }
    let src = v6_addr(frame.read(o + 8)?);
    let mut pkt = Packet::new(true, src, v6_addr(frame.read(o + 24)?), 0, o);
    let mut next = next_header;
    let mut cur = o + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            ipproto::HOPOPTS | ipproto::ROUTING | ipproto::DSTOPTS => {
                let [b0, b1] = frame.read::<u16>(cur)?.to_ne_bytes();
                next = b0;
                (b1 as usize + 1) * 8
            }
            ipproto::AH => {
                let [b0, b1] = frame.read::<u16>(cur)?.to_ne_bytes();
                next = b0;
                (b1 as usize + 2) * 4
            }
            ipproto::FRAGMENT => {
                if cur + 8 > end {
                    return None;
                }
                let [b0, _, b2, b3] = frame.read::<[u32; 2]>(cur)?[0].to_ne_bytes();
                if u16::from_be_bytes([b2, b3]) & 0xFFF8 != 0 {
                    pkt.proto = b0;
                    pkt.l4 = L4::Fragment;
                    return Some(pkt);
                }
                next = b0;
                8
            }
            _ => break,
        };
        if cur + len > end {
            return None;
        }
        cur += len;
    }
    if is_ipv6_extension(next) {
        return None;
    }
    pkt.proto = next;
    parse_l4(frame, cur, end, ipproto::ICMPV6, &mut pkt)?;
    let ip_len = cur - o;
    pkt.ip_len = if ip_len > 255 { 255 } else { ip_len as u8 };
    Some(pkt)
}

#[inline(always)]
fn is_ipv6_extension(next: u8) -> bool {
    matches!(
        next,
        ipproto::HOPOPTS | ipproto::ROUTING | ipproto::DSTOPTS | ipproto::FRAGMENT | ipproto::AH
    )
}

/// Reads the L4 header at `off` of an IP payload ending at `end`. `icmp` is the ICMP
/// protocol number of the family (1 for IPv4, 58 for IPv6).
#[inline(always)]
fn parse_l4(frame: &Frame, off: usize, end: usize, icmp: u8, pkt: &mut Packet) -> Option<()> {
    let proto = pkt.proto;
    if proto == ipproto::TCP {
        if off + 20 > end {
            return None;
        }
        let t: [u32; 4] = frame.read(off)?;
        let [doff_byte, flags, ..] = t[3].to_ne_bytes();
        let doff = (doff_byte >> 4) as usize * 4;
        if doff < 20 || off + doff > end {
            return None;
        }
        let [s0, s1, d0, d1] = t[0].to_ne_bytes();
        pkt.l4 = L4::Tcp;
        pkt.sport = [s0, s1];
        pkt.dport = [d0, d1];
        pkt.tcp_flags = flags;
    } else if proto == ipproto::UDP {
        if off + 8 > end {
            return None;
        }
        let [s0, s1, d0, d1] = frame.read::<u32>(off)?.to_ne_bytes();
        pkt.l4 = L4::Udp;
        pkt.sport = [s0, s1];
        pkt.dport = [d0, d1];
    } else if proto == icmp {
        if off + 4 > end {
            return None;
        }
        // Four bytes, not one: a one-byte check compiles to a form the verifier cannot use.
        let c: u32 = frame.read(off)?;
        pkt.l4 = L4::Icmp;
        pkt.icmp_type = c.to_ne_bytes()[0];
    }
    Some(())
}

/// An IPv4 address word as the 16 address bytes of a `Packet` (the rest zero).
#[inline(always)]
fn v4_addr(word: u32) -> [u8; 16] {
    v6_addr([word, 0, 0, 0])
}

#[inline(always)]
fn v6_addr(words: [u32; 4]) -> [u8; 16] {
    // SAFETY: plain bytes, same size.
    unsafe { core::mem::transmute(words) }
}
