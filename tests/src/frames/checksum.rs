//! The Internet checksum (RFC 1071) for the builder's IPv4 header and L4 checksums.

pub use mirror_xdp_common::wire::checksum;

/// Fills the checksum at `at` (zero beforehand) over the pseudo-header and `l4`. UDP sends
/// a computed 0 as 0xFFFF, since 0 means "no checksum" there.
pub fn put_checksum(l4: &mut [u8], at: usize, pseudo: &[u8], udp: bool) {
    if l4.len() < at + 2 {
        return;
    }
    let mut sum = checksum(&[pseudo, l4]);
    if udp && sum == 0 {
        sum = 0xFFFF;
    }
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}
