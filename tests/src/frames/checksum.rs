//! The Internet checksum (RFC 1071) for the builder's IPv4 header and L4 checksums.

/// The Internet checksum over the concatenated pieces.
pub fn checksum(pieces: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = pieces.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

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
