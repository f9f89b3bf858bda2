//! The frame parser of the reference model: docs/semantics.md "Link layer" to "L4", as code.
//!
//! Every check is spelled out in the order the document lists it, so that a reader can hold
//! the two side by side. Only the outcome (a packet, non-IP, or malformed) matters to the
//! verdict; the message inside [`Malformed`] is for humans reading a failed test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mirror_xdp_common::{
    FlowKey,
    wire::{ETH_HLEN, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, ethertype, ipproto},
};

pub use mirror_xdp_common::wire::tcp_flag;

/// What a frame is, once it parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not IPv4/IPv6 after the VLAN tags (step 1).
    NonIp {
        ethertype: u16,
    },
    Ip(IpPacket),
}

/// An IPv4 or IPv6 packet whose headers all fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4,
    /// Where the IP header starts in the frame (after the VLAN tags).
    pub ip_offset: usize,
    /// The bytes from the IP header to the L4 header: 20 or 40 unless there are IPv4
    /// options or IPv6 extension headers (a SYN cookie is only sent without them).
    pub ip_header_len: usize,
    /// Where the IP packet ends in the frame, by its length field (bytes past it are link
    /// padding).
    pub ip_end: usize,
}

/// What the filter reads above IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// A non-first fragment: no L4 header.
    Fragment,
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP in an IPv4 packet (protocol 1) or ICMPv6 in an IPv6 packet (58).
    Icmp {
        icmp_type: u8,
        code: u8,
    },
    /// Any other upper-layer protocol, including 58 in IPv4 and 1 in IPv6.
    Other {
        proto: u8,
    },
}

/// The frame is truncated or invalid (step 2); the text says which check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Parses a frame as docs/semantics.md describes.
pub fn parse(frame: &[u8]) -> Result<Parsed, Malformed> {
    parse_buffers(frame, frame.len())
}

/// Parses a multi-buffer frame whose first `first_buffer` bytes lie in its first buffer
/// (docs/semantics.md, "Multi-buffer frames"): every header byte the filter reads must lie
/// there; lengths count the whole frame.
pub fn parse_buffers(frame: &[u8], first_buffer: usize) -> Result<Parsed, Malformed> {
    if frame.len() < ETH_HLEN {
        return Err(Malformed("frame shorter than an Ethernet header"));
    }
    let first = First(first_buffer);
    first.holds(12, 2)?;
    // `at` is the offset of the current EtherType field.
    let mut at = 12;
    let mut ethertype = be16(frame, at);
    let mut tags = 0;
    while ethertype == ethertype::VLAN || ethertype == ethertype::QINQ {
        if tags == MAX_VLAN_TAGS {
            return Err(Malformed("more than two VLAN tags"));
        }
        // The tag is the 4 bytes after the EtherType; its last two are the next EtherType.
        if at + 6 > frame.len() {
            return Err(Malformed("VLAN tag truncated"));
        }
        first.holds(at + 4, 2)?;
        at += 4;
        ethertype = be16(frame, at);
        tags += 1;
    }
    let l3 = at + 2;
    match ethertype {
        ethertype::IPV4 => ipv4(frame, first, l3).map(Parsed::Ip),
        ethertype::IPV6 => ipv6(frame, first, l3).map(Parsed::Ip),
        other => Ok(Parsed::NonIp { ethertype: other }),
    }
}

/// The length of a frame's first buffer: where the filter reads headers.
#[derive(Clone, Copy)]
struct First(usize);

impl First {
    /// The `len` header bytes at `at` lie in the first buffer.
    fn holds(self, at: usize, len: usize) -> Result<(), Malformed> {
        if at + len > self.0 {
            return Err(Malformed(
                "header beyond the first buffer of a multi-buffer frame",
            ));
        }
        Ok(())
    }
}

/// The FlowKey under which the egress program would have recorded the connection that this
/// ingress TCP/UDP packet replies to: local = its destination, remote = its source.
pub fn flow_key(packet: &IpPacket) -> Option<FlowKey> {
    let (proto, src_port, dst_port) = match packet.l4 {
        L4::Tcp {
            src_port, dst_port, ..
        } => (ipproto::TCP, src_port, dst_port),
        L4::Udp { src_port, dst_port } => (ipproto::UDP, src_port, dst_port),
        _ => return None,
    };
    let (local_addr, family) = addr_bytes(packet.dst);
    let (remote_addr, _) = addr_bytes(packet.src);
    Some(FlowKey {
        local_addr,
        remote_addr,
        local_port: dst_port.to_be_bytes(),
        remote_port: src_port.to_be_bytes(),
        proto,
        family,
        _pad: [0; 2],
    })
}

/// An address as the FLOWS map stores it, and its family (4 or 6).
fn addr_bytes(addr: IpAddr) -> ([u8; 16], u8) {
    let mut out = [0; 16];
    match addr {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            (out, 4)
        }
        IpAddr::V6(a) => (a.octets(), 6),
    }
}

fn ipv4(frame: &[u8], first: First, o: usize) -> Result<IpPacket, Malformed> {
    let h = frame
        .get(o..o + 20)
        .ok_or(Malformed("IPv4 header truncated"))?;
    first.holds(o, 20)?;
    if h[0] >> 4 != 4 {
        return Err(Malformed("IPv4 version is not 4"));
    }
    let header_len = usize::from(h[0] & 0x0F) * 4;
    if header_len < 20 {
        return Err(Malformed("IPv4 IHL < 5"));
    }
    if o + header_len > frame.len() {
        return Err(Malformed("IPv4 options truncated"));
    }
    let total_len = usize::from(be16(h, 2));
    if total_len < header_len {
        return Err(Malformed("IPv4 total length < header length"));
    }
    if o + total_len > frame.len() {
        return Err(Malformed("IPv4 total length beyond the frame"));
    }
    let src = IpAddr::V4(Ipv4Addr::from([h[12], h[13], h[14], h[15]]));
    let dst = IpAddr::V4(Ipv4Addr::from([h[16], h[17], h[18], h[19]]));
    let l4 = if be16(h, 6) & 0x1FFF != 0 {
        L4::Fragment
    } else {
        // Bytes past the total length are link padding, not L4 data.
        upper(
            &frame[o + header_len..o + total_len],
            first,
            o + header_len,
            h[9],
            ipproto::ICMP,
        )?
    };
    Ok(IpPacket {
        src,
        dst,
        l4,
        ip_offset: o,
        ip_header_len: header_len,
        ip_end: o + total_len,
    })
}

fn ipv6(frame: &[u8], first: First, o: usize) -> Result<IpPacket, Malformed> {
    let h = frame
        .get(o..o + 40)
        .ok_or(Malformed("IPv6 header truncated"))?;
    first.holds(o, 40)?;
    if h[0] >> 4 != 6 {
        return Err(Malformed("IPv6 version is not 6"));
    }
    let payload_len = usize::from(be16(h, 4));
    if payload_len == 0 {
        return Err(Malformed("IPv6 payload length 0 (jumbogram)"));
    }
    let end = o + 40 + payload_len;
    if end > frame.len() {
        return Err(Malformed("IPv6 payload length beyond the frame"));
    }
    let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&h[8..24]).unwrap()));
    let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&h[24..40]).unwrap()));
    let packet = |l4, cur: usize| {
        Ok(IpPacket {
            src,
            dst,
            l4,
            ip_offset: o,
            ip_header_len: cur - o,
            ip_end: end,
        })
    };

    let mut next = h[6];
    let mut cur = o + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            ipproto::HOPOPTS | ipproto::ROUTING | ipproto::DSTOPTS => {
                let b = fit(frame, cur, 2, end)?;
                first.holds(cur, 2)?;
                (usize::from(b[1]) + 1) * 8
            }
            ipproto::AH => {
                let b = fit(frame, cur, 2, end)?;
                first.holds(cur, 2)?;
                (usize::from(b[1]) + 2) * 4
            }
            ipproto::FRAGMENT => {
                let b = fit(frame, cur, 8, end)?;
                first.holds(cur, 8)?;
                if be16(b, 2) & 0xFFF8 != 0 {
                    return packet(L4::Fragment, cur);
                }
                8
            }
            _ => break,
        };
        let ext = fit(frame, cur, len, end)?;
        next = ext[0];
        cur += len;
    }
    if is_ext_header(next) {
        return Err(Malformed("IPv6 extension chain longer than 8 headers"));
    }
    packet(
        upper(&frame[cur..end], first, cur, next, ipproto::ICMPV6)?,
        cur,
    )
}

/// `len` bytes at `cur`, if they end at or before `end`.
fn fit(frame: &[u8], cur: usize, len: usize, end: usize) -> Result<&[u8], Malformed> {
    if cur + len > end {
        return Err(Malformed("IPv6 extension header truncated"));
    }
    Ok(&frame[cur..cur + len])
}

fn is_ext_header(proto: u8) -> bool {
    matches!(
        proto,
        ipproto::HOPOPTS | ipproto::ROUTING | ipproto::FRAGMENT | ipproto::AH | ipproto::DSTOPTS
    )
}

/// The L4 header of a packet that is not a non-first fragment, at offset `at` of the frame.
/// `icmp` is the protocol number that means ICMP in this IP version.
fn upper(l4: &[u8], first: First, at: usize, proto: u8, icmp: u8) -> Result<L4, Malformed> {
    match proto {
        ipproto::TCP => {
            if l4.len() < 20 {
                return Err(Malformed("TCP header truncated"));
            }
            // The ports, flags and data offset: the first 16 bytes.
            first.holds(at, 16)?;
            let data_offset = usize::from(l4[12] >> 4);
            if data_offset < 5 {
                return Err(Malformed("TCP data offset < 5"));
            }
            if data_offset * 4 > l4.len() {
                return Err(Malformed("TCP options truncated"));
            }
            Ok(L4::Tcp {
                src_port: be16(l4, 0),
                dst_port: be16(l4, 2),
                flags: l4[13],
            })
        }
        ipproto::UDP => {
            if l4.len() < 8 {
                return Err(Malformed("UDP header truncated"));
            }
            // The ports.
            first.holds(at, 4)?;
            Ok(L4::Udp {
                src_port: be16(l4, 0),
                dst_port: be16(l4, 2),
            })
        }
        p if p == icmp => {
            if l4.len() < 4 {
                return Err(Malformed("ICMP header truncated"));
            }
            first.holds(at, 4)?;
            Ok(L4::Icmp {
                icmp_type: l4[0],
                code: l4[1],
            })
        }
        proto => Ok(L4::Other { proto }),
    }
}

/// The big-endian u16 at `at`; callers have checked that it fits.
fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}
