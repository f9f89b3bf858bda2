//! The SYN cookie SYN-ACK the kernel program must send for a SYN (docs/semantics.md, step
//! 12), built byte by byte from the SYN, the cookie, the host's cookie options and the
//! clock, so that the differential test can compare the kernel's reply with it. Only the
//! cookie itself (a keyed hash the kernel keeps secret) comes from outside.

use super::parse::{L4, Parsed, parse};
use mirror_xdp_common::{
    Config, cookie_option, tcp_flag, tcp_option as opt, timestamp_cookie as ts_bits, wire::checksum,
};

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

/// The MSS option as the kernel's `tcp_parse_mss_option` reads it: the last non-zero one.
fn client_mss(tcp: &[u8]) -> Option<u16> {
    let mut mss = None;
    for (kind, value) in options(tcp) {
        if kind == opt::MSS && value.len() == 2 {
            let value = u16::from_be_bytes([value[0], value[1]]);
            if value != 0 {
                mss = Some(value);
            }
        }
    }
    mss
}

/// A SYN's options as (kind, value) in order, walked as the kernel's `tcp_parse_options`
/// does: end-of-list, a length under 2 or past the header ends the walk.
fn options(tcp: &[u8]) -> Vec<(u8, &[u8])> {
    let header_len = usize::from(tcp[12] >> 4) * 4;
    let bytes = &tcp[20..header_len];
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            opt::END => break,
            opt::NOP => i += 1,
            kind => {
                let Some(&size) = bytes.get(i + 1) else {
                    break;
                };
                let size = usize::from(size);
                if size < 2 || size > bytes.len() - i {
                    break;
                }
                found.push((kind, &bytes[i + 2..i + size]));
                i += size;
            }
        }
    }
    found
}

/// What a timestamp cookie carries for a SYN (the kernel's `cookie_init_timestamp`): `None`
/// for a SYN without timestamps or a host without `TIMESTAMPS`, else the SYN's timestamp,
/// its window scale (if it has one and the host scales), SACK-permitted and ECN.
struct Carried {
    tsval: u32,
    wscale: Option<u8>,
    sack: bool,
    ecn: bool,
}

fn carried(tcp: &[u8], not_ect: bool, allowed: u8) -> Option<Carried> {
    if allowed & cookie_option::TIMESTAMPS == 0 {
        return None;
    }
    let (mut tsval, mut wscale, mut sack) = (None, None, false);
    for (kind, value) in options(tcp) {
        match (kind, value.len()) {
            (opt::TIMESTAMP, 8) => {
                tsval = Some(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
            }
            (opt::WINDOW_SCALE, 1) => wscale = Some(value[0].min(ts_bits::MAX_WSCALE)),
            (opt::SACK_PERMITTED, 0) => sack = true,
            _ => {}
        }
    }
    let asks_ecn = tcp[13] & (tcp_flag::ECE | tcp_flag::CWR) == tcp_flag::ECE | tcp_flag::CWR;
    Some(Carried {
        tsval: tsval?,
        wscale: wscale.filter(|_| allowed & cookie_option::WINDOW_SCALE != 0),
        sack: sack && allowed & cookie_option::SACK != 0,
        ecn: asks_ecn && not_ect && allowed & cookie_option::ECN != 0,
    })
}

/// The timestamp of a cookie SYN-ACK: the millisecond clock with `low` in its low bits,
/// never ahead of the clock.
pub fn cookie_timestamp(now_ns: u64, low: u32) -> u32 {
    let now_ms = now_ns / 1_000_000;
    let step = 1u64 << ts_bits::BITS;
    let mut ts = now_ms / step * step + u64::from(low);
    if ts > now_ms {
        ts = ts.wrapping_sub(step);
    }
    ts as u32
}

/// The window of the SYN-ACK: what the kernel's own cookie SYN-ACK offers without window
/// scaling, ten segments (fewer, at least two, for segments over 1460 bytes), at most 65535.
pub fn window(mss: u16) -> u16 {
    let mss = u32::from(mss);
    let segments = if mss > 1460 { (14600 / mss).max(2) } else { 10 };
    (segments * mss).min(0xFFFF) as u16
}

/// The SYN-ACK for a SYN frame that gets a cookie at `now_ns`: the same link header (MACs
/// swapped, VLAN tags kept), a fresh IP header back to the sender, and a TCP header with
/// `cookie` as its sequence number, the SYN's sequence + 1 as its ACK and, if the SYN had
/// room for options, the MSS option, then the timestamp cookie and window scale that
/// `config` allows and the SYN's header has room for (the reply is the SYN rewritten in
/// place). `None` if the frame is not a SYN the program answers.
pub fn syn_ack(frame: &[u8], cookie: u32, config: &Config, now_ns: u64) -> Option<Vec<u8>> {
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
    let room = usize::from(syn_tcp[12] >> 4) * 4;
    let with_mss = room >= 24;
    // The IP header's ECN bits: not-ECT (0) lets a cookie grant ECN.
    let not_ect = if v6 {
        (syn[1] >> 4) & 3 == 0
    } else {
        syn[1] & 3 == 0
    };
    let carried = carried(syn_tcp, not_ect, config.cookie_options).filter(|_| room >= 36);
    // The window scale only if there is room for it too.
    let wscale = carried
        .as_ref()
        .and_then(|c| c.wscale)
        .filter(|_| room >= 40);
    let mut options = Vec::new();
    if with_mss {
        options.extend([opt::MSS, opt::MSS_LEN]);
        options.extend(mss.to_be_bytes());
    }
    if let Some(c) = &carried {
        let low = wscale.map_or(ts_bits::WSCALE_MASK, u32::from)
            | if c.sack { ts_bits::SACK } else { 0 }
            | if c.ecn { ts_bits::ECN } else { 0 };
        if c.sack {
            options.extend([opt::SACK_PERMITTED, opt::SACK_PERMITTED_LEN]);
        } else {
            options.extend([opt::NOP, opt::NOP]);
        }
        options.extend([opt::TIMESTAMP, opt::TIMESTAMP_LEN]);
        options.extend(cookie_timestamp(now_ns, low).to_be_bytes());
        options.extend(c.tsval.to_be_bytes());
        if wscale.is_some() {
            options.extend([opt::NOP, opt::WINDOW_SCALE, opt::WINDOW_SCALE_LEN]);
            options.push(config.cookie_wscale);
        }
    }
    let ece = match &carried {
        Some(c) if c.ecn => tcp_flag::ECE,
        _ => 0,
    };
    let tcp_len = 20 + options.len() as u16;

    let mut tcp = Vec::new();
    tcp.extend(&syn_tcp[2..4]);
    tcp.extend(&syn_tcp[0..2]);
    tcp.extend(cookie.to_be_bytes());
    let seq = u32::from_be_bytes([syn_tcp[4], syn_tcp[5], syn_tcp[6], syn_tcp[7]]);
    tcp.extend(seq.wrapping_add(1).to_be_bytes());
    tcp.push(((tcp_len / 4) as u8) << 4);
    tcp.push(tcp_flag::SYN | tcp_flag::ACK | ece);
    tcp.extend(window(mss).to_be_bytes());
    tcp.extend([0, 0, 0, 0]); // checksum (below), urgent pointer
    tcp.extend(options);

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
