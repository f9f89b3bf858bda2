//! A builder for well-formed Ethernet frames: VLAN tags, IPv4 with options and fragments,
//! IPv6 with any extension chain, and TCP/UDP/ICMP/ICMPv6 or any other protocol.
//!
//! Lengths (IHL, total length, payload length, data offset, extension header lengths) are
//! computed from the content, and checksums are filled, so a built frame is also fit to be
//! sent through a real interface. [`Frame::build_with_layout`] says where each header
//! landed, for tests that then break one field on purpose.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::checksum::{checksum, put_checksum};

use mirror_xdp_common::wire::ipproto::{
    AH, DSTOPTS, FRAGMENT, HOPOPTS, ICMP, ICMPV6, ROUTING, TCP, UDP,
};
pub use mirror_xdp_common::wire::{
    ethertype::{
        ARP as ETHERTYPE_ARP, IPV4 as ETHERTYPE_IPV4, IPV6 as ETHERTYPE_IPV6,
        LLDP as ETHERTYPE_LLDP, QINQ as TPID_QINQ, VLAN as TPID_VLAN,
    },
    tcp_flag, tcp_option,
};

/// A whole frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// VLAN tags, outermost first: (tag protocol id, tag control information).
    pub vlans: Vec<(u16, u16)>,
    pub net: Net,
    /// Bytes after the packet (link padding); no IP length counts them.
    pub padding: Vec<u8>,
}

/// What the frame carries after its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Net {
    Ipv4(Ipv4),
    Ipv6(Ipv6),
    /// Any other EtherType (ARP, LLDP, ...) with its payload as given.
    Raw {
        ethertype: u16,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub tos: u8,
    pub id: u16,
    pub ttl: u8,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units (13 bits).
    pub fragment_offset: u16,
    /// Option bytes, zero-padded (end-of-list) to a multiple of 4; at most 40 bytes.
    pub options: Vec<u8>,
    pub l4: L4,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    pub hop_limit: u8,
    /// The extension chain, in order; each header's next-header field is filled in.
    pub ext: Vec<ExtHeader>,
    pub l4: L4,
}

/// An IPv6 extension header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtHeader {
    /// Option bytes, zero-padded (Pad1) to make the header a multiple of 8 bytes.
    HopByHop(Vec<u8>),
    Routing {
        routing_type: u8,
        segments_left: u8,
        /// Type-specific data, zero-padded to make the header a multiple of 8 bytes.
        data: Vec<u8>,
    },
    /// Like [`ExtHeader::HopByHop`].
    DestOpts(Vec<u8>),
    Fragment {
        /// In 8-byte units (13 bits).
        offset: u16,
        more: bool,
        id: u32,
    },
    Ah {
        spi: u32,
        seq: u32,
        /// Integrity check value, zero-padded to a multiple of 4 bytes.
        icv: Vec<u8>,
    },
}

/// The upper-layer protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp(Tcp),
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: Vec<u8>,
    },
    /// ICMP in IPv4 (protocol 1), ICMPv6 in IPv6 (58).
    Icmp {
        icmp_type: u8,
        code: u8,
        /// Everything after the type, code and checksum (rest of header and data).
        payload: Vec<u8>,
    },
    /// Any protocol number, with its bytes as given (this is how to put 58 in IPv4).
    Other {
        proto: u8,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Option bytes, zero-padded to a multiple of 4; at most 40 bytes (data offset 15).
    pub options: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Where the headers of a built frame start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// The IP header, or the payload of a non-IP frame.
    pub l3: usize,
    /// The IPv6 extension headers, in order.
    pub ext: Vec<usize>,
    /// The L4 header (for a non-IP frame: the end of its payload).
    pub l4: usize,
    /// The end of the packet: link padding starts here.
    pub end: usize,
}

impl Frame {
    pub fn new(net: Net) -> Frame {
        Frame {
            dst_mac: [0x02, 0, 0, 0, 0, 0x01],
            src_mac: [0x02, 0, 0, 0, 0, 0x02],
            vlans: Vec::new(),
            net,
            padding: Vec::new(),
        }
    }

    pub fn ipv4(ip: Ipv4) -> Frame {
        Frame::new(Net::Ipv4(ip))
    }

    pub fn ipv6(ip: Ipv6) -> Frame {
        Frame::new(Net::Ipv6(ip))
    }

    pub fn raw(ethertype: u16, payload: Vec<u8>) -> Frame {
        Frame::new(Net::Raw { ethertype, payload })
    }

    /// Adds a tag inside the ones already there.
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Frame {
        self.vlans.push((tpid, vid & 0x0FFF));
        self
    }

    /// Pads the frame with zeros to at least `len` bytes (60 is the Ethernet minimum).
    pub fn pad_to(mut self, len: usize) -> Frame {
        let have = self.build().len();
        self.padding
            .resize(self.padding.len() + len.saturating_sub(have), 0);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        self.build_with_layout().0
    }

    pub fn build_with_layout(&self) -> (Vec<u8>, Layout) {
        let mut f = Vec::with_capacity(128);
        f.extend(self.dst_mac);
        f.extend(self.src_mac);
        for &(tpid, tci) in &self.vlans {
            f.extend(tpid.to_be_bytes());
            f.extend(tci.to_be_bytes());
        }
        let ethertype = match &self.net {
            Net::Ipv4(_) => ETHERTYPE_IPV4,
            Net::Ipv6(_) => ETHERTYPE_IPV6,
            Net::Raw { ethertype, .. } => *ethertype,
        };
        f.extend(ethertype.to_be_bytes());
        let l3 = f.len();
        let mut layout = match &self.net {
            Net::Ipv4(ip) => ip.write(&mut f),
            Net::Ipv6(ip) => ip.write(&mut f),
            Net::Raw { payload, .. } => {
                f.extend(payload);
                Layout {
                    l4: f.len(),
                    ..Layout::default()
                }
            }
        };
        layout.l3 = l3;
        layout.end = f.len();
        f.extend(&self.padding);
        (f, layout)
    }
}

impl Ipv4 {
    /// An unfragmented packet with DF set, TTL 64 and no options.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Ipv4 {
        Ipv4 {
            src,
            dst,
            tos: 0,
            id: 0x1234,
            ttl: 64,
            dont_fragment: true,
            more_fragments: false,
            fragment_offset: 0,
            options: Vec::new(),
            l4,
        }
    }

    pub fn options(mut self, options: Vec<u8>) -> Ipv4 {
        self.options = options;
        self
    }

    /// Makes this a fragment: `offset` in 8-byte units, `more` the MF flag.
    pub fn fragment(mut self, offset: u16, more: bool) -> Ipv4 {
        self.dont_fragment = false;
        self.fragment_offset = offset & 0x1FFF;
        self.more_fragments = more;
        self
    }

    /// Appends the header and L4 bytes; returns the L4 offset (ext empty).
    fn write(&self, f: &mut Vec<u8>) -> Layout {
        let mut options = self.options.clone();
        options.resize(options.len().next_multiple_of(4), 0);
        assert!(options.len() <= 40, "IPv4 options are at most 40 bytes");
        let header_len = 20 + options.len();
        let (proto, mut l4, checksum_at) = self.l4.bytes(ICMP);
        let total_len = u16::try_from(header_len + l4.len()).expect("IPv4 packet too long");
        let flags = (u16::from(self.dont_fragment) << 14) | (u16::from(self.more_fragments) << 13);
        let mut h = vec![0x40 | (header_len / 4) as u8, self.tos];
        h.extend(total_len.to_be_bytes());
        h.extend(self.id.to_be_bytes());
        h.extend((flags | (self.fragment_offset & 0x1FFF)).to_be_bytes());
        h.extend([self.ttl, proto, 0, 0]);
        h.extend(self.src.octets());
        h.extend(self.dst.octets());
        h.extend(&options);
        let sum = checksum(&[&h]);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        if let Some(at) = checksum_at {
            // ICMP has no pseudo-header; TCP and UDP do.
            let pseudo = if proto == ICMP {
                Vec::new()
            } else {
                let mut p = [self.src.octets(), self.dst.octets()].concat();
                p.extend([0, proto]);
                p.extend((l4.len() as u16).to_be_bytes());
                p
            };
            put_checksum(&mut l4, at, &pseudo, proto == UDP);
        }
        f.extend(h);
        let l4_at = f.len();
        f.extend(l4);
        Layout {
            l4: l4_at,
            ..Layout::default()
        }
    }
}

impl Ipv6 {
    /// A packet without extension headers, hop limit 64.
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, l4: L4) -> Ipv6 {
        Ipv6 {
            src,
            dst,
            traffic_class: 0,
            flow_label: 0,
            hop_limit: 64,
            ext: Vec::new(),
            l4,
        }
    }

    /// Appends an extension header to the chain.
    pub fn ext(mut self, header: ExtHeader) -> Ipv6 {
        self.ext.push(header);
        self
    }

    fn write(&self, f: &mut Vec<u8>) -> Layout {
        let (proto, mut l4, checksum_at) = self.l4.bytes(ICMPV6);
        let mut next = proto;
        let mut chain = Vec::new();
        let mut ext_lens = Vec::new();
        // Built from the last header back, so each knows the type that follows it.
        for header in self.ext.iter().rev() {
            let bytes = header.bytes(next);
            ext_lens.push(bytes.len());
            chain.splice(0..0, bytes);
            next = header.kind();
        }
        if let Some(at) = checksum_at {
            let mut pseudo = [self.src.octets(), self.dst.octets()].concat();
            pseudo.extend((l4.len() as u32).to_be_bytes());
            pseudo.extend([0, 0, 0, proto]);
            put_checksum(&mut l4, at, &pseudo, proto == UDP);
        }
        let payload_len = u16::try_from(chain.len() + l4.len()).expect("IPv6 packet too long");
        let first_word =
            (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0xF_FFFF);
        f.extend(first_word.to_be_bytes());
        f.extend(payload_len.to_be_bytes());
        f.extend([next, self.hop_limit]);
        f.extend(self.src.octets());
        f.extend(self.dst.octets());
        let mut ext = Vec::new();
        let mut at = f.len();
        for len in ext_lens.iter().rev() {
            ext.push(at);
            at += len;
        }
        f.extend(chain);
        let l4_at = f.len();
        f.extend(l4);
        Layout {
            ext,
            l4: l4_at,
            ..Layout::default()
        }
    }
}

impl ExtHeader {
    /// Its protocol number.
    pub fn kind(&self) -> u8 {
        match self {
            ExtHeader::HopByHop(_) => HOPOPTS,
            ExtHeader::Routing { .. } => ROUTING,
            ExtHeader::DestOpts(_) => DSTOPTS,
            ExtHeader::Fragment { .. } => FRAGMENT,
            ExtHeader::Ah { .. } => AH,
        }
    }

    fn bytes(&self, next: u8) -> Vec<u8> {
        // Headers counted in 8-byte units, less the first 8.
        let eights = |mut h: Vec<u8>| {
            h.resize(h.len().next_multiple_of(8), 0);
            h[1] = u8::try_from(h.len() / 8 - 1).expect("extension header too long");
            h
        };
        match self {
            ExtHeader::HopByHop(opts) | ExtHeader::DestOpts(opts) => {
                eights([&[next, 0][..], opts].concat())
            }
            ExtHeader::Routing {
                routing_type,
                segments_left,
                data,
            } => eights([&[next, 0, *routing_type, *segments_left][..], data].concat()),
            ExtHeader::Fragment { offset, more, id } => {
                let mut h = vec![next, 0];
                h.extend(((offset << 3) | u16::from(*more)).to_be_bytes());
                h.extend(id.to_be_bytes());
                h
            }
            ExtHeader::Ah { spi, seq, icv } => {
                let mut h = vec![next, 0, 0, 0];
                h.extend(spi.to_be_bytes());
                h.extend(seq.to_be_bytes());
                h.extend(icv);
                h.resize(h.len().next_multiple_of(4), 0);
                // AH is counted in 4-byte units, less 2.
                h[1] = u8::try_from(h.len() / 4 - 2).expect("AH too long");
                h
            }
        }
    }
}

impl L4 {
    /// TCP with no options or payload.
    pub fn tcp(src_port: u16, dst_port: u16, flags: u8) -> L4 {
        L4::Tcp(Tcp::new(src_port, dst_port, flags))
    }

    pub fn udp(src_port: u16, dst_port: u16) -> L4 {
        L4::Udp {
            src_port,
            dst_port,
            payload: Vec::new(),
        }
    }

    /// ICMP/ICMPv6 with a zero rest-of-header.
    pub fn icmp(icmp_type: u8, code: u8) -> L4 {
        L4::Icmp {
            icmp_type,
            code,
            payload: vec![0; 4],
        }
    }

    /// The protocol number, the bytes, and where the checksum goes (if it has one).
    fn bytes(&self, icmp_proto: u8) -> (u8, Vec<u8>, Option<usize>) {
        match self {
            L4::Tcp(tcp) => (TCP, tcp.bytes(), Some(16)),
            L4::Udp {
                src_port,
                dst_port,
                payload,
            } => {
                let mut h = src_port.to_be_bytes().to_vec();
                h.extend(dst_port.to_be_bytes());
                // Saturates for an oversized payload: only test frames, never sent.
                h.extend(
                    u16::try_from(8 + payload.len())
                        .unwrap_or(u16::MAX)
                        .to_be_bytes(),
                );
                h.extend([0, 0]);
                h.extend(payload);
                (UDP, h, Some(6))
            }
            L4::Icmp {
                icmp_type,
                code,
                payload,
            } => {
                let h = [&[*icmp_type, *code, 0, 0][..], payload].concat();
                (icmp_proto, h, Some(2))
            }
            L4::Other { proto, payload } => (*proto, payload.clone(), None),
        }
    }
}

impl Tcp {
    pub fn new(src_port: u16, dst_port: u16, flags: u8) -> Tcp {
        Tcp {
            src_port,
            dst_port,
            seq: 1,
            ack: if flags & tcp_flag::ACK != 0 { 1 } else { 0 },
            flags,
            window: 65535,
            options: Vec::new(),
            payload: Vec::new(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut options = self.options.clone();
        options.resize(options.len().next_multiple_of(4), 0);
        assert!(options.len() <= 40, "TCP options are at most 40 bytes");
        let data_offset = (20 + options.len()) / 4;
        let mut h = self.src_port.to_be_bytes().to_vec();
        h.extend(self.dst_port.to_be_bytes());
        h.extend(self.seq.to_be_bytes());
        h.extend(self.ack.to_be_bytes());
        h.extend([(data_offset as u8) << 4, self.flags]);
        h.extend(self.window.to_be_bytes());
        h.extend([0, 0, 0, 0]);
        h.extend(options);
        h.extend(&self.payload);
        h
    }
}
