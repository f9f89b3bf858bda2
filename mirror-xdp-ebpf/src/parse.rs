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

/// The fields of a well-formed IP packet that the verdict needs.
pub struct Packet {
    pub v6: bool,
    /// Network byte order; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    pub dst: [u8; 16],
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

    #[inline(always)]
    fn bytes<const N: usize>(&self, off: usize) -> Option<[u8; N]> {
        // SAFETY: ptr_at checked that N bytes lie inside the packet; [u8; N] has alignment 1.
        self.ptr_at::<[u8; N]>(off).map(|p| unsafe { *p })
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
    let eth: [u8; 14] = frame.bytes(0)?;
    let mut ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let mut off = 14usize;
    // Up to two VLAN tags; a third is malformed so stacked tags cannot smuggle a packet.
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tag: [u8; 4] = frame.bytes(off)?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
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
    let h: [u8; 20] = frame.bytes(o)?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let hlen = ((h[0] & 0x0F) as usize) * 4;
    if hlen < 20 {
        return None;
    }
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if total < hlen || o + total > frame.len() as usize {
        return None;
    }
    let mut pkt = Packet {
        v6: false,
        src: [0; 16],
        dst: [0; 16],
        l4: L4::Other,
        proto: h[9],
        sport: [0; 2],
        dport: [0; 2],
        tcp_flags: 0,
        icmp_type: 0,
        ip_off: o as u8,
        ip_len: 0,
    };
    pkt.src[..4].copy_from_slice(&h[12..16]);
    pkt.dst[..4].copy_from_slice(&h[16..20]);
    let frag_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1FFF;
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
    let h: [u8; 8] = frame.bytes(o)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
    let end = o + 40 + payload;
    if payload == 0 || end > frame.len() as usize {
        return None;
    }
    let mut pkt = Packet {
        v6: true,
        src: frame.bytes(o + 8)?,
        dst: frame.bytes(o + 24)?,
        l4: L4::Other,
        proto: 0,
        sport: [0; 2],
        dport: [0; 2],
        tcp_flags: 0,
        icmp_type: 0,
        ip_off: o as u8,
        ip_len: 0,
    };
    let mut next = h[6];
    let mut cur = o + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            ipproto::HOPOPTS | ipproto::ROUTING | ipproto::DSTOPTS => {
                let b: [u8; 2] = frame.bytes(cur)?;
                next = b[0];
                (b[1] as usize + 1) * 8
            }
            ipproto::AH => {
                let b: [u8; 2] = frame.bytes(cur)?;
                next = b[0];
                (b[1] as usize + 2) * 4
            }
            ipproto::FRAGMENT => {
                if cur + 8 > end {
                    return None;
                }
                let b: [u8; 8] = frame.bytes(cur)?;
                if u16::from_be_bytes([b[2], b[3]]) & 0xFFF8 != 0 {
                    pkt.proto = b[0];
                    pkt.l4 = L4::Fragment;
                    return Some(pkt);
                }
                next = b[0];
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
        let t: [u8; 14] = frame.bytes(off)?;
        let doff = (t[12] >> 4) as usize * 4;
        if doff < 20 || off + doff > end {
            return None;
        }
        pkt.l4 = L4::Tcp;
        pkt.sport = [t[0], t[1]];
        pkt.dport = [t[2], t[3]];
        pkt.tcp_flags = t[13];
    } else if proto == ipproto::UDP {
        if off + 8 > end {
            return None;
        }
        let u: [u8; 4] = frame.bytes(off)?;
        pkt.l4 = L4::Udp;
        pkt.sport = [u[0], u[1]];
        pkt.dport = [u[2], u[3]];
    } else if proto == icmp {
        if off + 4 > end {
            return None;
        }
        // Four bytes, not one: a one-byte check compiles to a form the verifier cannot use.
        let c: [u8; 4] = frame.bytes(off)?;
        pkt.l4 = L4::Icmp;
        pkt.icmp_type = c[0];
    }
    Some(())
}
