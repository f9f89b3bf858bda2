//! The SYN cookie SYN-ACK the kernel program must send for a SYN (docs/semantics.md, step
//! 12), built byte by byte from the SYN and the cookie, so that the differential test can
//! compare the kernel's reply with it. Only the cookie itself (a keyed hash the kernel keeps
//! secret) comes from outside.

use super::parse::{L4, Parsed, parse};
use mirror_xdp_common::wire::checksum;

/// The MSS values a cookie can encode (the kernel's `msstab` for IPv4 and IPv6).
const MSS_V4: [u16; 4] = [536, 1300, 1440, 1460];
const MSS_V6: [u16; 4] = [1220, 1420, 1440, 8940];
/// The MSS assumed for a SYN without an MSS option.
const MSS_DEFAULT: u16 = 536;

/// The MSS a cookie for this SYN encodes: the largest table value not above the client's MSS
/// option, or the smallest table value. `tcp` is the SYN's TCP header, options included.
pub fn cookie_mss(v6: bool, tcp: &[u8]) -> u16 {
    let table = if v6 { MSS_V6 } else { MSS_V4 };
    let client = client_mss(tcp).unwrap_or(MSS_DEFAULT);
    table[1..]
        .iter()
        .rev()
        .copied()
        .find(|&m| client >= m)
        .unwrap_or(table[0])
}

/// The MSS option as the kernel's `tcp_parse_mss_option` reads it: options in order, the
/// last non-zero MSS wins; end-of-list, a length under 2 or past the header ends the walk.
fn client_mss(tcp: &[u8]) -> Option<u16> {
    let header_len = usize::from(tcp[12] >> 4) * 4;
    let options = &tcp[20..header_len];
    let mut mss = None;
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&size) = options.get(i + 1) else {
                    break;
                };
                let size = usize::from(size);
                if size < 2 || size > options.len() - i {
                    break;
                }
                if kind == 2 && size == 4 {
                    let value = u16::from_be_bytes([options[i + 2], options[i + 3]]);
                    if value != 0 {
                        mss = Some(value);
                    }
                }
                i += size;
            }
        }
    }
    mss
}

/// The window of the SYN-ACK: what the kernel's own cookie SYN-ACK offers without window
/// scaling, ten segments (fewer, at least two, for segments over 1460 bytes), at most 65535.
pub fn window(mss: u16) -> u16 {
    let mss = u32::from(mss);
    let segments = if mss > 1460 { (14600 / mss).max(2) } else { 10 };
    (segments * mss).min(0xFFFF) as u16
}

/// The SYN-ACK for a SYN frame that gets a cookie: the same link header (MACs swapped, VLAN
/// tags kept), a fresh IP header back to the sender, and a TCP header with `cookie` as its
/// sequence number, the SYN's sequence + 1 as its ACK and, if the SYN had room for options,
/// the MSS option. `None` if the frame is not a SYN the program answers.
pub fn syn_ack(frame: &[u8], cookie: u32) -> Option<Vec<u8>> {
    let Ok(Parsed::Ip(packet)) = parse(frame) else {
        return None;
    };
    let L4::Tcp { .. } = packet.l4 else {
        return None;
    };
    let v6 = packet.src.is_ipv6();
    let (o, ip_len) = (packet.ip_offset, packet.ip_header_len);
    if ip_len != if v6 { 40 } else { 20 } {
        return None;
    }
    let syn = &frame[o..];
    let syn_tcp = &syn[ip_len..];
    let mss = cookie_mss(v6, syn_tcp);
    let with_mss = syn_tcp[12] >> 4 >= 6;
    let tcp_len: u16 = if with_mss { 24 } else { 20 };

    let mut tcp = Vec::new();
    tcp.extend(&syn_tcp[2..4]);
    tcp.extend(&syn_tcp[0..2]);
    tcp.extend(cookie.to_be_bytes());
    let seq = u32::from_be_bytes([syn_tcp[4], syn_tcp[5], syn_tcp[6], syn_tcp[7]]);
    tcp.extend(seq.wrapping_add(1).to_be_bytes());
    tcp.push(((tcp_len / 4) as u8) << 4);
    tcp.push(0x12); // SYN | ACK
    tcp.extend(window(mss).to_be_bytes());
    tcp.extend([0, 0, 0, 0]); // checksum (below), urgent pointer
    if with_mss {
        tcp.extend([2, 4]);
        tcp.extend(mss.to_be_bytes());
    }

    // The reply goes from the SYN's destination to its source.
    let (src, dst) = if v6 {
        (&syn[24..40], &syn[8..24])
    } else {
        (&syn[16..20], &syn[12..16])
    };
    let mut pseudo = Vec::new();
    pseudo.extend(src);
    pseudo.extend(dst);
    pseudo.extend([0, 6]);
    pseudo.extend(tcp_len.to_be_bytes());
    let sum = checksum(&[pseudo.as_slice(), &tcp]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());

    let mut ip = Vec::new();
    if v6 {
        ip.extend([0x60, 0, 0, 0]);
        ip.extend(tcp_len.to_be_bytes());
        ip.extend([6, 64]);
        ip.extend(src);
        ip.extend(dst);
    } else {
        ip.extend([0x45, 0]);
        ip.extend((20 + tcp_len).to_be_bytes());
        ip.extend([0, 0, 0x40, 0, 64, 6, 0, 0]); // ID 0, DF, TTL 64, TCP, checksum
        ip.extend(src);
        ip.extend(dst);
        let sum = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
    }

    let mut out = Vec::new();
    out.extend(&frame[6..12]);
    out.extend(&frame[0..6]);
    out.extend(&frame[12..o]);
    out.extend(ip);
    out.extend(tcp);
    Some(out)
}
