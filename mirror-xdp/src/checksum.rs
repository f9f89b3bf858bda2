//! The Internet checksum (RFC 1071), for the frames user space builds: the audit corpus,
//! the reference model's SYN cookie replies, the tests' frames.

/// The Internet checksum over the concatenated parts (an odd part carries its last byte
/// over to the next, as if they were one buffer).
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
