//! Wire formats: the numbers and header sizes of Ethernet, VLAN, IPv4, IPv6, TCP, UDP and
//! ICMP that mirror-xdp reads or writes, and the Internet checksum. One home for every side
//! that handles frames: the eBPF parser, the reference model, the audit corpus, the model's
//! and the tests' frame builders, the lock-out judge. (The eBPF program takes the header
//! structs themselves from `network-types`.)

/// EtherTypes, host byte order.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag protocol id.
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86DD;
    /// 802.1ad (QinQ service tag) protocol id.
    pub const QINQ: u16 = 0x88A8;
    pub const LLDP: u16 = 0x88CC;
}

/// The Ethernet header: two MAC addresses and the EtherType.
pub const ETH_HLEN: usize = 14;
/// A VLAN tag: its control information and the next EtherType.
pub const VLAN_TAG_LEN: usize = 4;
/// Tags beyond this many make a frame malformed: stacked tags must not carry a packet past
/// the filter.
pub const MAX_VLAN_TAGS: usize = 2;

/// An IPv4 header without options (IHL 5).
pub const IPV4_MIN_HLEN: usize = 20;
/// The fixed IPv6 header.
pub const IPV6_HLEN: usize = 40;
/// A TCP header without options (data offset 5).
pub const TCP_MIN_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
/// The part of an ICMP or ICMPv6 header every type has: type, code, checksum.
pub const ICMP_HLEN: usize = 4;

/// The fragment offset bits of the IPv4 flags/fragment word (host byte order).
pub const IPV4_FRAG_OFFSET: u16 = 0x1FFF;
/// The "don't fragment" bit of the IPv4 flags/fragment word.
pub const IPV4_DONT_FRAGMENT: u16 = 0x4000;
/// The fragment offset bits of the IPv6 fragment header's offset word (host byte order).
pub const IPV6_FRAG_OFFSET: u16 = 0xFFF8;

/// How many IPv6 extension headers the parsers follow before they call a packet malformed.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

/// IP protocol numbers (IPv4 protocol, IPv6 next header).
pub mod ipproto {
    pub const HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    /// IPv4 in IP.
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    /// IPv6 in IP.
    pub const IPV6: u8 = 41;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const DSTOPTS: u8 = 60;
}

/// TCP flag bits (byte 13 of the TCP header).
pub mod tcp_flag {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    /// ECN-Echo; with CWR on a SYN, the client asks for ECN (RFC 3168).
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// A TCP header with the most options (data offset 15).
pub const TCP_MAX_HLEN: usize = 60;

/// TCP option kinds, and the lengths of those a SYN cookie SYN-ACK reads or writes.
pub mod tcp_option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const MSS_LEN: u8 = 4;
    pub const WINDOW_SCALE: u8 = 3;
    pub const WINDOW_SCALE_LEN: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK_PERMITTED_LEN: u8 = 2;
    pub const TIMESTAMP: u8 = 8;
    pub const TIMESTAMP_LEN: u8 = 10;
}

/// The Internet checksum (RFC 1071) over the concatenated parts (an odd part carries its
/// last byte over to the next, as if they were one buffer), for the frames user space
/// builds: the audit corpus, the model's SYN cookie replies, the tests' frames.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for byte in parts.iter().flat_map(|p| p.iter().copied()) {
        match odd.take() {
            None => odd = Some(byte),
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::checksum;

    #[test]
    fn rfc1071_example_and_odd_parts() {
        // RFC 1071 section 3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&[&data]), !0xddf2);
        // Split anywhere, odd lengths included, it is the same sum.
        assert_eq!(checksum(&[&data[..3], &data[3..]]), !0xddf2);
        // An odd total pads with a zero byte.
        assert_eq!(checksum(&[&[0xab]]), !0xab00);
    }
}
