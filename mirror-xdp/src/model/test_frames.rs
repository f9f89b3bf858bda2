//! Minimal frame construction for the model's unit tests: each helper writes one header
//! with exactly the bytes a test asks for, so a test can break any field on purpose.
//! (The full builder lives in the tests crate, which depends on this one.)

use std::net::{Ipv4Addr, Ipv6Addr};

pub use mirror_xdp_common::wire::ethertype::{IPV4, IPV6, QINQ, VLAN};

/// Ethernet with the given tag protocol ids (each tag gets VLAN id 100), then `payload`.
pub fn eth(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for tpid in tags {
        f.extend(tpid.to_be_bytes());
        f.extend(100u16.to_be_bytes());
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

/// An IPv4 header (IHL from the options, total length over `l4`) followed by `l4`.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    options: &[u8],
    frag: u16,
    l4: &[u8],
) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4) && options.len() <= 40);
    let header_len = 20 + options.len();
    let total = (header_len + l4.len()) as u16;
    let mut p = vec![0x40 | (header_len / 4) as u8, 0];
    p.extend(total.to_be_bytes());
    p.extend([0, 1]);
    p.extend(frag.to_be_bytes());
    p.extend([64, proto, 0, 0]);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend(options);
    p.extend(l4);
    p
}

/// An IPv6 header (payload length over `rest`) followed by `rest` (extension headers + L4).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((rest.len() as u16).to_be_bytes());
    p.extend([next, 64]);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend(rest);
    p
}

/// Hop-by-hop, routing or destination options header of `(units + 1) * 8` bytes.
pub fn ext8(next: u8, units: u8) -> Vec<u8> {
    let mut h = vec![0; (usize::from(units) + 1) * 8];
    h[0] = next;
    h[1] = units;
    h
}

/// AH header of `(len + 2) * 4` bytes.
pub fn ah(next: u8, len: u8) -> Vec<u8> {
    let mut h = vec![0; (usize::from(len) + 2) * 4];
    h[0] = next;
    h[1] = len;
    h
}

/// Fragment header; `offset` in 8-byte units.
pub fn frag6(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let field = (offset << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend(field.to_be_bytes());
    h.extend([0, 0, 0, 7]);
    h
}

/// A TCP header with the given data offset, padded to `doff * 4` bytes (at least 20).
pub fn tcp_doff(sport: u16, dport: u16, flags: u8, doff: u8) -> Vec<u8> {
    let mut h = vec![0; (usize::from(doff) * 4).max(20)];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = doff << 4;
    h[13] = flags;
    h
}

pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    tcp_doff(sport, dport, flags, 5)
}

pub fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = sport.to_be_bytes().to_vec();
    h.extend(dport.to_be_bytes());
    h.extend([0, 8, 0, 0]);
    h
}

/// An ICMP/ICMPv6 header with 4 bytes of rest-of-header.
pub fn icmp(icmp_type: u8, code: u8) -> Vec<u8> {
    vec![icmp_type, code, 0, 0, 0, 0, 0, 0]
}

/// Concatenates header pieces.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
