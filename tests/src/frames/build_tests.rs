//! The builder's frames read back as built: the model's parser finds every header where the
//! builder put it, and the checksums verify.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mirror_xdp::model::{L4 as Seen, Parsed, parse};

use super::build::*;
use super::checksum::checksum;

const A4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn seen(frame: &[u8]) -> Seen {
    match parse(frame) {
        Ok(Parsed::Ip(p)) => p.l4,
        other => panic!("{other:?}"),
    }
}

/// A correctly checksummed region (checksum field included) sums to 0xFFFF.
fn sums_to_ffff(pieces: &[&[u8]]) -> bool {
    checksum(pieces) == 0
}

#[test]
fn ipv4_tcp_with_tags_options_and_padding() {
    let mut tcp = Tcp::new(40000, 443, tcp_flag::SYN);
    tcp.options = vec![2, 4, 5, 0xb4, 1]; // MSS, NOP: padded to 8
    let ip = Ipv4::new(A4, B4, L4::Tcp(tcp)).options(vec![1, 1, 1]);
    let frame = Frame::ipv4(ip)
        .vlan(TPID_QINQ, 10)
        .vlan(TPID_VLAN, 20)
        .pad_to(100);
    let (f, layout) = frame.build_with_layout();
    assert_eq!(f.len(), 100);
    assert_eq!((layout.l3, layout.l4), (22, 22 + 24));
    assert_eq!(&f[12..14], &TPID_QINQ.to_be_bytes());
    assert_eq!(&f[16..18], &TPID_VLAN.to_be_bytes());
    assert_eq!(f[22], 0x46);
    assert_eq!(
        usize::from(u16::from_be_bytes([f[24], f[25]])),
        layout.end - layout.l3
    );
    assert_eq!(f[layout.l4 + 12] >> 4, 7);
    assert_eq!(
        seen(&f),
        Seen::Tcp {
            src_port: 40000,
            dst_port: 443,
            flags: tcp_flag::SYN
        }
    );
    assert!(sums_to_ffff(&[&f[22..46]]));
    let mut pseudo = [A4.octets(), B4.octets()].concat();
    pseudo.extend([0, 6, 0, 28]);
    assert!(sums_to_ffff(&[&pseudo, &f[layout.l4..layout.end]]));
}

#[test]
fn ipv4_fragments() {
    let ip = Ipv4::new(A4, B4, L4::udp(1, 2)).fragment(100, true);
    let f = Frame::ipv4(ip).build();
    assert_eq!(u16::from_be_bytes([f[20], f[21]]), 0x2000 | 100);
    assert_eq!(seen(&f), Seen::Fragment);
    let ip = Ipv4::new(A4, B4, L4::udp(1, 2)).fragment(0, true);
    assert_eq!(
        seen(&Frame::ipv4(ip).build()),
        Seen::Udp {
            src_port: 1,
            dst_port: 2
        }
    );
}

#[test]
fn ipv6_extension_chain() {
    let ip = Ipv6::new(A6, B6, L4::icmp(128, 0))
        .ext(ExtHeader::HopByHop(vec![1, 0]))
        .ext(ExtHeader::Routing {
            routing_type: 4,
            segments_left: 0,
            data: vec![0; 20],
        })
        .ext(ExtHeader::Fragment {
            offset: 0,
            more: true,
            id: 9,
        })
        .ext(ExtHeader::Ah {
            spi: 1,
            seq: 2,
            icv: vec![0; 12],
        })
        .ext(ExtHeader::DestOpts(vec![]));
    let (f, layout) = Frame::ipv6(ip).build_with_layout();
    // 8 + 24 + 8 + 24 + 8 bytes of extension headers.
    assert_eq!(layout.ext, vec![54, 62, 86, 94, 118]);
    assert_eq!(layout.l4, 126);
    assert_eq!(
        (f[20], f[54], f[62], f[86], f[94], f[118]),
        (0, 43, 44, 51, 60, 58)
    );
    assert_eq!((f[55], f[63], f[95], f[119]), (0, 2, 4, 0));
    assert_eq!(
        usize::from(u16::from_be_bytes([f[18], f[19]])),
        f.len() - 54
    );
    assert_eq!(
        seen(&f),
        Seen::Icmp {
            icmp_type: 128,
            code: 0
        }
    );
    let mut pseudo = [A6.octets(), B6.octets()].concat();
    pseudo.extend([0, 0, 0, 8, 0, 0, 0, 58]);
    assert!(sums_to_ffff(&[&pseudo, &f[layout.l4..]]));
    let p = parse(&f).unwrap();
    let Parsed::Ip(p) = p else { panic!() };
    assert_eq!((p.src, p.dst), (IpAddr::V6(A6), IpAddr::V6(B6)));
}

#[test]
fn ipv6_non_first_fragment_and_other_protocols() {
    let ip = Ipv6::new(A6, B6, L4::tcp(1, 2, 0)).ext(ExtHeader::Fragment {
        offset: 3,
        more: false,
        id: 1,
    });
    assert_eq!(seen(&Frame::ipv6(ip).build()), Seen::Fragment);
    let ip = Ipv6::new(
        A6,
        B6,
        L4::Other {
            proto: 1,
            payload: vec![8, 0, 0, 0],
        },
    );
    assert_eq!(seen(&Frame::ipv6(ip).build()), Seen::Other { proto: 1 });
    let ip = Ipv4::new(
        A4,
        B4,
        L4::Other {
            proto: 58,
            payload: vec![],
        },
    );
    assert_eq!(seen(&Frame::ipv4(ip).build()), Seen::Other { proto: 58 });
}

#[test]
fn non_ip() {
    let f = Frame::raw(ETHERTYPE_ARP, vec![0; 28])
        .vlan(TPID_VLAN, 5)
        .build();
    assert_eq!(f.len(), 14 + 4 + 28);
    assert_eq!(
        parse(&f),
        Ok(Parsed::NonIp {
            ethertype: ETHERTYPE_ARP
        })
    );
}
