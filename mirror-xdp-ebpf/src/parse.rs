//! Bounds-checked header parsing shared by the XDP and egress programs.
//!
//! Follows docs/semantics.md to the byte: up to two VLAN tags, IPv4 with any IHL and
//! fragments, IPv6 with a bounded extension chain, TCP (data offset checked), UDP, ICMP.
//! Header layouts (field offsets, lengths) come from `network-types`, protocol numbers from
//! `mirror_xdp_common::wire`. Headers are read as whole words, their fields picked out of
//! the words (see [`packet_load`] for why).

use core::cell::Cell;
use core::mem::{offset_of, size_of};

use aya_ebpf::{bindings::xdp_md, helpers::bpf_xdp_get_buff_len, programs::XdpContext};

use mirror_xdp_common::wire::{
    ETH_HLEN, ICMP_HLEN, IPV4_FRAG_OFFSET, IPV4_MIN_HLEN, IPV6_FRAG_OFFSET, IPV6_HLEN,
    MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, TCP_MIN_HLEN, UDP_HLEN, VLAN_TAG_LEN, ethertype, ipproto,
};
use network_types::{
    eth::EthHdr,
    icmp::Icmpv4Hdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

// The wire module and network-types agree on the header lengths.
const _: () = {
    assert!(EthHdr::LEN == ETH_HLEN);
    assert!(VlanHdr::LEN == VLAN_TAG_LEN);
    assert!(Ipv4Hdr::LEN == IPV4_MIN_HLEN);
    assert!(Ipv6Hdr::LEN == IPV6_HLEN);
    assert!(TcpHdr::LEN == TCP_MIN_HLEN);
    assert!(UdpHdr::LEN == UDP_HLEN);
};

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

/// The fields of a well-formed IP packet that the verdict needs. Aligned, addresses
/// first, so that copying the addresses into map keys takes word moves, not byte moves.
#[repr(C, align(8))]
pub struct Packet {
    /// Network byte order; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub v6: bool,
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

impl Packet {
    /// The IP part of a packet; the L4 fields are filled as far as the headers go.
    #[inline(always)]
    fn new(v6: bool, src: [u8; 16], dst: [u8; 16], proto: u8, ip_off: usize) -> Packet {
        Packet {
            src,
            dst,
            v6,
            l4: L4::Other,
            proto,
            sport: [0; 2],
            dport: [0; 2],
            tcp_flags: 0,
            icmp_type: 0,
            ip_off: ip_off as u8,
            ip_len: 0,
        }
    }
}

pub enum Parsed {
    NonIp,
    Malformed,
    Ip(Packet),
}

/// The packet bytes between two addresses, as XDP and TC contexts give them, and the
/// whole frame's length. A multi-buffer XDP frame (jumbo MTU) or a non-linear skb holds
/// only its first bytes between `start` and `end` and the rest in fragments: headers are
/// read from the first part only (a header that does not lie there is malformed, see
/// docs/semantics.md), lengths are checked against the whole frame.
pub struct Frame {
    pub start: usize,
    pub end: usize,
    /// The whole frame's length, fragments included, once known (0: not read yet).
    whole: Cell<usize>,
    /// An XDP frame's context, to read the whole length from; null for a TC frame, whose
    /// length comes with it.
    xdp: *mut xdp_md,
}

impl Frame {
    /// An XDP frame. Its whole length costs a helper call, about 10 ns where returns go
    /// through a thunk (a third of a closed-port drop's cost): it is read only when a
    /// length reaches past the first buffer, or for the counters of a frame that is not a
    /// well-formed IP packet.
    #[inline(always)]
    pub fn xdp(ctx: &XdpContext) -> Frame {
        Frame {
            start: ctx.data(),
            end: ctx.data_end(),
            whole: Cell::new(0),
            xdp: ctx.ctx,
        }
    }

    /// A TC frame: `len` is the skb's whole length.
    #[inline(always)]
    pub fn skb(start: usize, end: usize, len: usize) -> Frame {
        Frame {
            start,
            end,
            whole: Cell::new(len),
            xdp: core::ptr::null_mut(),
        }
    }

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

    /// Reads the `T` (a word or an array of words) at `off`, if it lies inside the frame.
    #[inline(always)]
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        let p = self.ptr_at::<T>(off)?;
        // SAFETY: `ptr_at` checked against the frame's end that the whole `T` lies inside
        // the packet; every `T` read here is integers.
        Some(unsafe { packet_load(p) })
    }

    /// The first buffer's length.
    #[inline(always)]
    fn first_len(&self) -> usize {
        self.end - self.start
    }

    /// The whole frame's length, fragments included.
    #[inline(always)]
    pub fn whole_len(&self) -> u64 {
        let known = self.whole.get();
        if known != 0 || self.xdp.is_null() {
            return known as u64;
        }
        // SAFETY: the helper reads the program's own context.
        let len = unsafe { bpf_xdp_get_buff_len(self.xdp) } as usize;
        self.whole.set(len);
        len as u64
    }

    /// Whether the frame is at least `len` bytes long.
    #[inline(always)]
    fn reaches(&self, len: usize) -> bool {
        len <= self.first_len() || len as u64 <= self.whole_len()
    }

    /// The bytes the counters count for a well-formed IP packet: the whole length if
    /// parsing read it, else the first buffer's. A packet that ends inside its first
    /// buffer has nothing in fragments (docs/semantics.md, "Multi-buffer frames").
    #[inline(always)]
    pub fn counted_len(&self) -> u64 {
        match self.whole.get() {
            0 => self.first_len() as u64,
            known => known as u64,
        }
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
    let mut ethertype = u16::from_be(frame.read(offset_of!(EthHdr, ether_type))?);
    let mut off = ETH_HLEN;
    // Up to two VLAN tags; a third is malformed so stacked tags cannot smuggle a packet.
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ethertype::VLAN && ethertype != ethertype::QINQ {
            break;
        }
        ethertype = u16::from_be(frame.read(off + offset_of!(VlanHdr, ether_type))?);
        off += VLAN_TAG_LEN;
    }
    match ethertype {
        ethertype::IPV4 => parse_ipv4(frame, off).map(Parsed::Ip),
        ethertype::IPV6 => parse_ipv6(frame, off).map(Parsed::Ip),
        ethertype::VLAN | ethertype::QINQ => None,
        _ => Some(Parsed::NonIp),
    }
}

#[inline(always)]
fn parse_ipv4(frame: &Frame, o: usize) -> Option<Packet> {
    let h: [u32; IPV4_MIN_HLEN / 4] = frame.read(o)?;
    let version_ihl = byte(&h, offset_of!(Ipv4Hdr, vihl));
    if version_ihl >> 4 != 4 {
        return None;
    }
    let hlen = ((version_ihl & 0x0F) as usize) * 4;
    if hlen < IPV4_MIN_HLEN {
        return None;
    }
    let total = be16(&h, offset_of!(Ipv4Hdr, tot_len)) as usize;
    if total < hlen || !frame.reaches(o + total) {
        return None;
    }
    let mut pkt = Packet::new(
        false,
        v4_addr(word(&h, offset_of!(Ipv4Hdr, src_addr))),
        v4_addr(word(&h, offset_of!(Ipv4Hdr, dst_addr))),
        byte(&h, offset_of!(Ipv4Hdr, proto)),
        o,
    );
    if be16(&h, offset_of!(Ipv4Hdr, frags)) & IPV4_FRAG_OFFSET != 0 {
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
    let h: [u32; 2] = frame.read(o)?;
    let version = byte(&h, offset_of!(Ipv6Hdr, vcf));
    if version >> 4 != 6 {
        return None;
    }
    let payload = be16(&h, offset_of!(Ipv6Hdr, payload_len)) as usize;
    let end = o + IPV6_HLEN + payload;
    if payload == 0 || !frame.reaches(end) {
        return None;
    }
    let src = v6_addr(frame.read(o + offset_of!(Ipv6Hdr, src_addr))?);
    let dst = v6_addr(frame.read(o + offset_of!(Ipv6Hdr, dst_addr))?);
    let mut pkt = Packet::new(true, src, dst, 0, o);
    let next_header = byte(&h, offset_of!(Ipv6Hdr, next_hdr));
    let mut next = next_header;
    let mut cur = o + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            ipproto::HOPOPTS | ipproto::ROUTING | ipproto::DSTOPTS => {
                let [b0, b1] = frame.read::<u16>(cur)?.to_ne_bytes();
                next = b0;
                (b1 as usize + 1) * 8
            }
            ipproto::AH => {
                let [b0, b1] = frame.read::<u16>(cur)?.to_ne_bytes();
                next = b0;
                (b1 as usize + 2) * 4
            }
            ipproto::FRAGMENT => {
                if cur + 8 > end {
                    return None;
                }
                let [b0, _, b2, b3] = frame.read::<[u32; 2]>(cur)?[0].to_ne_bytes();
                if u16::from_be_bytes([b2, b3]) & IPV6_FRAG_OFFSET != 0 {
                    pkt.proto = b0;
                    pkt.l4 = L4::Fragment;
                    return Some(pkt);
                }
                next = b0;
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
        if off + TCP_MIN_HLEN > end {
            return None;
        }
        // The words up to the data offset and flags bytes (`_bitfield_1`).
        let t: [u32; 4] = frame.read(off)?;
        let doff_at = offset_of!(TcpHdr, _bitfield_1);
        let doff = (byte(&t, doff_at) >> 4) as usize * 4;
        if doff < TCP_MIN_HLEN || off + doff > end {
            return None;
        }
        pkt.l4 = L4::Tcp;
        pkt.sport = byte_pair(&t, offset_of!(TcpHdr, source));
        pkt.dport = byte_pair(&t, offset_of!(TcpHdr, dest));
        pkt.tcp_flags = byte(&t, doff_at + 1);
    } else if proto == ipproto::UDP {
        if off + UDP_HLEN > end {
            return None;
        }
        let u: [u32; 1] = frame.read(off)?;
        pkt.l4 = L4::Udp;
        pkt.sport = byte_pair(&u, offset_of!(UdpHdr, src));
        pkt.dport = byte_pair(&u, offset_of!(UdpHdr, dst));
    } else if proto == icmp {
        if off + ICMP_HLEN > end {
            return None;
        }
        // Four bytes, not one: a one-byte check compiles to a form the verifier cannot use.
        // ICMP and ICMPv6 share the layout of these bytes.
        let c: [u32; 1] = frame.read(off)?;
        pkt.l4 = L4::Icmp;
        pkt.icmp_type = byte(&c, offset_of!(Icmpv4Hdr, type_));
    }
    Some(())
}

/// The byte at `at` of header words read in memory order (`at` constant: this folds to a
/// shift of the word).
#[inline(always)]
fn byte<const N: usize>(words: &[u32; N], at: usize) -> u8 {
    words[at / 4].to_ne_bytes()[at % 4]
}

/// The two bytes at `at` (even) as they stand in the packet.
#[inline(always)]
fn byte_pair<const N: usize>(words: &[u32; N], at: usize) -> [u8; 2] {
    [byte(words, at), byte(words, at + 1)]
}

/// The big-endian 16-bit field at `at` (even).
#[inline(always)]
fn be16<const N: usize>(words: &[u32; N], at: usize) -> u16 {
    u16::from_be_bytes(byte_pair(words, at))
}

/// The 32-bit field at `at` (a multiple of 4), in memory order.
#[inline(always)]
fn word<const N: usize>(words: &[u32; N], at: usize) -> u32 {
    words[at / 4]
}

/// Loads the `T` at `p` from packet memory with plain (`T`-aligned) BPF loads.
///
/// XDP does not align headers: behind a 14-byte Ethernet header the IP header's words sit
/// at 2 mod 4. `ptr::read_unaligned` would make LLVM's BPF backend load them byte by byte,
/// four loads and three shifts and ors per address word, on every packet. A typed load
/// compiles to one `ldxw`, as `iph->saddr` does in a C XDP program.
///
/// That is sound on the verifier's terms: it accepts an unaligned packet load unless the
/// program asks for strict alignment (`BPF_F_STRICT_ALIGNMENT`, never set here) or the
/// kernel lacks `CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS` (x86-64 and arm64 have it), and the
/// JIT emits a native load that the CPU does unaligned. Where that does not hold, the
/// verifier refuses the program at load time: it never runs a misread.
///
/// # Safety
/// `p` points to `size_of::<T>()` bytes inside the packet, checked against `data_end` (as
/// the verifier demands too); `T` is integers or arrays of integers. For the Rust abstract
/// machine this is an aligned read of a possibly unaligned address: sound only because the
/// BPF backend lowers it to single load instructions whose unaligned behaviour the verifier
/// and the JIT define as above. Nothing but [`Frame::read`] uses it.
#[inline(always)]
unsafe fn packet_load<T: Copy>(p: *const T) -> T {
    // SAFETY: as the caller promises, and see above.
    unsafe { *p }
}

/// An IPv4 address word as the 16 address bytes of a `Packet` (the rest zero).
#[inline(always)]
fn v4_addr(word: u32) -> [u8; 16] {
    v6_addr([word, 0, 0, 0])
}

#[inline(always)]
fn v6_addr(words: [u32; 4]) -> [u8; 16] {
    // SAFETY: four words are sixteen bytes, and any bytes are valid `u8`s.
    unsafe { core::mem::transmute(words) }
}
