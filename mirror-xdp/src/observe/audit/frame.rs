//! Building the audit's frames: Ethernet with VLAN tags, IPv4 with options and fragment
//! fields, IPv6 with extension chains, TCP and UDP, with valid checksums and lengths, so
//! that every frame is exactly what a host on the wire could send.
//!
//! A frame is built inside out: the L4 segment, then the IP packet around it, then the
//! Ethernet header around that.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mirror_xdp_common::wire::checksum;

pub use mirror_xdp_common::wire::{
    ethertype::{
        IPV4 as ETHERTYPE_IPV4, IPV6 as ETHERTYPE_IPV6, QINQ as ETHERTYPE_QINQ,
        VLAN as ETHERTYPE_VLAN,
    },
    ipproto::{
        AH, DSTOPTS, FRAGMENT, HOPOPTS, IPIP as PROTO_IPIP, IPV6 as PROTO_IPV6, ROUTING,
        TCP as PROTO_TCP, UDP as PROTO_UDP,
    },
    tcp_flag as flag,
};

/// The audit's source port: high and fixed, so no rule or return flow is likely to meet it.
pub const SOURCE_PORT: u16 = 47_391;

/// An IP packet's payload: the bytes and the protocol number the IP header announces.
#[derive(Clone, Debug)]
pub struct Payload {
    pub proto: u8,
    pub bytes: Vec<u8>,
}

/// A TCP segment from [`SOURCE_PORT`] with `flags`, a data offset of `doff` words (the
/// header is `max(doff, 5) * 4` bytes: a bogus offset does not change the real length) and
/// `data` after it. The checksum is filled in by [`ip`].
pub fn tcp(dst_port: u16, flags: u8, doff: u8, data: &[u8]) -> Payload {
    let mut h = vec![0u8; usize::from(doff.max(5)) * 4];
    h[0..2].copy_from_slice(&SOURCE_PORT.to_be_bytes());
    h[2..4].copy_from_slice(&dst_port.to_be_bytes());
    h[4..8].copy_from_slice(&0x1000_0000u32.to_be_bytes());
    if flags & flag::ACK != 0 {
        h[8..12].copy_from_slice(&0x2000_0000u32.to_be_bytes());
    }
    h[12] = doff << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&64_240u16.to_be_bytes());
    h.extend_from_slice(data);
    Payload {
        proto: PROTO_TCP,
        bytes: h,
    }
}

/// A UDP datagram from [`SOURCE_PORT`] carrying `data`.
pub fn udp(dst_port: u16, data: &[u8]) -> Payload {
    let mut h = Vec::with_capacity(8 + data.len());
    h.extend_from_slice(&SOURCE_PORT.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(data);
    Payload {
        proto: PROTO_UDP,
        bytes: h,
    }
}

/// An IPv4 header's extras: options (a multiple of 4 bytes, at most 40) and the fragment
/// field (`more` fragments flag, offset in 8-byte units).
#[derive(Clone, Debug, Default)]
pub struct V4Extras {
    pub options: Vec<u8>,
    pub more_fragments: bool,
    pub fragment_offset: u16,
}

/// An IPv6 extension header: its type and its bytes (the next-header byte is set by [`ipv6`]).
#[derive(Clone, Debug)]
pub struct ExtHeader {
    pub kind: u8,
    pub bytes: Vec<u8>,
}

/// A hop-by-hop, routing or destination options header of `(units + 1) * 8` bytes: PadN
/// options fill it (a routing header gets type 0 with no segments left).
pub fn ext8(kind: u8, units: u8) -> ExtHeader {
    let len = (usize::from(units) + 1) * 8;
    let mut bytes = vec![0u8; len];
    bytes[1] = units;
    // PadN over the rest: type 1, length len - 4 (for a routing header these bytes are
    // routing type 0 and segments left 0, then zero padding).
    if kind != ROUTING {
        bytes[2] = 1;
        bytes[3] = (len - 4) as u8;
    }
    ExtHeader { kind, bytes }
}

/// An authentication header with `len + 2` 4-byte words (SPI 1, sequence 1, zero ICV).
pub fn ah(len: u8) -> ExtHeader {
    let mut bytes = vec![0u8; (usize::from(len) + 2) * 4];
    bytes[1] = len;
    bytes[4..8].copy_from_slice(&1u32.to_be_bytes());
    bytes[8..12].copy_from_slice(&1u32.to_be_bytes());
    ExtHeader { kind: AH, bytes }
}

/// A fragment header: offset in 8-byte units, the M flag, identification 0x4d58.
pub fn frag6(offset: u16, more: bool) -> ExtHeader {
    let field = (offset << 3) | u16::from(more);
    let mut bytes = vec![0u8; 8];
    bytes[2..4].copy_from_slice(&field.to_be_bytes());
    bytes[4..8].copy_from_slice(&0x4d58u32.to_be_bytes());
    ExtHeader {
        kind: FRAGMENT,
        bytes,
    }
}

/// A header of a type the filter does not follow (Shim6, HIP, experimental 253): the same
/// layout as a destination options header, which is what RFC 6564 asks new ones to use.
pub fn unknown_ext(kind: u8) -> ExtHeader {
    let mut h = ext8(DSTOPTS, 0);
    h.kind = kind;
    h
}

/// An IPv4 packet from `src` to `dst` around `payload`, with a valid header checksum and,
/// unless it is a fragment, a valid TCP/UDP checksum.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, extras: &V4Extras, payload: Payload) -> Vec<u8> {
    assert!(extras.options.len().is_multiple_of(4) && extras.options.len() <= 40);
    let fragment = extras.more_fragments || extras.fragment_offset != 0;
    let mut bytes = payload.bytes;
    if !fragment {
        let pseudo = pseudo_v4(src, dst, payload.proto, bytes.len());
        fill_l4_checksum(payload.proto, &pseudo, &mut bytes);
    }
    let header_len = 20 + extras.options.len();
    let mut p = Vec::with_capacity(header_len + bytes.len());
    p.push(0x40 | (header_len / 4) as u8);
    p.push(0);
    p.extend_from_slice(&((header_len + bytes.len()) as u16).to_be_bytes());
    p.extend_from_slice(&0x4d58u16.to_be_bytes());
    let flags_offset = (u16::from(extras.more_fragments) << 13) | extras.fragment_offset;
    p.extend_from_slice(&flags_offset.to_be_bytes());
    p.extend_from_slice(&[64, payload.proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&extras.options);
    let sum = checksum(&[&p[..header_len]]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&bytes);
    p
}

/// An IPv6 packet from `src` to `dst`: `chain` in order, then `payload`, with the
/// next-header bytes linked and a valid TCP/UDP checksum when the packet is not a
/// fragment.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, chain: &[ExtHeader], payload: Payload) -> Vec<u8> {
    let fragment = chain.iter().any(|h| h.kind == FRAGMENT);
    let mut l4 = payload.bytes;
    if !fragment {
        let pseudo = pseudo_v6(src, dst, payload.proto, l4.len());
        fill_l4_checksum(payload.proto, &pseudo, &mut l4);
    }
    let mut rest = Vec::new();
    for (i, header) in chain.iter().enumerate() {
        let next = chain.get(i + 1).map_or(payload.proto, |h| h.kind);
        let mut bytes = header.bytes.clone();
        bytes[0] = next;
        rest.extend_from_slice(&bytes);
    }
    rest.extend_from_slice(&l4);
    let first = chain.first().map_or(payload.proto, |h| h.kind);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    p.extend_from_slice(&[first, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&rest);
    p
}

/// An IP packet (IPv4 or IPv6 by the addresses, which must be of one family) with no
/// options or extension headers.
pub fn ip(src: IpAddr, dst: IpAddr, payload: Payload) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d, &V4Extras::default(), payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, &[], payload),
        _ => panic!("source {src} and destination {dst} are of different families"),
    }
}

/// An Ethernet frame around an IP packet, behind the given tags (tag protocol ids; each
/// tag gets VLAN id 100 + its position). Frames under 60 bytes are padded as a NIC would.
pub fn ethernet(tags: &[u16], packet: &[u8]) -> Vec<u8> {
    let ethertype = match packet.first().map(|b| b >> 4) {
        Some(6) => ETHERTYPE_IPV6,
        _ => ETHERTYPE_IPV4,
    };
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    for (i, tpid) in tags.iter().enumerate() {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(packet);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, proto]);
    p
}

/// Writes the TCP or UDP checksum over the pseudo header and the segment; other protocols
/// (an encapsulated packet) carry their own.
fn fill_l4_checksum(proto: u8, pseudo: &[u8], segment: &mut [u8]) {
    let at = match proto {
        PROTO_TCP if segment.len() >= 18 => 16,
        PROTO_UDP if segment.len() >= 8 => 6,
        _ => return,
    };
    segment[at..at + 2].copy_from_slice(&[0, 0]);
    let mut sum = checksum(&[pseudo, segment]);
    // UDP sends a computed 0 as 0xFFFF (0 means "no checksum").
    if proto == PROTO_UDP && sum == 0 {
        sum = 0xFFFF;
    }
    segment[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    #[test]
    fn ipv4_header_and_tcp_checksums_verify() {
        let extras = V4Extras {
            options: vec![1, 1, 1, 0],
            ..V4Extras::default()
        };
        let p = ipv4(SRC, DST, &extras, tcp(80, flag::SYN, 5, &[]));
        assert_eq!(p[0], 0x46);
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
        // A header with its checksum in place sums to zero.
        assert_eq!(checksum(&[&p[..24]]), 0);
        let segment = &p[24..];
        assert_eq!(
            checksum(&[&pseudo_v4(SRC, DST, PROTO_TCP, segment.len()), segment]),
            0
        );
    }

    #[test]
    fn ipv6_chain_links_next_headers_and_udp_checksum_verifies() {
        let src: Ipv6Addr = "2001:db8:ffff::7".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let p = ipv6(
            src,
            dst,
            &[ext8(HOPOPTS, 0), ah(4), ext8(DSTOPTS, 1)],
            udp(53, b"x"),
        );
        assert_eq!(p[6], HOPOPTS);
        assert_eq!(p[40], AH);
        assert_eq!(p[48], DSTOPTS);
        assert_eq!(p[72], PROTO_UDP);
        let payload_len = usize::from(u16::from_be_bytes([p[4], p[5]]));
        assert_eq!(payload_len, p.len() - 40);
        let segment = &p[40 + 8 + 24 + 16..];
        assert_eq!(segment.len(), 9);
        assert_eq!(
            checksum(&[&pseudo_v6(src, dst, PROTO_UDP, segment.len()), segment]),
            0
        );
    }

    #[test]
    fn ethernet_frames_are_padded_and_tagged() {
        let f = ethernet(
            &[ETHERTYPE_QINQ, ETHERTYPE_VLAN],
            &ip(SRC.into(), DST.into(), udp(5140, &[])),
        );
        assert_eq!(&f[12..14], &ETHERTYPE_QINQ.to_be_bytes());
        assert_eq!(&f[16..18], &ETHERTYPE_VLAN.to_be_bytes());
        assert_eq!(&f[20..22], &ETHERTYPE_IPV4.to_be_bytes());
        assert_eq!(f.len(), 60);
    }

    #[test]
    fn a_bogus_data_offset_keeps_the_real_header_length() {
        assert_eq!(tcp(80, flag::ACK, 2, &[]).bytes.len(), 20);
        assert_eq!(tcp(80, flag::ACK, 2, &[]).bytes[12], 0x20);
        assert_eq!(tcp(80, flag::ACK, 7, &[]).bytes.len(), 28);
    }
}
