//! A seeded generator of test frames aimed at a policy: mostly well-formed frames whose
//! sources sit in and just around the policy's prefixes, destinations in and around its
//! `to` lists, and ports on and around its rules (egress rules' `to` and ports too), some
//! with one field broken, some plain noise. The same seed and policy always give the same
//! frames, so a failing frame can be found again.

use std::net::{Ipv4Addr, Ipv6Addr};

use fastrand::Rng;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mirror_xdp::policy::Policy;

use super::build::*;

/// BPF test-run refuses frames shorter than an Ethernet header.
pub const MIN_FRAME_LEN: usize = 14;

/// Destination addresses of most generated packets: "this host".
pub const LOCAL_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const LOCAL_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);

/// Every prefix of `frame` from 14 bytes up to the whole frame.
pub fn truncations(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    (MIN_FRAME_LEN..=frame.len()).map(move |len| &frame[..len])
}

pub struct FrameGen {
    rng: Rng,
    v4_nets: Vec<Ipv4Net>,
    v6_nets: Vec<Ipv6Net>,
    /// The rules' `to` prefixes: destinations in and just around them.
    to_v4: Vec<Ipv4Net>,
    to_v6: Vec<Ipv6Net>,
    /// Port ranges of every rule, both protocols together, so TCP also hits UDP-only ports.
    ranges: Vec<(u16, u16)>,
    /// Range edges, their neighbours, and the extremes 0, 1, 65535.
    edge_ports: Vec<u16>,
}

impl FrameGen {
    pub fn new(seed: u64, policy: &Policy) -> FrameGen {
        let rule_nets = policy
            .rules
            .iter()
            .filter_map(|r| r.from.as_ref())
            .chain(policy.protocols.iter().filter_map(|r| r.from.as_ref()))
            .flatten();
        let nets: Vec<IpNet> = policy
            .allow
            .iter()
            .chain(&policy.deny)
            .chain(rule_nets)
            .copied()
            .collect();
        let to_nets: Vec<IpNet> = policy
            .rules
            .iter()
            .filter_map(|r| r.to.as_ref())
            .chain(policy.protocols.iter().filter_map(|r| r.to.as_ref()))
            .chain(policy.egress.rules.iter().filter_map(|r| r.to.as_ref()))
            .flatten()
            .copied()
            .collect();
        let ranges: Vec<(u16, u16)> = policy
            .rules
            .iter()
            .flat_map(|r| &r.ports)
            .chain(policy.egress.rules.iter().flat_map(|r| &r.ports))
            .map(|p| (p.lo, p.hi))
            .collect();
        let mut edge_ports = vec![0, 1, 65535];
        for &(lo, hi) in &ranges {
            edge_ports.extend([lo, hi, lo.saturating_sub(1), hi.saturating_add(1)]);
        }
        FrameGen {
            rng: Rng::with_seed(seed),
            v4_nets: nets
                .iter()
                .filter_map(|n| match n {
                    IpNet::V4(n) => Some(*n),
                    IpNet::V6(_) => None,
                })
                .collect(),
            v6_nets: nets
                .iter()
                .filter_map(|n| match n {
                    IpNet::V6(n) => Some(*n),
                    IpNet::V4(_) => None,
                })
                .collect(),
            to_v4: to_nets
                .iter()
                .filter_map(|n| match n {
                    IpNet::V4(n) => Some(*n),
                    IpNet::V6(_) => None,
                })
                .collect(),
            to_v6: to_nets
                .iter()
                .filter_map(|n| match n {
                    IpNet::V6(n) => Some(*n),
                    IpNet::V4(_) => None,
                })
                .collect(),
            ranges,
            edge_ports,
        }
    }

    /// The next frame: 70% well-formed, 15% with one field broken, 15% random bytes.
    // An endless generator: `Iterator::next` would only add an `Option` to unwrap.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..70 => self.structured().build(),
            70..85 => self.corrupted(),
            _ => self.noise(),
        }
    }

    /// A well-formed frame (by construction; the model may still call some malformed, such
    /// as a 9-header IPv6 chain or a first fragment too short for its L4 header).
    pub fn structured(&mut self) -> Frame {
        let net = match self.rng.u32(0..40) {
            0..19 => Net::Ipv4(self.ipv4()),
            19..38 => Net::Ipv6(self.ipv6()),
            _ => self.non_ip(),
        };
        let mut frame = Frame::new(net);
        let tags = match self.rng.u32(0..100) {
            0..70 => 0,
            70..88 => 1,
            _ => 2,
        };
        for _ in 0..tags {
            let tpid = if self.rng.bool() {
                TPID_VLAN
            } else {
                TPID_QINQ
            };
            frame = frame.vlan(tpid, self.rng.u16(..));
        }
        match self.rng.u32(0..100) {
            0..15 => frame.pad_to(60),
            15..25 => {
                frame.padding = self.bytes(1..=16);
                frame
            }
            _ => frame,
        }
    }

    fn ipv4(&mut self) -> Ipv4 {
        let (src, dst) = (self.src_v4(), self.dst_v4());
        let l4 = self.l4(false);
        let mut ip = Ipv4::new(src, dst, l4);
        ip.id = self.rng.u16(..);
        ip.ttl = self.rng.u8(1..);
        // Now and then an ECN mark (ECT or CE): a SYN so marked gets no ECN from a cookie.
        ip.tos = self.ecn_mark();
        if self.chance(30) {
            ip.options = self.bytes(1..=40);
        }
        match self.rng.u32(0..100) {
            0..10 => ip.fragment(self.rng.u16(1..0x2000), self.rng.bool()),
            10..15 => ip.fragment(0, true),
            15..20 => ip.fragment(0, false),
            _ => ip,
        }
    }

    fn ipv6(&mut self) -> Ipv6 {
        let (src, dst) = (self.src_v6(), self.dst_v6());
        let l4 = self.l4(true);
        let mut ip = Ipv6::new(src, dst, l4);
        ip.hop_limit = self.rng.u8(1..);
        ip.flow_label = self.rng.u32(..0x10_0000);
        ip.traffic_class = self.ecn_mark();
        // Past 8 headers the chain is too long to follow: a few of those too.
        let headers = match self.rng.u32(0..100) {
            0..55 => 0,
            55..90 => self.rng.usize(1..=4),
            90..98 => self.rng.usize(5..=8),
            _ => self.rng.usize(9..=10),
        };
        for _ in 0..headers {
            let header = self.ext_header();
            ip = ip.ext(header);
        }
        ip
    }

    /// The ECN bits of a TOS or traffic class byte: mostly not-ECT.
    fn ecn_mark(&mut self) -> u8 {
        if self.chance(20) {
            self.rng.u8(1..4)
        } else {
            0
        }
    }

    /// The options of a real client's SYN (the layouts of Linux, macOS and Windows), or those
    /// options in a random order with NOPs, an end-of-list or a broken length: the options
    /// a SYN cookie's timestamp carries (window scale, SACK-permitted, timestamp).
    fn syn_options(&mut self) -> Vec<u8> {
        const NOP: u8 = tcp_option::NOP;
        let mss = [tcp_option::MSS, 4, 0x05, 0xb4];
        // Scales up to 15: the kernel clamps those over 14.
        let ws = [tcp_option::WINDOW_SCALE, 3, self.rng.u8(0..16)];
        let sack = [tcp_option::SACK_PERMITTED, 2];
        let mut ts = vec![tcp_option::TIMESTAMP, 10];
        ts.extend(self.rng.u32(..).to_be_bytes());
        ts.extend([0; 4]);
        let layout: Vec<&[u8]> = match self.rng.u32(0..5) {
            0 => vec![&mss, &sack, &ts, &[NOP], &ws],
            1 => vec![
                &mss,
                &[NOP],
                &ws,
                &[NOP, NOP],
                &ts,
                &sack,
                &[tcp_option::END],
            ],
            2 => vec![&mss, &[NOP], &ws, &[NOP, NOP], &sack],
            _ => {
                let mut parts: Vec<&[u8]> = vec![&mss, &ws, &sack, &ts, &[NOP]];
                parts.retain(|_| self.rng.bool());
                self.rng.shuffle(&mut parts);
                parts
            }
        };
        let mut options: Vec<u8> = layout.concat();
        if self.chance(10) && !options.is_empty() {
            // A broken option: a length past the end, or under 2.
            let at = self.rng.usize(..options.len());
            options[at] = pick(&mut self.rng, &[0, 1, 40]);
        }
        options.truncate(40);
        options
    }

    fn ext_header(&mut self) -> ExtHeader {
        match self.rng.u32(0..5) {
            // Now and then a long one: two of them push the L4 header out of a test run's
            // first buffer (a multi-buffer frame).
            0 if self.chance(6) => ExtHeader::HopByHop(self.bytes(1800..=2040)),
            0 => ExtHeader::HopByHop(self.bytes(0..=14)),
            1 => ExtHeader::DestOpts(self.bytes(0..=22)),
            2 => ExtHeader::Routing {
                routing_type: self.rng.u8(..5),
                segments_left: self.rng.u8(..3),
                data: self.bytes(4..=36),
            },
            3 => ExtHeader::Fragment {
                offset: if self.chance(50) {
                    0
                } else {
                    self.rng.u16(1..0x2000)
                },
                more: self.rng.bool(),
                id: self.rng.u32(..),
            },
            _ => ExtHeader::Ah {
                spi: self.rng.u32(..),
                seq: self.rng.u32(..),
                icv: self.bytes(0..=16),
            },
        }
    }

    fn non_ip(&mut self) -> Net {
        let ethertype = match self.rng.u32(0..4) {
            0 => ETHERTYPE_ARP,
            1 => ETHERTYPE_LLDP,
            2 => 0x8847, // MPLS
            // Any other, but not one that would make this IP or tagged.
            _ => loop {
                let t = self.rng.u16(..);
                if ![ETHERTYPE_IPV4, ETHERTYPE_IPV6, TPID_VLAN, TPID_QINQ].contains(&t) {
                    break t;
                }
            },
        };
        Net::Raw {
            ethertype,
            payload: self.bytes(0..=60),
        }
    }

    fn l4(&mut self, v6: bool) -> L4 {
        match self.rng.u32(0..100) {
            0..40 => {
                let flags = [
                    tcp_flag::SYN,
                    tcp_flag::SYN,
                    // A SYN that asks for ECN.
                    tcp_flag::SYN | tcp_flag::ECE | tcp_flag::CWR,
                    tcp_flag::SYN | tcp_flag::ACK,
                    tcp_flag::ACK,
                    tcp_flag::PSH | tcp_flag::ACK,
                    tcp_flag::FIN | tcp_flag::ACK,
                    tcp_flag::RST,
                    self.rng.u8(..),
                ];
                let mut tcp = Tcp::new(
                    self.src_port(),
                    self.dst_port(),
                    pick(&mut self.rng, &flags),
                );
                tcp.seq = self.rng.u32(..);
                match self.rng.u32(0..100) {
                    0..30 => tcp.options = self.bytes(1..=40),
                    30..60 => tcp.options = self.syn_options(),
                    _ => {}
                }
                tcp.payload = self.payload(32);
                L4::Tcp(tcp)
            }
            40..65 => L4::Udp {
                src_port: self.src_port(),
                dst_port: self.dst_port(),
                payload: self.payload(32),
            },
            65..85 => {
                // Essential and non-essential types of both families, then anything.
                let known: &[u8] = if v6 {
                    &[1, 2, 3, 4, 128, 129, 133, 134, 135, 136, 137, 143]
                } else {
                    &[0, 3, 4, 5, 8, 11, 12, 13]
                };
                let icmp_type = if self.chance(70) {
                    pick(&mut self.rng, known)
                } else {
                    self.rng.u8(..)
                };
                L4::Icmp {
                    icmp_type,
                    code: self.rng.u8(..5),
                    payload: self.bytes(4..=28),
                }
            }
            _ => {
                // GRE, ESP, SCTP, no-next-header, IGMP, OSPF, VRRP, and the other family's
                // ICMP.
                let known = [47, 50, 132, 59, 2, 89, 112, if v6 { 1 } else { 58 }];
                let proto = if self.chance(70) {
                    pick(&mut self.rng, &known)
                } else {
                    self.rng.u8(..)
                };
                L4::Other {
                    proto,
                    payload: self.payload(40),
                }
            }
        }
    }

    /// An L4 payload of up to `max` bytes, or one time in 50 a jumbo one (a frame of up to
    /// about 9000 bytes, multi-buffer in a test run as on an MTU 9000 link).
    fn payload(&mut self, max: usize) -> Vec<u8> {
        if self.chance(2) {
            self.bytes(3400..=8900)
        } else {
            self.bytes(0..=max)
        }
    }

    /// A well-formed frame with one field broken or one byte changed.
    fn corrupted(&mut self) -> Vec<u8> {
        let frame = self.structured();
        let (mut f, layout) = frame.build_with_layout();
        let (v4, v6) = match frame.net {
            Net::Ipv4(_) => (true, false),
            Net::Ipv6(_) => (false, true),
            Net::Raw { .. } => (false, false),
        };
        let l3 = layout.l3;
        match self.rng.u32(0..10) {
            // IHL
            1 if v4 => f[l3] = 0x40 | self.rng.u8(..16),
            // Version
            2 if v4 || v6 => f[l3] = (self.rng.u8(..16) << 4) | (f[l3] & 0x0F),
            // Total length / payload length: a little off, or anything.
            3 if v4 || v6 => {
                let at = if v4 { l3 + 2 } else { l3 + 4 };
                let old = u16::from_be_bytes([f[at], f[at + 1]]);
                let new = match self.rng.u32(0..3) {
                    0 => old.wrapping_add(self.rng.u16(1..=16)),
                    1 => old.wrapping_sub(self.rng.u16(1..=16)),
                    _ => self.rng.u16(..),
                };
                f[at..at + 2].copy_from_slice(&new.to_be_bytes());
            }
            // TCP data offset (for a non-first fragment: payload bytes, harmless).
            4 if layout.l4 + 13 <= f.len() && is_tcp(&frame) => {
                let at = layout.l4 + 12;
                f[at] = (self.rng.u8(..16) << 4) | (f[at] & 0x0F);
            }
            // An IPv6 extension header's length byte, or a fragment header's offset.
            5 if !layout.ext.is_empty() => {
                let at = pick(&mut self.rng, &layout.ext) + 1 + self.rng.usize(..2);
                f[at] = self.rng.u8(..);
            }
            // Protocol / next header.
            6 if v4 || v6 => f[if v4 { l3 + 9 } else { l3 + 6 }] = self.rng.u8(..),
            // The EtherType: another tag, the other IP version, or anything.
            7 => {
                let t = [
                    TPID_VLAN,
                    TPID_QINQ,
                    ETHERTYPE_IPV4,
                    ETHERTYPE_IPV6,
                    self.rng.u16(..),
                ];
                let t: u16 = pick(&mut self.rng, &t);
                f[l3 - 2..l3].copy_from_slice(&t.to_be_bytes());
            }
            // Cut short.
            8 => f.truncate(self.rng.usize(MIN_FRAME_LEN..=f.len())),
            // Any one byte (also the fallback when the picked field is absent).
            _ => {
                let at = self.rng.usize(..f.len());
                f[at] = self.rng.u8(..);
            }
        }
        f
    }

    /// Random bytes; half of them with an EtherType that sends the parser further.
    fn noise(&mut self) -> Vec<u8> {
        let mut f = self.bytes(MIN_FRAME_LEN..=200);
        if self.rng.bool() {
            let t = pick(
                &mut self.rng,
                &[
                    ETHERTYPE_IPV4,
                    ETHERTYPE_IPV6,
                    TPID_VLAN,
                    TPID_QINQ,
                    ETHERTYPE_ARP,
                ],
            );
            f[12..14].copy_from_slice(&t.to_be_bytes());
            // A plausible first IP byte gets past the version check now and then.
            if f.len() > 14 && self.rng.bool() {
                match t {
                    ETHERTYPE_IPV4 => f[14] = 0x45,
                    ETHERTYPE_IPV6 => f[14] = 0x60,
                    _ => {}
                }
            }
        }
        f
    }

    fn src_v4(&mut self) -> Ipv4Addr {
        if !self.v4_nets.is_empty() && self.chance(75) {
            let net = pick(&mut self.rng, &self.v4_nets);
            let (lo, hi) = (u32::from(net.network()), u32::from(net.broadcast()));
            Ipv4Addr::from(self.near(lo.into(), hi.into(), u32::MAX.into()) as u32)
        } else {
            Ipv4Addr::from(self.rng.u32(..))
        }
    }

    fn src_v6(&mut self) -> Ipv6Addr {
        if !self.v6_nets.is_empty() && self.chance(75) {
            let net = pick(&mut self.rng, &self.v6_nets);
            let (lo, hi) = (u128::from(net.network()), u128::from(net.broadcast()));
            Ipv6Addr::from(self.near(lo, hi, u128::MAX))
        } else {
            Ipv6Addr::from(self.rng.u128(..))
        }
    }

    /// An address in `lo..=hi` (its edges often) or just outside it (within `0..=max`).
    fn near(&mut self, lo: u128, hi: u128, max: u128) -> u128 {
        match self.rng.u32(0..6) {
            0 => lo,
            1 => hi,
            2 if lo > 0 => lo - 1,
            3 if hi < max => hi + 1,
            _ => self.rng.u128(lo..=hi),
        }
    }

    fn dst_v4(&mut self) -> Ipv4Addr {
        if !self.to_v4.is_empty() && self.chance(50) {
            let net = pick(&mut self.rng, &self.to_v4);
            let (lo, hi) = (u32::from(net.network()), u32::from(net.broadcast()));
            Ipv4Addr::from(self.near(lo.into(), hi.into(), u32::MAX.into()) as u32)
        } else if self.chance(80) {
            LOCAL_V4
        } else {
            Ipv4Addr::from(self.rng.u32(..))
        }
    }

    fn dst_v6(&mut self) -> Ipv6Addr {
        if !self.to_v6.is_empty() && self.chance(50) {
            let net = pick(&mut self.rng, &self.to_v6);
            let (lo, hi) = (u128::from(net.network()), u128::from(net.broadcast()));
            Ipv6Addr::from(self.near(lo, hi, u128::MAX))
        } else if self.chance(80) {
            LOCAL_V6
        } else {
            Ipv6Addr::from(self.rng.u128(..))
        }
    }

    fn dst_port(&mut self) -> u16 {
        match self.rng.u32(0..10) {
            0..5 => pick(&mut self.rng, &self.edge_ports),
            5..8 if !self.ranges.is_empty() => {
                let (lo, hi) = pick(&mut self.rng, &self.ranges);
                self.rng.u16(lo..=hi)
            }
            _ => self.rng.u16(..),
        }
    }

    fn src_port(&mut self) -> u16 {
        match self.rng.u32(0..4) {
            0 => pick(&mut self.rng, &[22, 53, 80, 123, 443, 873]),
            1 => pick(&mut self.rng, &self.edge_ports),
            _ => self.rng.u16(32768..61000),
        }
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(0..100) < percent
    }

    fn bytes(&mut self, len: std::ops::RangeInclusive<usize>) -> Vec<u8> {
        let mut b = vec![0; self.rng.usize(len)];
        self.rng.fill(&mut b);
        b
    }
}

/// A random element (a free function, so that `from` may be a field beside the generator).
fn pick<T: Copy>(rng: &mut Rng, from: &[T]) -> T {
    from[rng.usize(..from.len())]
}

fn is_tcp(frame: &Frame) -> bool {
    match &frame.net {
        Net::Ipv4(ip) => matches!(ip.l4, L4::Tcp(_)),
        Net::Ipv6(ip) => matches!(ip.l4, L4::Tcp(_)),
        Net::Raw { .. } => false,
    }
}
